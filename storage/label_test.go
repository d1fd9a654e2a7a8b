package storage

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestCheckLabel(t *testing.T) {
	good := []string{"Ada", "  Ada Lovelace \t\n", "李小龙", "Zoë\u00a0", "a\u200fb" /* RLM is not an override */, "שלום", "ada@example.com", "api.v2_x-y"}
	for _, s := range good {
		if err := CheckLabel("name", s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	bad := []string{
		"\xff", "Ad\xc3", "a\x00b", "a\tb", "a\nb", "a\x1bb", "a\x7fb", "a\u0085b", "a\u009fb",
		"a\u202ab", "a\u202bb", "a\u202cb", "a\u202db", "evil\u202Etxt.exe", "a\u2066b", "a\u2067b", "a\u2068b", "a\u2069b",
	}
	for _, s := range bad {
		err := CheckLabel("title", s)
		wantBadRequest(t, err, "title")
		if !strings.HasPrefix(err.Message, "title ") {
			t.Errorf("%q: message %q does not name the field", s, err.Message)
		}
	}
}

// FuzzCheckLabel: CheckLabel accepts exactly the valid UTF-8 strings whose
// trimmed text holds no control and no bidirectional formatting character.
func FuzzCheckLabel(f *testing.F) {
	for _, s := range []string{"Ada", "a\u202eb", "\xff", " x\n", "\u0085", "\u2069"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := CheckLabel("name", s)
		want := utf8.ValidString(s)
		if want {
			for _, r := range strings.TrimSpace(s) {
				if unicode.Is(unicode.Cc, r) || r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069 {
					want = false
				}
			}
		}
		if (err == nil) != want {
			t.Fatalf("%q: accepted %v, want %v (%v)", s, err == nil, want, err)
		}
		if err != nil && err.Field != "name" {
			t.Fatalf("%q: field %q", s, err.Field)
		}
	})
}
