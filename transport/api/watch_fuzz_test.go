package api

import (
	"testing"

	"github.com/troupe-db/troupe/internal/feed"
)

// FuzzWatchQuery feeds arbitrary kinds, from and Last-Event-ID values to
// the watch routes' parser: an answer is a 400 naming the field, a 403
// for a user naming admins' kinds, or a query within the caller's rights;
// never a panic.
func FuzzWatchQuery(f *testing.F) {
	f.Add("users,docs", "0", "", false, true, true)
	f.Add("policies", "", "12-3", false, true, false)
	f.Add("members,members", "18446744073709551616", "1-4294967295", true, true, true)
	f.Add("", "-1", "x", true, false, true)
	f.Fuzz(func(t *testing.T, kinds, from, last string, admin, hasKinds, hasFrom bool) {
		var k, fr []byte
		if hasKinds {
			k = []byte(kinds)
		}
		if hasFrom {
			fr = []byte(from)
		}
		q, e := parseWatchQuery(k, fr, []byte(last), admin)
		if e != nil {
			field, _ := e.Details["field"].(string)
			switch {
			case e.Code == "bad_request" && (field == "kinds" || field == "from" || field == "Last-Event-ID"):
			case e.Code == "forbidden" && !admin:
			default:
				t.Fatalf("%q %q %q admin=%v: %s %q %v", kinds, from, last, admin, e.Code, e.Message, e.Details)
			}
			return
		}
		if q.kinds == 0 || q.kinds&^feed.AllKinds != 0 || !admin && q.kinds&(feed.KindPolicy|feed.KindMember) != 0 {
			t.Fatalf("%q admin=%v: kinds %b", kinds, admin, q.kinds)
		}
		if q.hasAfter != (last != "" || hasFrom) {
			t.Fatalf("%q %q: hasAfter %v", from, last, q.hasAfter)
		}
	})
}
