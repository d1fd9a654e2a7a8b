package storage

// Result is the outcome of applying one command: an error, a user, or
// per-item results of a batch. Results are deterministic, so the
// idempotency window can record and replicate them.
type Result struct {
	Err   *Error
	User  *User
	Items []Result
	// Index is the log index of the command; it is filled in by the FSM,
	// not encoded.
	Index uint64
}

const (
	resErr   = 1
	resUser  = 2
	resItems = 4
)

func (e *encoder) result(r *Result) {
	var flags byte
	if r.Err != nil {
		flags |= resErr
	}
	if r.User != nil {
		flags |= resUser
	}
	if r.Items != nil {
		flags |= resItems
	}
	e.byte1(flags)
	if r.Err != nil {
		e.byte1(byte(r.Err.Kind))
		e.str(r.Err.Message)
		e.str(r.Err.Field)
	}
	if r.User != nil {
		e.user(r.User)
	}
	if r.Items != nil {
		e.uvarint(uint64(len(r.Items)))
		for i := range r.Items {
			e.result(&r.Items[i])
		}
	}
}

func (d *decoder) result(r *Result, depth int) {
	flags := d.byte1()
	if flags&^(resErr|resUser|resItems) != 0 {
		d.fail("bad result flags %#x", flags)
		return
	}
	if flags&resErr != 0 {
		r.Err = &Error{Kind: Kind(d.byte1()), Message: d.str(), Field: d.str()}
	}
	if flags&resUser != 0 {
		r.User = d.user()
	}
	if flags&resItems != 0 {
		if depth > 0 {
			d.fail("nested batch result")
			return
		}
		n := d.count(1)
		r.Items = make([]Result, n)
		for i := 0; i < n && d.err == nil; i++ {
			d.result(&r.Items[i], depth+1)
		}
	}
}

func (e *encoder) user(u *User) {
	e.str(u.ID)
	e.str(u.Name)
	e.str(u.Email)
	e.str(u.PasswordHash)
	e.byte1(byte(u.Role))
	e.uvarint(u.Version)
	e.varint(u.CreatedMs)
	e.varint(u.UpdatedMs)
	e.uvarint(u.TokenEpoch())
}

// user decodes a record and its token epoch; sessions, which only
// snapshots carry, follow separately (sessions).
func (d *decoder) user() *User {
	u := &User{
		ID: d.str(), Name: d.str(), Email: d.str(), PasswordHash: d.str(),
		Role: Role(d.byte1()), Version: d.uvarint(), CreatedMs: d.varint(), UpdatedMs: d.varint(),
	}
	if !d.v1 {
		if epoch := d.uvarint(); epoch > 0 {
			u.Auth = &UserAuth{Epoch: epoch}
		}
	}
	return u
}

// sessions writes a user's sessions (snapshots only).
func (e *encoder) sessions(a *UserAuth) {
	if a == nil {
		e.uvarint(0)
		return
	}
	e.uvarint(uint64(len(a.Sessions)))
	for i := range a.Sessions {
		s := &a.Sessions[i]
		e.str(s.Family)
		e.b = append(e.b, s.Hash[:]...)
		e.b = append(e.b, s.PrevHash[:]...)
		e.varint(s.RotatedMs)
		e.varint(s.ExpiresMs)
	}
}

// sessions reads what encoder.sessions wrote into u.
func (d *decoder) sessions(u *User) {
	n := d.count(1 + 64 + 2)
	if n == 0 || d.err != nil {
		return
	}
	a := &UserAuth{Sessions: make([]Session, n)}
	if u.Auth != nil {
		a.Epoch = u.Auth.Epoch
	}
	for i := range a.Sessions {
		s := &a.Sessions[i]
		s.Family = d.str()
		d.hash(&s.Hash)
		d.hash(&s.PrevHash)
		s.RotatedMs = d.varint()
		s.ExpiresMs = d.varint()
	}
	u.Auth = a
}
