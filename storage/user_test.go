package storage

import (
	"errors"
	"strings"
	"testing"
)

func wantBadRequest(t *testing.T, err *Error, field string) {
	t.Helper()
	if err == nil {
		t.Fatal("accepted, want bad_request")
	}
	if err.Kind != KindBadRequest || !errors.Is(err, ErrBadRequest) {
		t.Fatalf("kind %v, want bad_request: %v", err.Kind, err)
	}
	if err.Field != field {
		t.Fatalf("field %q, want %q", err.Field, field)
	}
}

func TestNormalizeName(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"Ada", "Ada", true},
		{"  Ada Lovelace \t\n", "Ada Lovelace", true},
		{"\u00a0Zoë\u3000", "Zoë", true}, // unicode spaces are trimmed too
		{"李小龙", "李小龙", true},
		{"a", "a", true},
		{strings.Repeat("x", 200), strings.Repeat("x", 200), true},
		{strings.Repeat("é", 200), strings.Repeat("é", 200), true}, // runes, not bytes
		{" " + strings.Repeat("é", 200) + " ", strings.Repeat("é", 200), true},
		{strings.Repeat("x", 201), "", false},
		{strings.Repeat("é", 201), "", false},
		{"", "", false},
		{"   ", "", false},
		{"\t\n\r", "", false},
		{"Ada\x00", "", false},
		{"Ada\nLovelace", "", false},
		{"Ada\x7f", "", false},
		{"Ada\u0085x", "", false}, // C1 control
		{"bad\xffutf8", "", false},
	}
	for _, tt := range tests {
		got, err := NormalizeName("name", tt.in)
		if !tt.ok {
			wantBadRequest(t, err, "name")
			if got != "" {
				t.Errorf("%q: rejected but returned %q", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("NormalizeName(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if _, err := NormalizeName("users[3].name", ""); err == nil || err.Field != "users[3].name" || !strings.Contains(err.Message, "users[3].name") {
		t.Errorf("field name not used: %+v", err)
	}
}

func TestNormalizeEmail(t *testing.T) {
	local64 := strings.Repeat("a", 64)
	label63 := strings.Repeat("b", 63)
	// 254 bytes exactly: 64 + 1 + 63 + 1 + 63 + 1 + 61
	long254 := local64 + "@" + label63 + "." + label63 + "." + strings.Repeat("c", 61)
	if len(long254) != 254 {
		t.Fatal(len(long254))
	}
	valid := []struct{ in, want string }{
		{"ada@example.com", ""},
		{"  Ada@Example.COM \n", "Ada@Example.COM"},
		{"a@b.c", ""},
		{"first.last@example.com", ""},
		{"a.b.c.d@example.com", ""},
		{"user+tag@example.com", ""},
		{"o'brien@example.ie", ""},
		{"!#$%&'*+/=?^_`{|}~-@example.com", ""},
		{"x@sub.domain.example.co.uk", ""},
		{"x@my-host.example", ""},
		{"x@a-b-c.d-e", ""},
		{"x@123.456", ""},
		{"josé@exämple.com", ""},
		{"用户@例子.广告", ""},
		{"Δοκιμή@παράδειγμα.δοκιμή", ""},
		{"user٣@example.com", ""}, // non-ASCII digit in the local part
		{local64 + "@example.com", ""},
		{"x@" + label63 + ".com", ""},
		{long254, ""},
	}
	for _, tt := range valid {
		want := tt.want
		if want == "" {
			want = tt.in
		}
		got, err := NormalizeEmail("email", tt.in)
		if err != nil || got != want {
			t.Errorf("NormalizeEmail(%q) = %q, %v; want %q", tt.in, got, err, want)
		}
	}
	invalid := []string{
		"",
		"   ",
		"ada",
		"ada.example.com",
		"@example.com",
		"ada@",
		"ada@example",                        // no dot in the domain
		"ada@.example.com",                   // empty label
		"ada@example.com.",                   // trailing dot
		"ada@example..com",                   // empty label
		"ada@-example.com",                   // label starts with '-'
		"ada@example-.com",                   // label ends with '-'
		"ada@exa_mple.com",                   // '_' not allowed in the domain
		"ada@exa mple.com",                   // space
		"ada@[127.0.0.1]",                    // address literals are not supported
		"ada@example.com😀",                   // emoji in the domain
		"ada@١٢٣.com",                        // non-ASCII digits in the domain
		".ada@example.com",                   // leading dot
		"ada.@example.com",                   // trailing dot
		"a..da@example.com",                  // double dot
		"a da@example.com",                   // space in the local part
		"a\tda@example.com",                  // control character
		"\"ada\"@example.com",                // quoted local parts are not supported
		"a(b)@example.com",                   // comment characters
		"a,b@example.com",                    // comma
		"a@b@example.com",                    // '@' in the local part
		"😀@example.com",                      // emoji in the local part
		"ada\x00@example.com",                // NUL
		"ad\xffa@example.com",                // not UTF-8
		"ada@exam\xffple.com",                // not UTF-8
		local64 + "a@example.com",            // local part of 65 bytes
		"x@" + label63 + "b.com",             // label of 64 bytes
		long254 + "c",                        // 255 bytes
		"é" + local64[3:] + "aa@example.com", // 64 runes but 65 bytes: counted in bytes
	}
	for _, in := range invalid {
		got, err := NormalizeEmail("email", in)
		if err == nil {
			t.Errorf("NormalizeEmail(%q) accepted as %q", in, got)
			continue
		}
		wantBadRequest(t, err, "email")
	}
}

func TestEmailKey(t *testing.T) {
	tests := []struct{ in, want string }{
		{"ada@example.com", "ada@example.com"},
		{"Ada@Example.COM", "ada@example.com"},
		{"ADA@EXAMPLE.COM", "ada@example.com"},
		{"JOSÉ@EXÄMPLE.COM", "josé@exämple.com"},
		{"Δοκιμή@Παράδειγμα.δοκιμή", "δοκιμή@παράδειγμα.δοκιμή"},
		{"用户@例子.广告", "用户@例子.广告"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := EmailKey(tt.in); got != tt.want {
			t.Errorf("EmailKey(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if got := EmailKey(tt.want); got != tt.want {
			t.Errorf("EmailKey not idempotent on %q: %q", tt.want, got)
		}
	}
	// Lower-case ASCII is returned as is, without allocating.
	s := "ada@example.com"
	if n := testing.AllocsPerRun(100, func() { _ = EmailKey(s) }); n != 0 {
		t.Errorf("EmailKey allocates %v times for a lower-case address", n)
	}
}

func TestCheckPassword(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"12345678", true},
		{"correct horse battery staple", true},
		{"пароль12", true}, // 8 runes, 14 bytes
		{"ééééééé", false}, // 7 runes, 14 bytes
		{"1234567", false},
		{"", false},
		{strings.Repeat("x", MaxPasswordBytes), true},
		{strings.Repeat("x", MaxPasswordBytes+1), false},
		{strings.Repeat("é", MaxPasswordBytes/2+1), false}, // over the byte limit
		{"1234567\xff", false},
	}
	for _, tt := range tests {
		err := CheckPassword("password", tt.in)
		if tt.ok {
			if err != nil {
				t.Errorf("CheckPassword(%.20q...) = %v", tt.in, err)
			}
			continue
		}
		wantBadRequest(t, err, "password")
	}
}

func TestParseRole(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Role
	}{{"user", RoleUser}, {"admin", RoleAdmin}} {
		r, err := ParseRole(tt.in)
		if err != nil || r != tt.want || r.String() != tt.in {
			t.Errorf("ParseRole(%q) = %v, %v", tt.in, r, err)
		}
	}
	for _, in := range []string{"", "Admin", "USER", " user", "root", "guest"} {
		r, err := ParseRole(in)
		if r != 0 {
			t.Errorf("ParseRole(%q) = %v", in, r)
		}
		wantBadRequest(t, err, "role")
	}
	if Role(0).String() != "unknown" || Role(9).String() != "unknown" {
		t.Error("unknown roles")
	}
}

func TestNewUserValidate(t *testing.T) {
	hash := testHash(t, "password1")
	ok := NewUser{Name: "Ada", Email: "ada@example.com", Role: RoleUser, PasswordHash: hash}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		mod   func(*NewUser)
		field string
	}{
		{func(n *NewUser) { n.Name = " " }, "name"},
		{func(n *NewUser) { n.Email = "nope" }, "email"},
		{func(n *NewUser) { n.Role = 0 }, "role"},
		{func(n *NewUser) { n.Role = RoleService + 1 }, "role"},
		{func(n *NewUser) { n.PasswordHash = "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw" }, "password_hash"},
		{func(n *NewUser) { n.PasswordHash = "plain text" }, "password_hash"},
		// Not normalised: apply stores and indexes values as given.
		{func(n *NewUser) { n.Name = " Ada" }, "name"},
		{func(n *NewUser) { n.Email = "ada@example.com\n" }, "email"},
		{func(n *NewUser) { n.Email = "\u00a0ada@example.com" }, "email"},
	}
	for i, tt := range tests {
		n := ok
		tt.mod(&n)
		wantBadRequestIdx(t, i, n.Validate(), tt.field)
	}
	n := ok
	n.PasswordHash = ""
	if err := n.Validate(); err != nil {
		t.Errorf("no password: %v", err)
	}
}

func wantBadRequestIdx(t *testing.T, i int, err *Error, field string) {
	t.Helper()
	if err == nil || err.Kind != KindBadRequest || err.Field != field {
		t.Errorf("case %d: got %+v, want bad_request on %q", i, err, field)
	}
}

func TestErrorIs(t *testing.T) {
	e := &Error{Kind: KindConflict, Message: "dup"}
	if !errors.Is(e, ErrConflict) || errors.Is(e, ErrNotFound) {
		t.Error("errors.Is by kind")
	}
	if errors.Is(e, &Error{Kind: KindConflict, Message: "other"}) {
		t.Error("a non-sentinel target matched")
	}
	if e.Error() != "conflict: dup" {
		t.Error(e.Error())
	}
	for k := KindBadRequest; k <= KindInternal; k++ {
		if strings.HasPrefix(k.String(), "kind(") {
			t.Errorf("kind %d has no name", k)
		}
	}
	if Kind(42).String() != "kind(42)" {
		t.Error(Kind(42).String())
	}
}

func TestContainsFold(t *testing.T) {
	tests := []struct {
		s, sub string
		want   bool
	}{
		{"Ada Lovelace", "", true},
		{"Ada Lovelace", "love", true},
		{"Ada Lovelace", "ada l", true},
		{"Ada Lovelace", "lace", true},
		{"Ada Lovelace", "laces", false},
		{"ADA", "ada", true},
		{"JOSÉ", "josé", true},
		{"José", "sé", true},
		{"José", "se", false},
		{"ab", "abc", false},
	}
	for _, tt := range tests {
		if got := containsFold(tt.s, tt.sub); got != tt.want {
			t.Errorf("containsFold(%q, %q) = %v", tt.s, tt.sub, got)
		}
	}
}
