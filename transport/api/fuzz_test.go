package api

import (
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
		if decodeJSON(body, &pp) == nil && pp.Limit != nil && pp.WindowMs != nil {
			p := storage.Policy{Name: "fuzz", Limit: *pp.Limit, WindowMs: *pp.WindowMs}
			if pp.Burst != nil {
				p.Burst = *pp.Burst
			}
			if p.Validate() == nil && (p.Burst == 0 || p.Interval() <= 0) {
				t.Fatalf("accepted a policy that cannot work: %+v", p)
			}
		}
		var cr checkRequest
		_ = decodeJSON(body, &cr)
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
		_, _ = decodeCursor(string(body))
	})
}
