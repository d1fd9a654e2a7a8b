package api

import (
	"reflect"
	"strings"
	"testing"

	"github.com/troupe-db/troupe/storage"
	"github.com/troupe-db/troupe/transport/auth"
)

// FuzzDecodeRequests feeds arbitrary bytes to the request decoders and
// validators: they must answer with an error or a valid value, never
// panic.
func FuzzDecodeRequests(f *testing.F) {
	for _, seed := range []string{
		`{"name":"Ada","email":"ada@example.com","password":"correct horse","role":"admin"}`,
		`{"name":"","email":"x"}`, `{"users":[{"name":"A","email":"a@example.com"}]}`,
		`{"name":"x"} {}`, `[]`, `null`, `{"name":5}`, `{"email":"a@b.c","nickname":"y"}`,
		`{"name":"Ada","email":"ada@example.com","password_hash":"$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5"}`,
		`{"users":[{"name":"\u0000","email":"\ud800@x.io"}]}`,
		`{"email":"ada@example.com","password":"correct horse"}`, `{"refresh_token":"rt.x.y.z"}`, `{"all":true}`,
		`{"limit":100,"window_ms":1000,"burst":10,"shadow":true}`,
		`{"algorithm":"fixed_window","limit":10,"window":"month","time_zone":"Asia/Kolkata"}`, `{"algorithm":"concurrency","limit":3}`,
		`{"algorithm":"sliding_window","limit":5,"window_ms":60000}`, `{"algorithm":"fixed_window","limit":1,"window":"day","time_zone":"UTC"}`,
		`{"limit":5,"window_ms":1000,"envoy":{"domain":"edge","descriptors":[{"key":"remote_address"},{"key":"path","value":"/login"}]}}`,
		`{"limit":5,"window_ms":1000,"envoy":{"domain":"","descriptors":[{"value":""}]}}`,
		`{"checks":[{"policy":"a","key":"k","cost":2},{"policy":"sem","key":"k","lease_ms":1000}]}`,
		`{"policy":"sem","key":"k","lease_id":"00000000000000ff"}`, `{"policy":"sem","key":"k","lease_id":"00000000000000FF"}`,
		`{"all":true,"checks":[{"policy":{"name":"p","algorithm":"concurrency","limit":2,"shadow":false},"key":"k","cost":1,"lease_ms":5}]}`,
		`{"checks":[{"policy":{"name":"p","algorithm":"fixed_window","limit":2,"window":"hour","time_zone":"UTC","shadow":false},"key":"k","peek":true}]}`,
		`{"client_id":"c","seq":1,"base_version":0,"ops":[{"op":"insert","pos":0,"text":"x"},{"op":"delete","pos":1,"len":2},{"op":"replace","pos":0,"len":1,"text":"é"}]}`, `{"policy":"api","key":"k","cost":2}`, `100/1s`, `off`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var c createUserRequest
		if decodeJSON(body, &c) == nil {
			if nu, err := validateNewUser(&c, true); err == nil && (nu.Name == "" || nu.Email == "") {
				t.Fatalf("accepted an empty user from %q", body)
			}
		}
		var p patchUserRequest
		_ = decodeJSON(body, &p)
		var b batchRequest
		if decodeJSON(body, &b) == nil && b.Users != nil {
			for i := range *b.Users {
				_, _ = validateNewUser(&(*b.Users)[i], true)
			}
		}
		var lg loginRequest
		_ = decodeJSON(body, &lg)
		var rf refreshRequest
		if decodeJSON(body, &rf) == nil && rf.RefreshToken != nil {
			_, _ = auth.ParseRefreshToken(*rf.RefreshToken)
		}
		var lo logoutRequest
		_ = decodeJSON(body, &lo)
		var pp putPolicyRequest
		if decodeJSON(body, &pp) == nil {
			if p, err := pp.policy("fuzz"); err == nil {
				if p.Validate() != nil || p.Burst == 0 || (p.Algorithm == storage.GCRA || p.Algorithm == storage.SlidingWindow) && p.Interval() <= 0 {
					t.Fatalf("accepted a policy that cannot work: %+v", p)
				}
				// Shown and read back (the decide route's wire form), it is
				// the same policy.
				j := toPolicyJSON(&p, "")
				if back, e := fromPolicyJSON(&j); e != nil || !reflect.DeepEqual(back, p) {
					t.Fatalf("policy %+v read back as %+v (%v)", p, back, e)
				}
			}
		}
		var cr checkRequest
		if decodeJSON(body, &cr) == nil {
			fuzzCheckArgs(t, cr.Cost, cr.LeaseMs)
			if cr.Checks != nil {
				for _, it := range *cr.Checks {
					fuzzCheckArgs(t, it.Cost, it.LeaseMs)
				}
			}
		}
		var rr releaseRequest
		if decodeJSON(body, &rr) == nil && rr.LeaseID != nil {
			if id, ok := parseLeaseID(*rr.LeaseID); ok && (id == 0 || formatLeaseID(id) != strings.ToLower(*rr.LeaseID)) {
				t.Fatalf("lease id %q read as %x", *rr.LeaseID, id)
			}
		}
		var dr decideRequest
		if decodeJSON(body, &dr) == nil {
			for i := range dr.Checks {
				if p, e := fromPolicyJSON(&dr.Checks[i].Policy); e == nil {
					_ = dr.Checks[i].valid(&p, dr.All)
				}
			}
		}
		var sr submitRequest
		if decodeJSON(body, &sr) == nil && sr.Ops != nil {
			if ops, e := opsFromJSON(*sr.Ops); e == nil {
				if _, err := storage.Apply(storage.NewText("hello wörld"), ops); err != nil && err.Kind != storage.KindBadRequest {
					t.Fatalf("ops %q: %v", body, err)
				}
			}
		}
		if p, on, err := storage.ParseRateLimit("default", string(body)); err == nil && on && p.Validate() != nil {
			t.Fatalf("--rate-limit %q parsed into an invalid policy", body)
		}
		_ = parseIfMatch(body)
		if id, ok := parseLeaseID(string(body)); ok && id == 0 {
			t.Fatal("lease id 0 accepted")
		}
		_, _ = decodeCursor(string(body))
	})
}

// fuzzCheckArgs: a check's arguments are accepted or refused naming
// their field, under a policy of every algorithm.
func fuzzCheckArgs(t *testing.T, cost *uint32, lease *int64) {
	for _, p := range []storage.Policy{
		{Name: "g", Limit: 5, WindowMs: 1000}, {Name: "c", Algorithm: storage.Concurrency, Limit: 5},
		{Name: "f", Algorithm: storage.FixedWindow, Limit: 5, Window: storage.UnitDay},
	} {
		if e := p.Validate(); e != nil {
			t.Fatal(e)
		}
		c, l, e := checkArgs("", &p, cost, lease)
		switch {
		case e != nil:
			if f, _ := e.Details["field"].(string); f != "cost" && f != "lease_ms" {
				t.Fatalf("refused naming %q", f)
			}
		case c < 1 || c > p.Burst || (p.Algorithm == storage.Concurrency) != (l > 0):
			t.Fatalf("accepted cost %d, lease %d under %s", c, l, p.Algorithm)
		}
	}
}
