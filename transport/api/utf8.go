package api

import (
	"bytes"
	stdjson "encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"
)

// JSON text is UTF-8 (RFC 8259), but the decoders replace invalid bytes
// with U+FFFD without a word, so a name or a title could be stored other
// than it was sent. A body that is not valid UTF-8 is refused whole, with
// details.field naming where the bad bytes are ("users[3].name").

// badUTF8 is the answer to a body that is not valid UTF-8.
func badUTF8(body []byte) *apiError {
	if field := invalidUTF8Field(body); field != "" {
		return badRequest(field+" must be valid UTF-8", field)
	}
	return badRequest("the request body must be valid UTF-8", "")
}

// invalidUTF8At returns the offset of body's first byte that is not
// valid UTF-8, or -1.
func invalidUTF8At(body []byte) int {
	for i := 0; i < len(body); {
		if body[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, n := utf8.DecodeRune(body[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return -1
}

// invalidUTF8Field returns the path of the JSON value (or key) holding
// body's first invalid byte, "" when there is none or body is not JSON.
func invalidUTF8Field(body []byte) string {
	bad := int64(invalidUTF8At(body))
	if bad < 0 {
		return ""
	}
	type level struct {
		array bool
		key   string
		index int
		value bool // in an object: a key was read, its value comes next
	}
	var levels []level
	path := func() string {
		var b strings.Builder
		for _, l := range levels {
			if l.array {
				b.WriteString("[" + strconv.Itoa(l.index) + "]")
				continue
			}
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(l.key)
		}
		return b.String()
	}
	// valueDone moves the innermost level past the value just read.
	valueDone := func() {
		if n := len(levels); n > 0 {
			if levels[n-1].array {
				levels[n-1].index++
			} else {
				levels[n-1].value = false
			}
		}
	}
	dec := stdjson.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	for {
		before := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		hit := bad >= before && bad < dec.InputOffset()
		switch t := tok.(type) {
		case stdjson.Delim:
			switch t {
			case '{':
				levels = append(levels, level{})
			case '[':
				levels = append(levels, level{array: true})
			default:
				levels = levels[:len(levels)-1]
				valueDone()
			}
		case string:
			if n := len(levels); n > 0 && !levels[n-1].array && !levels[n-1].value {
				levels[n-1].key, levels[n-1].value = t, true // a key
			} else if !hit {
				valueDone()
			}
			if hit {
				return path()
			}
		default:
			valueDone()
		}
	}
}
