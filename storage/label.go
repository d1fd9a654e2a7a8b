package storage

import (
	"strings"
	"unicode/utf8"
)

// CheckLabel is the one rule for text that people read as a label: user
// names and emails, document titles, rate-limit policy names. Surrounding
// white space is not part of a label (it is trimmed before storing);
// what remains must be valid UTF-8 without C0 or C1 control characters
// (nor DEL), and without the bidirectional embeddings, overrides and
// isolates (U+202A–U+202E, U+2066–U+2069), which make a label display
// as other text than it holds. Document text is not a label: it may hold
// any valid Unicode but NUL (CheckDocText).
//
// It runs where requests come in, before a command is proposed; apply
// keeps the older, looser checks of NormalizeName, so a log written
// before this rule replays to the same state.
func CheckLabel(field, s string) *Error {
	if !utf8.ValidString(s) {
		return badRequest(field, "%s must be valid UTF-8", field)
	}
	s = strings.TrimSpace(s)
	for i, r := range s {
		switch {
		case r < 0x20 || r >= 0x7f && r <= 0x9f:
			return badRequest(field, "%s must not contain control characters (U+%04X at byte %d)", field, r, i)
		case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
			return badRequest(field, "%s must not contain bidirectional formatting characters (U+%04X at byte %d)", field, r, i)
		}
	}
	return nil
}
