package api

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	json "github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	"github.com/troupe-db/troupe/storage"
)

// decodeJSON decodes a request body into v strictly: one JSON object,
// no unknown fields, nothing after it. The body is copied by the decoder
// (never aliased), so nothing outlives the request.
func decodeJSON(body []byte, v any) *apiError {
	if len(bytes.TrimSpace(body)) == 0 {
		return badRequest("the request body must be a JSON object", "")
	}
	if !utf8.Valid(body) {
		return badUTF8(body)
	}
	// The common case, a valid body, is decoded in one call without a
	// stream decoder (whose buffer is an allocation per request). Any
	// error is worded by the stream decoder below, from a zeroed v, so the
	// answers to invalid bodies are the stream decoder's.
	if json.UnmarshalWithOption(body, v, disallowUnknownFields) == nil {
		return nil
	}
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && !rv.IsNil() {
		rv.Elem().SetZero()
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		field := ""
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			field = ute.Field
		}
		return badRequest("invalid JSON body: "+jsonErrorText(err), field)
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return badRequest("invalid JSON body: unexpected data after the JSON object", "")
	}
	return nil
}

// disallowUnknownFields is, for UnmarshalWithOption, what
// Decoder.DisallowUnknownFields sets: goccy exports no option function for
// it, so its flag (1 << 4) is set here (TestDecodeJSONUnknownField checks
// that an unknown field is still refused by the one-call path).
func disallowUnknownFields(o *json.DecodeOption) { o.Flags |= 1 << 4 }

// jsonErrorText words a decoding error without echoing large inputs.
func jsonErrorText(err error) string {
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) {
		if ute.Field != "" {
			leaf := ute.Field[strings.LastIndexByte(ute.Field, '.')+1:]
			if r, ok := numberRanges[leaf]; ok {
				return fmt.Sprintf("field %q must be an integer from %s", ute.Field, r)
			}
			if lo, hi, ok := integerRange(ute.Type); ok {
				return fmt.Sprintf("field %q must be an integer from %s to %s", ute.Field, lo, hi)
			}
			return fmt.Sprintf("field %q must be %s", ute.Field, jsonType(ute.Type.Kind().String()))
		}
		return "the body must be a JSON object"
	}
	s := err.Error()
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// maxUint64Text is the largest version or index, for messages.
var maxUint64Text = strconv.FormatUint(math.MaxUint64, 10)

// numberRanges are the documented ranges of the numeric body fields
// (API.md), named when a number does not even fit the field's type (a
// negative count, 1e30, 1.5); numbers that fit are checked, with the
// same ranges, by the handlers and storage. Keyed by the field's name,
// which means the same thing in every body that has it (a cursor's pos
// is an op's pos).
var numberRanges = map[string]string{
	"limit":        "1 to " + strconv.Itoa(storage.MaxPolicyLimit),
	"window_ms":    "1 to " + strconv.Itoa(storage.MaxWindowMs),
	"burst":        "1 to " + strconv.Itoa(storage.MaxPolicyLimit),
	"cost":         "1 to the policy's burst",
	"pos":          "0 to " + strconv.Itoa(storage.MaxOpPos),
	"len":          "1 to " + strconv.Itoa(storage.MaxOpPos),
	"seq":          "0 to " + maxUint64Text,
	"base_version": "0 to the document's version",
}

// integerRange is the range of an integer type, for messages.
func integerRange(t reflect.Type) (lo, hi string, ok bool) {
	switch t.Kind() {
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uint:
		return "0", strconv.FormatUint(1<<t.Bits()-1, 10), true
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Int:
		return strconv.FormatInt(-1<<(t.Bits()-1), 10), strconv.FormatInt(1<<(t.Bits()-1)-1, 10), true
	}
	return "", "", false
}

func jsonType(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "struct", "map":
		return "an object"
	case "slice", "array":
		return "an array"
	case "bool":
		return "a boolean"
	}
	return "a number"
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		ctx.SetStatusCode(fasthttp.StatusInternalServerError)
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"error":{"code":"internal","message":"cannot encode the response"}}`)
		return
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

// userJSON is the API form of a user: never a password or its hash.
type userJSON struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Email     string `json:"email"`
	Role      string `json:"role"`
	Version   uint64 `json:"version"`
	CreatedAt string `json:"created_at"`
	UpdatedAt string `json:"updated_at"`
}

func toUserJSON(u *storage.User) userJSON {
	return userJSON{
		ID: u.ID, Name: u.Name, Email: u.Email, Role: u.Role.String(), Version: u.Version,
		CreatedAt: formatTime(u.CreatedMs), UpdatedAt: formatTime(u.UpdatedMs),
	}
}

// formatTime renders Unix milliseconds as RFC 3339 UTC with exactly
// three fractional digits (2026-11-23T22:33:52.497Z), by hand: it runs
// for every user in every response.
func formatTime(ms int64) string {
	var b [24]byte
	return string(appendTime(b[:0], ms))
}

// appendTime appends formatTime(ms) to b. Dates from 0000-03-01 to
// 9999-12-31 are computed by integer arithmetic (days to civil date,
// proleptic Gregorian, as the time package does), others by the time
// package.
func appendTime(b []byte, ms int64) []byte {
	const msPerDay = 86_400_000
	// 0000-03-01 (the start of era 0 below) and 10000-01-01 as days
	// since 1970-01-01.
	const minDays, maxDays = -719_468, 2_932_897
	days := ms / msPerDay
	rem := ms % msPerDay
	if rem < 0 {
		days--
		rem += msPerDay
	}
	if days < minDays || days >= maxDays {
		return time.UnixMilli(ms).UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	}
	// Howard Hinnant's civil_from_days, for non-negative eras only
	// (z ≥ 0).
	z := days + 719_468
	era := z / 146_097
	doe := z - era*146_097
	yoe := (doe - doe/1460 + doe/36_524 - doe/146_096) / 365
	year := yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	day := doy - (153*mp+2)/5 + 1
	month := mp + 3
	if mp >= 10 {
		month = mp - 9
		year++
	}
	b = appendDigits(b, int(year), 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, int(day), 2)
	b = append(b, 'T')
	b = appendDigits(b, int(rem/3_600_000), 2)
	b = append(b, ':')
	b = appendDigits(b, int(rem/60_000%60), 2)
	b = append(b, ':')
	b = appendDigits(b, int(rem/1000%60), 2)
	b = append(b, '.')
	b = appendDigits(b, int(rem%1000), 3)
	return append(b, 'Z')
}

// appendDigits appends v (≥ 0) zero-padded to width digits.
func appendDigits(b []byte, v, width int) []byte {
	n := len(b)
	for range width {
		b = append(b, '0')
	}
	for j := n + width - 1; j >= n; j-- {
		b[j] = byte('0' + v%10)
		v /= 10
	}
	return b
}

// writeUser answers status with the user's JSON and its ETag. It writes
// exactly what writeJSON(ctx, status, toUserJSON(u)) writes, without
// reflection or allocation (FuzzUserJSON compares the two).
func writeUser(ctx *fasthttp.RequestCtx, status int, u *storage.User) {
	var tag [24]byte
	t := append(tag[:0], '"')
	t = strconv.AppendUint(t, u.Version, 10)
	t = append(t, '"')
	ctx.Response.Header.SetBytesV("ETag", t)
	var buf [512]byte
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.Response.ResetBody()
	ctx.Response.AppendBody(appendUserJSON(buf[:0], u))
}

// appendUserJSON appends json.Marshal(toUserJSON(u)) to b.
func appendUserJSON(b []byte, u *storage.User) []byte {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, u.ID)
	b = append(b, `,"name":`...)
	b = appendJSONString(b, u.Name)
	b = append(b, `,"email":`...)
	b = appendJSONString(b, u.Email)
	b = append(b, `,"role":`...)
	b = appendJSONString(b, u.Role.String())
	b = append(b, `,"version":`...)
	b = strconv.AppendUint(b, u.Version, 10)
	b = append(b, `,"created_at":"`...)
	b = appendTime(b, u.CreatedMs)
	b = append(b, `","updated_at":"`...)
	b = appendTime(b, u.UpdatedMs)
	return append(b, `"}`...)
}

// appendJSONString appends s as a JSON string. Strings that need no
// escaping (printable ASCII other than " \ < > &, and valid UTF-8 other
// than U+2028 and U+2029) are copied; any other goes through goccy, so
// that escapes are always exactly the codec's.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if !plainASCII[c] {
				return appendJSONStringSlow(b, s)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || r == '\u2028' || r == '\u2029' {
			return appendJSONStringSlow(b, s)
		}
		i += size
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// plainASCII marks the ASCII bytes a JSON string holds as they are.
var plainASCII = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = true
	}
	for _, c := range `"\<>&` {
		t[c] = false
	}
	return t
}()

func appendJSONStringSlow(b []byte, s string) []byte {
	q, err := json.Marshal(s)
	if err != nil { // a string always encodes
		return append(b, `""`...)
	}
	return append(b, q...)
}

func etag(version uint64) string { return `"` + strconv.FormatUint(version, 10) + `"` }
