package storage

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

const t0 = int64(1_700_000_000_000)

func newUser(name, email string) *NewUser {
	return &NewUser{Name: name, Email: email, Role: RoleUser}
}

func mustCreate(t *testing.T, s *UserShard, id string, in *NewUser, now int64) *User {
	t.Helper()
	u, err := s.Create(id, in, now)
	if err != nil {
		t.Fatalf("create %s %q: %v", id, in.Email, err)
	}
	return u
}

func ids(us []*User) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.ID
	}
	return out
}

func TestUserShardCreate(t *testing.T) {
	s := NewUserShard()
	id := MakeUserID(StampAt(t0), 0)
	hash := testHash(t, "password1")
	u := mustCreate(t, s, id, &NewUser{Name: "Ada", Email: "Ada@Example.com", PasswordHash: hash, Role: RoleAdmin}, t0)
	want := User{ID: id, Name: "Ada", Email: "Ada@Example.com", PasswordHash: hash, Role: RoleAdmin, Version: 1, CreatedMs: t0, UpdatedMs: t0}
	if *u != want {
		t.Fatalf("created %+v, want %+v", *u, want)
	}
	if got, ok := s.Get(id); !ok || *got != *u || got == u {
		t.Fatal("Get after Create: the same values, in a record of its own")
	}
	got, _ := s.Get(id)
	got.Name = "changed"
	if again, _ := s.Get(id); again.Name != "Ada" {
		t.Fatal("changing a record Get returned changed the shard")
	}
	for _, bad := range []string{"", "not-an-id", strings.ToUpper(id)} {
		if _, ok := s.Get(bad); ok {
			t.Fatalf("Get(%q) found a record", bad)
		}
		if _, err := s.Create(bad, newUser("X", "x@example.com"), t0); err == nil || err.Kind != KindInternal {
			t.Fatalf("Create(%q): %+v", bad, err)
		}
	}
	if owner, ok := s.EmailOwner("ada@example.com"); !ok || owner != id {
		t.Fatalf("email index: %q %v", owner, ok)
	}
	if _, ok := s.EmailOwner("Ada@Example.com"); ok {
		t.Fatal("the index is keyed by EmailKey, not the address as given")
	}

	// Same email in any case: conflict, nothing changes.
	id2 := MakeUserID(StampAt(t0)+1, 0)
	if _, err := s.Create(id2, newUser("Other", " ada@example.com"), t0+1); err == nil || err.Kind != KindBadRequest {
		t.Fatalf("an email with spaces, not normalised: %+v", err)
	}
	for _, email := range []string{"ada@example.com", "ADA@EXAMPLE.COM", "aDa@eXample.Com"} {
		_, err := s.Create(id2, newUser("Other", email), t0+1)
		if err == nil || err.Kind != KindConflict || err.Field != "email" {
			t.Fatalf("%s: %+v, want conflict", email, err)
		}
	}
	if s.Len() != 1 {
		t.Fatalf("len %d", s.Len())
	}
	if _, ok := s.Get(id2); ok {
		t.Fatal("conflicting user stored")
	}
	// Same id: conflict.
	if _, err := s.Create(id, newUser("Other", "other@example.com"), t0+1); err == nil || err.Kind != KindConflict {
		t.Fatalf("duplicate id: %+v", err)
	}
	if _, ok := s.EmailOwner("other@example.com"); ok {
		t.Fatal("failed create left an index entry")
	}
	// Invalid input: bad request, nothing indexed.
	for _, in := range []*NewUser{
		newUser("", "x@example.com"),
		newUser("X", "x@example"),
		{Name: "X", Email: "x@example.com", Role: 0},
		{Name: "X", Email: "x@example.com", Role: RoleUser, PasswordHash: "nope"},
	} {
		if _, err := s.Create(id2, in, t0); err == nil || err.Kind != KindBadRequest {
			t.Fatalf("%+v: %+v", in, err)
		}
	}
	if _, ok := s.EmailOwner("x@example.com"); ok || s.Len() != 1 {
		t.Fatal("invalid create changed the shard")
	}
	u2 := mustCreate(t, s, id2, newUser("Bob", "bob@example.com"), t0+2)
	if s.Len() != 2 || u2.Version != 1 {
		t.Fatal("second create")
	}
	if got := s.Admins(nil); !slices.Equal(got, []string{id}) {
		t.Fatalf("admins %v", got)
	}
	s.Remove(id)
	if _, ok := s.Get(id); ok || s.Len() != 1 {
		t.Fatal("Remove")
	}
	s.Remove(id) // removing twice is harmless
}

func TestUserShardEmailIndex(t *testing.T) {
	s := NewUserShard()
	a, b := MakeUserID(1, 0), MakeUserID(2, 0)
	if err := s.IndexEmail("x@example.com", a); err != nil {
		t.Fatal(err)
	}
	if err := s.IndexEmail("x@example.com", a); err != nil {
		t.Fatalf("re-indexing for the same owner: %v", err)
	}
	if err := s.IndexEmail("x@example.com", b); err == nil || err.Kind != KindConflict || err.Field != "email" {
		t.Fatalf("another owner: %+v", err)
	}
	s.UnindexEmail("x@example.com", b) // not the owner: no effect
	if owner, ok := s.EmailOwner("x@example.com"); !ok || owner != a {
		t.Fatal("unindex by a non-owner removed the entry")
	}
	s.UnindexEmail("nobody@example.com", a)
	s.UnindexEmail("x@example.com", a)
	if _, ok := s.EmailOwner("x@example.com"); ok {
		t.Fatal("entry still there")
	}
	if err := s.IndexEmail("x@example.com", b); err != nil {
		t.Fatalf("free key: %v", err)
	}
}

// listShard holds n users whose ids follow their stamps, created in random
// order; the i-th user (by id) is named "User i" with a mixed-case email.
func listShard(t *testing.T, n int) (*UserShard, []string) {
	s := NewUserShard()
	all := make([]string, n)
	for i := range all {
		all[i] = MakeUserID(StampAt(t0)+uint64(i)*3, 0)
	}
	r := rand.New(rand.NewPCG(5, 6))
	for _, i := range r.Perm(n) {
		mustCreate(t, s, all[i], newUser(fmt.Sprintf("User %d", i), fmt.Sprintf("Mail%d@Example.com", i)), t0)
	}
	return s, all
}

func TestUserShardList(t *testing.T) {
	s, all := listShard(t, 250)
	if got := ids(s.List(nil, ListQuery{Limit: 1000})); !slices.Equal(got, all) {
		t.Fatal("full list not in id order")
	}
	// Pages of every size cover everything once, in order.
	for _, limit := range []int{1, 2, 7, 100, 249, 250, 251} {
		var got []string
		after := ""
		for pages := 0; ; pages++ {
			page := s.List(nil, ListQuery{After: after, Limit: limit})
			if len(page) > limit || pages > 300 {
				t.Fatalf("limit %d: page of %d", limit, len(page))
			}
			if len(page) == 0 {
				break
			}
			got = append(got, ids(page)...)
			after = page[len(page)-1].ID
		}
		if !slices.Equal(got, all) {
			t.Fatalf("limit %d: pages do not cover the shard", limit)
		}
	}
	// After need not name an existing record: the gaps between ids.
	between := MakeUserID(StampAt(t0)+3*10+1, 0)
	if got := ids(s.List(nil, ListQuery{After: between, Limit: 2})); !slices.Equal(got, all[11:13]) {
		t.Fatalf("after a missing id: %v", got)
	}
	if got := s.List(nil, ListQuery{After: all[len(all)-1], Limit: 5}); len(got) != 0 {
		t.Fatal("after the last id")
	}
	if got := s.List(nil, ListQuery{After: "0", Limit: 1}); len(got) != 0 {
		t.Fatal("after a string that is not an id: nothing follows it")
	}
	// dst is appended to.
	dst := []*User{{ID: "x"}}
	if got := s.List(dst, ListQuery{Limit: 2}); len(got) != 3 || got[0].ID != "x" {
		t.Fatal("dst not kept")
	}
	// Limit 0 or less: nothing.
	for _, limit := range []int{0, -1} {
		if got := s.List(nil, ListQuery{Limit: limit}); len(got) != 0 {
			t.Errorf("limit %d returned %d records", limit, len(got))
		}
	}

	// Q: case-insensitive substring of name or email (Q is lower case).
	var want []string
	for i, id := range all {
		if strings.Contains(fmt.Sprint(i), "12") {
			want = append(want, id)
		}
	}
	if got := ids(s.List(nil, ListQuery{Q: "12", Limit: 1000})); !slices.Equal(got, want) {
		t.Fatalf("q=12: %d records, want %d", len(got), len(want))
	}
	var wantMail []string
	for i, id := range all {
		if strings.HasPrefix(fmt.Sprint(i), "12") {
			wantMail = append(wantMail, id)
		}
	}
	if got := ids(s.List(nil, ListQuery{Q: "mail12", Limit: 1000})); !slices.Equal(got, wantMail) {
		t.Fatalf("q matched against the email: %d, want %d", len(got), len(wantMail))
	}
	if got := ids(s.List(nil, ListQuery{Q: "user 12", Limit: 2, After: wantMail[0]})); !slices.Equal(got, wantMail[1:3]) {
		t.Fatalf("q with after and limit: %v want %v", got, wantMail[1:3])
	}
	if got := s.List(nil, ListQuery{Q: "nobody", Limit: 10}); len(got) != 0 {
		t.Fatal("q=nobody")
	}

	if c := s.Count(""); c != 250 {
		t.Fatalf("count %d", c)
	}
	if c := s.Count("12"); c != len(want) {
		t.Fatalf("count(12) = %d, want %d", c, len(want))
	}
	if c := s.Count("example.com"); c != 250 {
		t.Fatalf("count(example.com) = %d", c)
	}
	if c := s.Count("zzz"); c != 0 {
		t.Fatalf("count(zzz) = %d", c)
	}
	n := 0
	s.Ascend(func(*User) bool { n++; return n < 10 })
	if n != 10 {
		t.Fatal("Ascend does not stop")
	}
}

func TestUserShardViewIsolation(t *testing.T) {
	s, all := listShard(t, 300) // several btree levels
	keyOf := func(i int) string { return fmt.Sprintf("mail%d@example.com", i) }
	v := s.View()

	// Change the live shard in every way.
	old, _ := s.Get(all[0])
	next := *old
	next.Name, next.Version = "Changed", 2
	s.Put(&next)
	s.Remove(all[1])
	s.UnindexEmail(keyOf(1), all[1])
	mustCreate(t, s, MakeUserID(StampAt(t0)+10_000, 0), newUser("New", "new@example.com"), t0)
	for i := 2; i < 200; i++ {
		s.Remove(all[i])
	}

	if v.Len() != 300 {
		t.Fatalf("view len %d", v.Len())
	}
	if u, _ := v.Get(all[0]); *u != *old || u.Name != "User 0" {
		t.Fatal("view sees a later Put")
	}
	if _, ok := v.Get(all[1]); !ok {
		t.Fatal("view sees a later Remove")
	}
	// A view holds records only; its email index is rebuilt from them.
	if v.HasEmailIndex() {
		t.Fatal("a view carries an email index")
	}
	if err := RebuildEmailIndexes([]*UserShard{v}); err != nil {
		t.Fatal(err)
	}
	if owner, ok := v.EmailOwner(keyOf(1)); !ok || owner != all[1] {
		t.Fatal("view sees a later UnindexEmail")
	}
	if _, ok := v.EmailOwner("new@example.com"); ok {
		t.Fatal("view sees a later Create")
	}
	if got := ids(v.List(nil, ListQuery{Limit: 1000})); !slices.Equal(got, all) {
		t.Fatal("view list changed")
	}

	// And the other way round: writing to a view leaves the shard alone.
	if s.Len() != 300-199+1 {
		t.Fatalf("live len %d", s.Len())
	}
	v2 := s.View()
	if err := RebuildEmailIndexes([]*UserShard{v2}); err != nil {
		t.Fatal(err)
	}
	v2.Remove(all[250])
	mustCreate(t, v2, MakeUserID(StampAt(t0)+20_000, 0), newUser("Ghost", "ghost@example.com"), t0)
	if _, ok := s.Get(all[250]); !ok {
		t.Fatal("a view's Remove reached the shard")
	}
	if _, ok := s.EmailOwner("ghost@example.com"); ok || s.Len() != 102 {
		t.Fatal("a view's Create reached the shard")
	}
	if v.Len() != 300 {
		t.Fatal("first view changed")
	}
}

func TestUserPatchApply(t *testing.T) {
	hash1, hash2 := testHash(t, "password1"), testHash(t, "password2")
	cur := &User{ID: MakeUserID(1, 0), Name: "Ada", Email: "ada@example.com", PasswordHash: hash1,
		Role: RoleUser, Version: 3, CreatedMs: t0, UpdatedMs: t0 + 10}
	saved := *cur
	now := t0 + 100

	check := func(name string, p UserPatch, want func(u *User)) {
		t.Helper()
		got, err := p.Apply(cur, now)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		w := saved
		w.Version, w.UpdatedMs = 4, now
		want(&w)
		if got == cur || *got != w {
			t.Fatalf("%s: got %+v, want %+v", name, *got, w)
		}
		if *cur != saved {
			t.Fatalf("%s: Apply changed its input", name)
		}
	}
	check("name", UserPatch{Fields: PatchName, Name: "  Ada L. "}, func(u *User) { u.Name = "Ada L." })
	check("email", UserPatch{Fields: PatchEmail, Email: " ada@lovelace.org "}, func(u *User) { u.Email = "ada@lovelace.org" })
	check("email case", UserPatch{Fields: PatchEmail, Email: "Ada@example.com"}, func(u *User) { u.Email = "Ada@example.com" })
	check("password", UserPatch{Fields: PatchPassword, PasswordHash: hash2}, func(u *User) { u.PasswordHash = hash2 })
	check("role", UserPatch{Fields: PatchRole, Role: RoleAdmin}, func(u *User) { u.Role = RoleAdmin })
	check("all", UserPatch{Fields: PatchName | PatchEmail | PatchPassword | PatchRole, IfVersion: 3,
		Name: "B", Email: "b@example.com", PasswordHash: hash2, Role: RoleAdmin}, func(u *User) {
		u.Name, u.Email, u.PasswordHash, u.Role = "B", "b@example.com", hash2, RoleAdmin
	})
	// Fields not named are ignored even if set.
	check("only name", UserPatch{Fields: PatchName, Name: "Bea", Email: "x@y.z", Role: RoleAdmin}, func(u *User) { u.Name = "Bea" })

	// No change: the same record, no new version.
	for _, p := range []UserPatch{
		{},
		{IfVersion: 3},
		{Fields: PatchName, Name: "Ada"},
		{Fields: PatchName, Name: " Ada\t"},
		{Fields: PatchEmail, Email: "ada@example.com"},
		{Fields: PatchPassword, PasswordHash: hash1},
		{Fields: PatchRole, Role: RoleUser},
		{Fields: PatchName | PatchEmail | PatchPassword | PatchRole, Name: "Ada", Email: "ada@example.com", PasswordHash: hash1, Role: RoleUser},
	} {
		got, err := p.Apply(cur, now)
		if err != nil || got != cur || got.Version != 3 || got.UpdatedMs != t0+10 {
			t.Fatalf("no-op %+v: %+v, %v", p, got, err)
		}
	}

	// Time never goes backwards.
	got, err := (&UserPatch{Fields: PatchName, Name: "Z"}).Apply(cur, t0)
	if err != nil || got.UpdatedMs != t0+10 || got.Version != 4 {
		t.Fatalf("earlier now: %+v %v", got, err)
	}

	bad := []struct {
		p     UserPatch
		kind  Kind
		field string
	}{
		{UserPatch{IfVersion: 2, Fields: PatchName, Name: "X"}, KindPreconditionFailed, ""},
		{UserPatch{IfVersion: 4}, KindPreconditionFailed, ""},
		{UserPatch{IfVersion: 2, Fields: PatchName, Name: ""}, KindPreconditionFailed, ""}, // version first
		{UserPatch{Fields: 1 << 4}, KindBadRequest, ""},
		{UserPatch{Fields: PatchName, Name: " "}, KindBadRequest, "name"},
		{UserPatch{Fields: PatchName, Name: strings.Repeat("n", 201)}, KindBadRequest, "name"},
		{UserPatch{Fields: PatchEmail, Email: "nope"}, KindBadRequest, "email"},
		{UserPatch{Fields: PatchPassword, PasswordHash: ""}, KindBadRequest, "password"},
		{UserPatch{Fields: PatchPassword, PasswordHash: "hunter22"}, KindBadRequest, "password"},
		{UserPatch{Fields: PatchRole, Role: 0}, KindBadRequest, "role"},
		{UserPatch{Fields: PatchRole, Role: 7}, KindBadRequest, "role"},
		{UserPatch{Fields: PatchName | PatchRole, Name: "Ok", Role: 9}, KindBadRequest, "role"},
	}
	for _, tt := range bad {
		got, err := tt.p.Apply(cur, now)
		if err == nil || err.Kind != tt.kind || err.Field != tt.field || got != nil {
			t.Errorf("%+v: %+v %+v, want %v on %q", tt.p, got, err, tt.kind, tt.field)
		}
	}
	if *cur != saved {
		t.Fatal("Apply changed its input")
	}

	for _, tt := range []struct {
		f    PatchFields
		want bool
	}{{0, false}, {PatchName, false}, {PatchPassword | PatchName, false}, {PatchEmail, true}, {PatchRole, true}, {PatchName | PatchRole, true}} {
		if got := (&UserPatch{Fields: tt.f}).ChangesEmailOrRole(); got != tt.want {
			t.Errorf("ChangesEmailOrRole(%b) = %v", tt.f, got)
		}
	}
}
