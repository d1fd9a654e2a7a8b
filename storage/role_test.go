package storage

import (
	"bytes"
	"testing"
)

// TestServiceRole: the service role parses, prints, passes validation,
// and survives commands, patches and snapshots like the other roles.
func TestServiceRole(t *testing.T) {
	for _, name := range []string{"user", "admin", "service"} {
		r, err := ParseRole(name)
		if err != nil || r.String() != name || !r.Valid() {
			t.Fatalf("%s: %v %v", name, r, err)
		}
	}
	for _, bad := range []string{"", "Service", "owner"} {
		_, err := ParseRole(bad)
		wantBadRequest(t, err, "role")
	}
	for _, r := range []Role{0, RoleService + 1, 255} {
		if r.Valid() {
			t.Fatalf("role %d valid", r)
		}
	}

	in := NewUser{Name: "Billing", Email: "billing@example.com", Role: RoleService}
	if err := in.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := in
	bad.Role = RoleService + 1
	wantBadRequest(t, bad.Validate(), "role")

	// Commands: a batch item and a patch carry the role.
	batch := &Command{Kind: CmdUserBatch, Stamp: 7, Batch: []BatchItem{{ID: MakeUserID(7, 0), User: in}}}
	got, err := DecodeCommand(EncodeCommand(nil, batch))
	if err != nil || got.Batch[0].User.Role != RoleService {
		t.Fatalf("batch: %+v %v", got, err)
	}
	patch := &Command{Kind: CmdUserPatch, Stamp: 8, Patch: &UserPatch{ID: MakeUserID(7, 0), Fields: PatchRole, Role: RoleService}}
	if got, err = DecodeCommand(EncodeCommand(nil, patch)); err != nil || got.Patch.Role != RoleService {
		t.Fatalf("patch: %+v %v", got, err)
	}

	// A patch to and from service; an unknown role is refused.
	cur := &User{ID: MakeUserID(7, 0), Name: "Billing", Email: "billing@example.com", Role: RoleUser, Version: 1}
	next, perr := (&UserPatch{ID: cur.ID, Fields: PatchRole, Role: RoleService}).Apply(cur, t0)
	if perr != nil || next.Role != RoleService || next.Version != 2 {
		t.Fatalf("to service: %+v %v", next, perr)
	}
	_, perr = (&UserPatch{ID: cur.ID, Fields: PatchRole, Role: 9}).Apply(cur, t0)
	wantBadRequest(t, perr, "role")

	// Snapshots keep it.
	s := testSnapshot(t, 2, 10)
	id := MakeUserID(StampAt(t0)+1000, 1)
	if _, err := s.Shards[1].Create(id, &in, t0); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := WriteSnapshot(&b, s); err != nil {
		t.Fatal(err)
	}
	back, rerr := ReadSnapshot(&b)
	if rerr != nil {
		t.Fatal(rerr)
	}
	if u, ok := back.Shards[1].Get(id); !ok || u.Role != RoleService {
		t.Fatalf("after a snapshot: %+v %v", u, ok)
	}
}
