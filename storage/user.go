package storage

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Role is a user's authorization role.
type Role uint8

// Roles. Their values are part of the command and snapshot formats.
const (
	RoleUser  Role = 1
	RoleAdmin Role = 2
	// RoleService is a backend that uses troupe as its rate limiter: it
	// may check any key of the named policies, and is otherwise a user.
	RoleService Role = 3
)

func (r Role) String() string {
	switch r {
	case RoleUser:
		return "user"
	case RoleAdmin:
		return "admin"
	case RoleService:
		return "service"
	}
	return "unknown"
}

// Valid reports whether r is one of the roles above.
func (r Role) Valid() bool { return r >= RoleUser && r <= RoleService }

// errRole is the answer to a role that is not one of ours.
func errRole() *Error {
	return badRequest("role", "role must be \"user\", \"admin\" or \"service\"")
}

// ParseRole accepts the API spellings "user", "admin" and "service".
func ParseRole(s string) (Role, *Error) {
	switch s {
	case "user":
		return RoleUser, nil
	case "admin":
		return RoleAdmin, nil
	case "service":
		return RoleService, nil
	}
	return 0, errRole()
}

// User is one user record. A shard keeps its records as bytes and hands
// out a fresh *User per read; a change is a new record passed to
// UserShard.Put. Treat a *User that a result
// carries as immutable: several readers may share it.
type User struct {
	ID           string
	Name         string
	Email        string // as given (trimmed); uniqueness uses EmailKey
	PasswordHash string // argon2id PHC string, or empty
	Role         Role
	Version      uint64 // 1 at creation, +1 per change
	CreatedMs    int64  // command time, Unix milliseconds
	UpdatedMs    int64
	// Auth holds the token epoch and sessions; nil until the first
	// login. Not part of Version: logins do not change the user.
	Auth *UserAuth
}

// NewUser is a validated, normalised request to create a user: every value
// in it was decided before proposing, so applying it is deterministic.
type NewUser struct {
	Name         string
	Email        string
	PasswordHash string
	Role         Role
}

// Limits of user fields (API.md).
const (
	MaxNameRunes      = 200
	MaxEmailBytes     = 254
	MinPasswordRunes  = 8
	MaxPasswordBytes  = 1024
	maxEmailLocalPart = 64
)

// NormalizeName trims surrounding white space and checks length and
// characters.
func NormalizeName(field, s string) (string, *Error) {
	if !utf8.ValidString(s) {
		return "", badRequest(field, "%s must be valid UTF-8", field)
	}
	s = strings.TrimSpace(s)
	n := utf8.RuneCountInString(s)
	if n == 0 {
		return "", badRequest(field, "%s must not be empty", field)
	}
	if n > MaxNameRunes {
		return "", badRequest(field, "%s must be at most %d characters", field, MaxNameRunes)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return "", badRequest(field, "%s must not contain control characters", field)
		}
	}
	return s, nil
}

// NormalizeEmail trims surrounding white space and checks the syntax of an
// address: local@domain, a dot-atom local part (non-ASCII letters allowed,
// RFC 6531), and a domain of at least two valid labels.
func NormalizeEmail(field, s string) (string, *Error) {
	s = strings.TrimSpace(s)
	bad := func(why string) (string, *Error) {
		return "", badRequest(field, "%s is not a valid email address: %s", field, why)
	}
	if s == "" {
		return bad("empty")
	}
	if !utf8.ValidString(s) {
		return bad("not UTF-8")
	}
	if len(s) > MaxEmailBytes {
		return bad("too long")
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return bad("missing @")
	}
	local, domain := s[:at], s[at+1:]
	if local == "" || len(local) > maxEmailLocalPart {
		return bad("bad local part")
	}
	if local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
		return bad("bad dots in local part")
	}
	for _, r := range local {
		if !emailLocalRune(r) {
			return bad("character not allowed in local part")
		}
	}
	if strings.IndexByte(domain, '.') < 0 {
		return bad("domain needs a dot")
	}
	// The labels between the dots, in order (strings.Split without its slice).
	for rest, more := domain, true; more; {
		var l string
		l, rest, more = strings.Cut(rest, ".")
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return bad("bad domain label")
		}
		for _, r := range l {
			if !domainRune(r) {
				return bad("character not allowed in domain")
			}
		}
	}
	return s, nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func domainRune(r rune) bool {
	if r < 0x80 {
		return r == '-' || isAlnum(byte(r))
	}
	return unicode.IsLetter(r)
}

func emailLocalRune(r rune) bool {
	if r < 0x80 {
		return isAlnum(byte(r)) || strings.ContainsRune("!#$%&'*+/=?^_`{|}~.-", r)
	}
	return unicode.IsLetter(r) || unicode.IsDigit(r)
}

// EmailKey is the case-insensitive identity of an address: the email index
// and uniqueness use it. It returns s itself (no allocation) when s has no
// upper-case letters.
func EmailKey(s string) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 0x80 {
			return strings.ToLower(s)
		}
	}
	return s
}

// CheckPassword enforces the password policy before hashing.
func CheckPassword(field, p string) *Error {
	if len(p) > MaxPasswordBytes {
		return badRequest(field, "%s must be at most %d bytes", field, MaxPasswordBytes)
	}
	if !utf8.ValidString(p) {
		return badRequest(field, "%s must be valid UTF-8", field)
	}
	if utf8.RuneCountInString(p) < MinPasswordRunes {
		return badRequest(field, "%s must be at least %d characters", field, MinPasswordRunes)
	}
	return nil
}

// Validate re-checks a NewUser in apply: the receiving node normalised it,
// but apply never trusts a command to be well formed.
func (n *NewUser) Validate() *Error {
	// Values are stored and indexed as given, so they must be normalised
	// already: " ada@example.com" would otherwise dodge the uniqueness
	// check on "ada@example.com".
	if name, err := NormalizeName("name", n.Name); err != nil {
		return err
	} else if name != n.Name {
		return badRequest("name", "name is not normalised")
	}
	if email, err := NormalizeEmail("email", n.Email); err != nil {
		return err
	} else if email != n.Email {
		return badRequest("email", "email is not normalised")
	}
	if !n.Role.Valid() {
		return errRole()
	}
	if n.PasswordHash != "" {
		if _, err := ParsePHC(n.PasswordHash); err != nil {
			return badRequest("password_hash", "password_hash: %v", err)
		}
	}
	return nil
}

// containsFold reports whether s contains sub (already lower case),
// ignoring case; it does not allocate for ASCII s.
func containsFold(s, sub string) bool {
	if sub == "" {
		return true
	}
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return strings.Contains(strings.ToLower(s), sub)
		}
	}
	n := len(sub)
outer:
	for i := 0; i+n <= len(s); i++ {
		for j := 0; j < n; j++ {
			c := s[i+j]
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != sub[j] {
				continue outer
			}
		}
		return true
	}
	return false
}
