package storage

// PatchFields says which fields a UserPatch sets.
type PatchFields uint8

// Patchable fields. Values are part of the command format.
const (
	PatchName PatchFields = 1 << iota
	PatchEmail
	PatchPassword
	PatchRole
	patchAll = PatchName | PatchEmail | PatchPassword | PatchRole
)

// UserPatch is a validated, normalised change to one user.
type UserPatch struct {
	ID           string
	IfVersion    uint64 // 0: unconditional; else the version the client read
	Fields       PatchFields
	Name         string
	Email        string
	PasswordHash string
	Role         Role
}

// ChangesEmailOrRole reports whether applying the patch may move an email
// index entry between shards or change the set of admins: such patches
// are applied across actors, the rest by the home shard alone.
func (p *UserPatch) ChangesEmailOrRole() bool { return p.Fields&(PatchEmail|PatchRole) != 0 }

// Apply computes the record that results from applying p to cur at
// nowMs, without changing anything. A patch that changes nothing returns
// cur itself (no new version).
func (p *UserPatch) Apply(cur *User, nowMs int64) (*User, *Error) {
	if p.IfVersion != 0 && p.IfVersion != cur.Version {
		return nil, &Error{Kind: KindPreconditionFailed,
			Message: "the user has changed: If-Match does not match its current version"}
	}
	if p.Fields&^patchAll != 0 {
		return nil, badRequest("", "unknown patch fields")
	}
	next := *cur
	if p.Fields&PatchName != 0 {
		name, err := NormalizeName("name", p.Name)
		if err != nil {
			return nil, err
		}
		next.Name = name
	}
	if p.Fields&PatchEmail != 0 {
		email, err := NormalizeEmail("email", p.Email)
		if err != nil {
			return nil, err
		}
		next.Email = email
	}
	if p.Fields&PatchPassword != 0 {
		if _, err := ParsePHC(p.PasswordHash); err != nil {
			return nil, badRequest("password", "bad password hash: %v", err)
		}
		next.PasswordHash = p.PasswordHash
	}
	if p.Fields&PatchRole != 0 {
		if !p.Role.Valid() {
			return nil, errRole()
		}
		next.Role = p.Role
	}
	if next == *cur {
		return cur, nil
	}
	next.Version = cur.Version + 1
	next.UpdatedMs = max(nowMs, cur.UpdatedMs)
	// A new password ends every session; a new role ends the access
	// tokens that carry the old one (a refresh gets new ones).
	if next.PasswordHash != cur.PasswordHash || next.Role != cur.Role {
		next.revokeTokens(next.PasswordHash != cur.PasswordHash)
	}
	return &next, nil
}
