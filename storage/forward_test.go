package storage

import (
	"reflect"
	"testing"
)

func TestRestamp(t *testing.T) {
	create := &Command{Kind: CmdUserCreate, Stamp: 5, Create: &BatchItem{ID: MakeUserID(5, 3)}}
	if create.StampCount() != 1 {
		t.Fatal(create.StampCount())
	}
	create.Restamp(StampAt(1000))
	if stamp, shard, ok := ParseUserID(create.Create.ID); !ok || stamp != StampAt(1000) || shard != 3 || create.Stamp != StampAt(1000) {
		t.Fatalf("create restamped: %+v", create)
	}
	batch := &Command{Kind: CmdUserBatch, Stamp: 5, Batch: []BatchItem{{ID: MakeUserID(5, 1)}, {ID: MakeUserID(6, 2)}, {ID: "not-an-id"}}}
	if batch.StampCount() != 3 {
		t.Fatal(batch.StampCount())
	}
	batch.Restamp(100)
	for i, want := range []uint16{1, 2} {
		if stamp, shard, ok := ParseUserID(batch.Batch[i].ID); !ok || stamp != 100+uint64(i) || shard != want {
			t.Fatalf("item %d: %s", i, batch.Batch[i].ID)
		}
	}
	if batch.Batch[2].ID != "not-an-id" {
		t.Fatal("an id that does not parse changed")
	}
	patch := &Command{Kind: CmdUserPatch, Stamp: 5, Patch: &UserPatch{ID: MakeUserID(5, 1)}}
	patch.Restamp(9)
	if patch.Stamp != 9 || patch.Patch.ID != MakeUserID(5, 1) || patch.StampCount() != 1 {
		t.Fatalf("patch: %+v", patch)
	}
}

func TestResultRoundTrip(t *testing.T) {
	for _, r := range []Result{
		{},
		{Err: &Error{Kind: KindConflict, Message: "taken", Field: "email"}},
		{User: &User{ID: MakeUserID(1, 1), Name: "N", Email: "e@x", PasswordHash: "h", Role: RoleAdmin, Version: 2, CreatedMs: 1, UpdatedMs: 2, Auth: &UserAuth{Epoch: 3}}},
		{Items: []Result{{Err: &Error{Kind: KindBadRequest, Message: "m"}}, {User: &User{ID: "x"}}}},
	} {
		got, err := DecodeResult(AppendResult(nil, &r))
		if err != nil || !reflect.DeepEqual(got, r) {
			t.Fatalf("%+v → %+v, %v", r, got, err)
		}
	}
	for _, bad := range [][]byte{nil, {0xff}, {resUser}, append(AppendResult(nil, &Result{}), 0)} {
		if _, err := DecodeResult(bad); err == nil {
			t.Fatalf("%x decoded", bad)
		}
	}
}
