package storage

import (
	"reflect"
	"slices"
	"testing"
)

// TestReadersFollowMayRead: the users Readers names are exactly those
// MayRead admits without admin rights, whatever the owner and editors.
func TestReadersFollowMayRead(t *testing.T) {
	users := []string{"", "alice", "bob", "carol", "dave"}
	base, _ := NewDoc("d1", "One", "alice", "", 1)
	docs := []*Doc{base, base.WithEditor("bob"), base.WithEditor("bob").WithEditor("carol"), base.WithEditor("alice"),
		base.WithEditor("bob").WithoutEditor("bob")}
	for _, d := range docs {
		readers := d.Readers()
		for _, u := range users {
			if in := slices.Contains(readers, u); in != d.MayRead(u, false) {
				t.Fatalf("owner %q editors %v: %q among the readers %v, MayRead says %v", d.Owner, d.Editors, u, in, !in)
			}
		}
	}
}

// TestListing: a listing is every field but the text and the history.
func TestListing(t *testing.T) {
	d, _ := NewDoc("d1", "One", "alice", "hello", 1)
	d, _, err := d.Submit("c", 1, 0, []Op{{Kind: OpInsert, Pos: 5, Text: " world"}}, 2, 10)
	if err != nil {
		t.Fatal(err)
	}
	d = d.WithEditor("bob").WithTitle("Two", 3)
	l := d.Listing()
	if l.Text.Size() != 0 || l.OldestBase() != l.Version {
		t.Fatalf("the listing keeps text or history: %+v", l)
	}
	// Every exported field but Text is copied; a new field must be
	// considered here.
	got, want := reflect.ValueOf(l), reflect.ValueOf(*d)
	for i := range got.NumField() {
		f := got.Type().Field(i)
		if !f.IsExported() || f.Name == "Text" {
			continue
		}
		if !reflect.DeepEqual(got.Field(i).Interface(), want.Field(i).Interface()) {
			t.Fatalf("field %s: %v, want %v", f.Name, got.Field(i), want.Field(i))
		}
	}
}
