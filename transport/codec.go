package transport

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

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
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("invalid JSON body: "+jsonErrorText(err), "")
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return badRequest("invalid JSON body: unexpected data after the JSON object", "")
	}
	return nil
}

// jsonErrorText words a decoding error without echoing large inputs.
func jsonErrorText(err error) string {
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) {
		if ute.Field != "" {
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
	t := time.UnixMilli(ms).UTC()
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	if year < 0 || year > 9999 {
		return t.Format("2006-01-02T15:04:05.000Z07:00")
	}
	var b [24]byte
	put := func(i, v, width int) {
		for j := i + width - 1; j >= i; j-- {
			b[j] = byte('0' + v%10)
			v /= 10
		}
	}
	put(0, year, 4)
	b[4] = '-'
	put(5, int(month), 2)
	b[7] = '-'
	put(8, day, 2)
	b[10] = 'T'
	put(11, hour, 2)
	b[13] = ':'
	put(14, minute, 2)
	b[16] = ':'
	put(17, sec, 2)
	b[19] = '.'
	put(20, int(ms%1000+1000)%1000, 3)
	b[23] = 'Z'
	return string(b[:])
}

func etag(version uint64) string { return `"` + strconv.FormatUint(version, 10) + `"` }
