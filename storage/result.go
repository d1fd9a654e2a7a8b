package storage

// Result is the outcome of applying one command: an error, a user, or
// per-item results of a batch. Results are deterministic, so the
// idempotency window can record and replicate them.
type Result struct {
	Err    *Error
	User   *User
	Items  []Result
	Doc    *Doc          // document commands (but submits)
	Submit *SubmitResult // CmdDocSubmit
	// Index is the log index of the command; it is filled in by the FSM,
	// not encoded.
	Index uint64
}

const (
	resErr    = 1
	resUser   = 2
	resItems  = 4
	resDoc    = 8
	resSubmit = 16
	// resLimit: the error carries a limit (written only when it does, so
	// results without one encode as before).
	resLimit = 32
)

func (e *encoder) result(r *Result) { e.resultSpilling(r, nil) }

// resultSpilling encodes r as result does, calling spill (if set) as
// docSpilling does and after each item of a batch.
func (e *encoder) resultSpilling(r *Result, spill func()) {
	var flags byte
	if r.Err != nil {
		flags |= resErr
		if r.Err.Limit != 0 {
			flags |= resLimit
		}
	}
	if r.User != nil {
		flags |= resUser
	}
	if r.Items != nil {
		flags |= resItems
	}
	if r.Doc != nil {
		flags |= resDoc
	}
	if r.Submit != nil {
		flags |= resSubmit
	}
	e.byte1(flags)
	if r.Err != nil {
		e.byte1(byte(r.Err.Kind))
		e.str(r.Err.Message)
		e.str(r.Err.Field)
		if r.Err.Limit != 0 {
			e.uvarint(r.Err.Limit)
		}
	}
	if r.User != nil {
		e.user(r.User)
	}
	if r.Items != nil {
		e.uvarint(uint64(len(r.Items)))
		for i := range r.Items {
			e.resultSpilling(&r.Items[i], spill)
			if spill != nil {
				spill()
			}
		}
	}
	if r.Doc != nil {
		e.docSpilling(r.Doc, spill)
	}
	if r.Submit != nil {
		e.submitResult(r.Submit)
	}
}

func (d *decoder) result(r *Result, depth int) {
	flags := d.byte1()
	if flags&^(resErr|resUser|resItems|resDoc|resSubmit|resLimit) != 0 || flags&(resErr|resLimit) == resLimit {
		d.fail("bad result flags %#x", flags)
		return
	}
	if flags&resErr != 0 {
		r.Err = &Error{Kind: Kind(d.byte1()), Message: d.str(), Field: d.str()}
		if flags&resLimit != 0 {
			if r.Err.Limit = d.uvarint(); r.Err.Limit == 0 && d.err == nil {
				d.fail("a limit of 0")
			}
		}
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
	if flags&resDoc != 0 {
		r.Doc = d.doc()
	}
	if flags&resSubmit != 0 {
		r.Submit = d.submitResult()
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
	e.auth(u.Auth)
}

// user decodes a record with its authentication state (which version 1
// snapshots do not have).
func (d *decoder) user() *User {
	u := &User{}
	d.userInto(u)
	return u
}

// userInto decodes a record into u, replacing all of it.
func (d *decoder) userInto(u *User) {
	d.userFields(u)
	u.Auth = nil
	if !d.v1 {
		u.Auth = d.auth()
	}
}

// userFields decodes a record's fields up to its authentication state.
func (d *decoder) userFields(u *User) {
	u.ID, u.Name, u.Email, u.PasswordHash = d.str(), d.str(), d.str(), d.str()
	u.Role, u.Version, u.CreatedMs, u.UpdatedMs = Role(d.byte1()), d.uvarint(), d.varint(), d.varint()
}

// auth writes a user's authentication state: whether there is one, the
// token epoch and the sessions. Results carry it too, so that a result
// replayed from a restored idempotency window equals the original.
func (e *encoder) auth(a *UserAuth) {
	if a == nil {
		e.byte1(0)
		return
	}
	e.byte1(1)
	e.uvarint(a.Epoch)
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

func (d *decoder) auth() *UserAuth {
	switch d.byte1() {
	case 0:
		return nil
	case 1:
	default:
		d.fail("bad auth flag")
		return nil
	}
	a := &UserAuth{Epoch: d.uvarint()}
	n := d.count(1 + 64 + 2)
	if n == 0 || d.err != nil {
		return a
	}
	a.Sessions = make([]Session, n)
	for i := range a.Sessions {
		s := &a.Sessions[i]
		s.Family = d.str()
		d.hash(&s.Hash)
		d.hash(&s.PrevHash)
		s.RotatedMs = d.varint()
		s.ExpiresMs = d.varint()
	}
	return a
}
