package storage

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// cheapArgon2 keeps tests fast; production parameters are DefaultArgon2.
var cheapArgon2 = Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1, KeyLen: 16, SaltLen: 8}

func testHash(t testing.TB, password string) string {
	t.Helper()
	return HashPassword(password, []byte("saltsalt"), cheapArgon2)
}

func TestArgon2ParamsValidate(t *testing.T) {
	if err := DefaultArgon2.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := cheapArgon2.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []func(*Argon2Params){
		func(p *Argon2Params) { p.MemoryKiB = 7 },
		func(p *Argon2Params) { p.Threads = 4; p.MemoryKiB = 31 },
		func(p *Argon2Params) { p.MemoryKiB = 4*1024*1024 + 1 },
		func(p *Argon2Params) { p.Time = 0 },
		func(p *Argon2Params) { p.Time = 101 },
		func(p *Argon2Params) { p.Threads = 0 },
		func(p *Argon2Params) { p.KeyLen = 15 },
		func(p *Argon2Params) { p.KeyLen = 129 },
		func(p *Argon2Params) { p.SaltLen = 7 },
		func(p *Argon2Params) { p.SaltLen = 65 },
	}
	for i, mod := range bad {
		p := cheapArgon2
		mod(&p)
		if err := p.Validate(); err == nil {
			t.Errorf("case %d: %+v accepted", i, p)
		}
	}
}

func TestHashVerifyPassword(t *testing.T) {
	salt := []byte("0123456789abcdef")
	p := Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1, KeyLen: 32, SaltLen: len(salt)}
	h := HashPassword("correct horse", salt, p)
	if !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("PHC string %q", h)
	}
	if h != HashPassword("correct horse", salt, p) {
		t.Fatal("hashing is not deterministic")
	}
	if h == HashPassword("correct horse", []byte("0123456789abcdeX"), p) {
		t.Fatal("salt ignored")
	}
	phc, err := ParsePHC(h)
	if err != nil {
		t.Fatal(err)
	}
	if phc.Params != p || !bytes.Equal(phc.Salt, salt) || len(phc.Key) != 32 {
		t.Fatalf("parsed %+v", phc)
	}
	for _, tt := range []struct {
		pw   string
		want bool
	}{{"correct horse", true}, {"correct horsE", false}, {"", false}, {"correct horse ", false}} {
		ok, err := VerifyPassword(tt.pw, h)
		if err != nil || ok != tt.want {
			t.Errorf("VerifyPassword(%q) = %v, %v", tt.pw, ok, err)
		}
	}
	if ok, err := VerifyPassword("x", "$argon2id$garbage"); ok || err == nil {
		t.Errorf("bad PHC verified: %v %v", ok, err)
	}
	// Other parameters are honoured when verifying.
	p2 := Argon2Params{MemoryKiB: 128, Time: 2, Threads: 2, KeyLen: 16, SaltLen: 8}
	h2 := HashPassword("pw", []byte("saltsalt"), p2)
	if ok, err := VerifyPassword("pw", h2); !ok || err != nil {
		t.Errorf("verify with m=128,t=2,p=2: %v %v", ok, err)
	}
}

func TestParsePHCRejects(t *testing.T) {
	good := testHash(t, "pw")
	if _, err := ParsePHC(good); err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, "$")
	salt, key := parts[4], parts[5]
	phc := func(alg, ver, params, salt, key string) string {
		return "$" + alg + "$" + ver + "$" + params + "$" + salt + "$" + key
	}
	bad := []string{
		"",
		"argon2id",
		good[1:],                          // no leading $
		good + "$",                        // extra part
		strings.TrimSuffix(good, "$"+key), // missing hash
		"x" + good,
		phc("argon2i", "v=19", "m=64,t=1,p=1", salt, key),
		phc("argon2d", "v=19", "m=64,t=1,p=1", salt, key),
		phc("bcrypt", "v=19", "m=64,t=1,p=1", salt, key),
		phc("ARGON2ID", "v=19", "m=64,t=1,p=1", salt, key),
		phc("argon2id", "v=16", "m=64,t=1,p=1", salt, key),
		phc("argon2id", "v=", "m=64,t=1,p=1", salt, key),
		phc("argon2id", "19", "m=64,t=1,p=1", salt, key),
		phc("argon2id", "v=19", "", salt, key),
		phc("argon2id", "v=19", "m=64", salt, key),     // t, p missing
		phc("argon2id", "v=19", "m=64,t=1", salt, key), // p missing
		phc("argon2id", "v=19", "t=1,p=1", salt, key),  // m missing
		phc("argon2id", "v=19", "m=64,t=1,p=1,x=2", salt, key),
		phc("argon2id", "v=19", "m=64,t=1,p", salt, key),
		phc("argon2id", "v=19", "m=64;t=1;p=1", salt, key),
		phc("argon2id", "v=19", "m=-64,t=1,p=1", salt, key),
		phc("argon2id", "v=19", "m=64,t=1,p=1 ", salt, key),
		phc("argon2id", "v=19", "m=0x40,t=1,p=1", salt, key),
		phc("argon2id", "v=19", "m=99999999999,t=1,p=1", salt, key), // overflows uint32
		phc("argon2id", "v=19", "m=7,t=1,p=1", salt, key),           // memory too small
		phc("argon2id", "v=19", "m=64,t=1,p=9", salt, key),          // memory < 8*p
		phc("argon2id", "v=19", "m=262145,t=1,p=1", salt, key),      // memory too large
		phc("argon2id", "v=19", "m=64,t=0,p=1", salt, key),
		phc("argon2id", "v=19", "m=64,t=11,p=1", salt, key),
		phc("argon2id", "v=19", "m=2040,t=1,p=17", salt, key),
		phc("argon2id", "v=19", "m=64,t=1,p=0", salt, key),
		phc("argon2id", "v=19", "m=4096,t=1,p=256", salt, key),
		phc("argon2id", "v=19", "m=64,t=1,p=1", "", key),
		phc("argon2id", "v=19", "m=64,t=1,p=1", "c2FsdA", key),                // 4-byte salt
		phc("argon2id", "v=19", "m=64,t=1,p=1", strings.Repeat("A", 88), key), // 66-byte salt
		phc("argon2id", "v=19", "m=64,t=1,p=1", salt+"=", key),                // padded
		phc("argon2id", "v=19", "m=64,t=1,p=1", "c2F!dHNhbHQ", key),
		phc("argon2id", "v=19", "m=64,t=1,p=1", salt, ""),
		phc("argon2id", "v=19", "m=64,t=1,p=1", salt, "a2V5a2V5a2V5"),           // 9-byte key
		phc("argon2id", "v=19", "m=64,t=1,p=1", salt, strings.Repeat("A", 176)), // 132-byte key
		phc("argon2id", "v=19", "m=64,t=1,p=1", salt, key+"*"),
	}
	for _, s := range bad {
		if p, err := ParsePHC(s); err == nil {
			t.Errorf("ParsePHC(%q) accepted: %+v", s, p.Params)
		}
	}
	// Parameter order is free; the bounds are inclusive.
	for _, params := range []string{"t=1,p=1,m=64", "m=8,t=1,p=1", "m=64,t=10,p=1", "m=2040,t=1,p=16", "m=262144,t=1,p=1"} {
		if _, err := ParsePHC(phc("argon2id", "v=19", params, salt, key)); err != nil {
			t.Errorf("%s: %v", params, err)
		}
	}
}

func TestParsePHCRoundTrip(t *testing.T) {
	for _, p := range []Argon2Params{
		cheapArgon2,
		{MemoryKiB: 19456, Time: 2, Threads: 1, KeyLen: 32, SaltLen: 16},
		{MemoryKiB: 4096, Time: 3, Threads: 4, KeyLen: 64, SaltLen: 32},
	} {
		salt := bytes.Repeat([]byte{0xa5}, p.SaltLen)
		key := bytes.Repeat([]byte{0x5a}, int(p.KeyLen))
		s := fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", p.MemoryKiB, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key))
		got, err := ParsePHC(s)
		if err != nil {
			t.Fatal(err)
		}
		if got.Params != p || !bytes.Equal(got.Salt, salt) || !bytes.Equal(got.Key, key) {
			t.Errorf("%s: %+v", s, got)
		}
	}
}
