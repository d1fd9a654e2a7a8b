package api

import (
	"bytes"
	"math"
	"testing"
	"time"

	json "github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	"github.com/troupe-db/troupe/storage"
)

// The hand-written user encoder must write exactly what goccy writes for
// toUserJSON: same bytes, same escapes.

func goccyUser(t testing.TB, u *storage.User) []byte {
	t.Helper()
	b, err := json.Marshal(toUserJSON(u))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func checkUserJSON(t testing.TB, u *storage.User) {
	t.Helper()
	want := goccyUser(t, u)
	if got := appendUserJSON(nil, u); !bytes.Equal(got, want) {
		t.Fatalf("appendUserJSON(%+v)\n got %s\nwant %s", u, got, want)
	}
}

func TestAppendUserJSONMatchesGoccy(t *testing.T) {
	strs := []string{
		"", "Ada Lovelace", "ada.lovelace@example.com", "Zoë Ñúñez", "名前", "emoji 🎉",
		`quote " and \ backslash`, "<script>&amp;</script>", "tab\tnew\nline\rcr",
		"\x00\x01\x08\x0c\x1f\x7f", "line\u2028sep\u2029para", "bad \xff utf8", "\xc3", "\xed\xa0\x80",
		"a/b", "'single'",
	}
	times := []int64{0, 1, -1, 999, -999, 1_700_000_123_456, 253402300799999, 253402300800000, -62135596800000, -62135596800001, math.MaxInt64 / 1_000_000}
	for _, s := range strs {
		for _, ms := range times {
			for _, role := range []storage.Role{storage.RoleUser, storage.RoleAdmin, storage.Role(9)} {
				checkUserJSON(t, &storage.User{ID: s, Name: s, Email: "x" + s, Role: role,
					Version: uint64(ms) * 7, CreatedMs: ms, UpdatedMs: -ms})
			}
		}
	}
	checkUserJSON(t, benchUser)
	checkUserJSON(t, &storage.User{Version: math.MaxUint64, CreatedMs: math.MinInt64 / 1_000_000})
}

// appendTime computes dates by hand; the time package is the reference.
func checkTime(t testing.TB, ms int64) {
	t.Helper()
	want := time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z07:00")
	if got := formatTime(ms); got != want {
		t.Fatalf("formatTime(%d) = %s, want %s", ms, got, want)
	}
}

func TestFormatTimeMatchesTimePackage(t *testing.T) {
	const day = 86_400_000
	year0 := time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	year10000 := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	for _, edge := range []int64{0, year0, year10000, time.Date(2000, 2, 29, 0, 0, 0, 0, time.UTC).UnixMilli(),
		time.Date(1900, 3, 1, 0, 0, 0, 0, time.UTC).UnixMilli(), time.Date(2100, 12, 31, 23, 59, 59, 999e6, time.UTC).UnixMilli()} {
		for d := int64(-3); d <= 3; d++ {
			for _, off := range []int64{-1, 0, 1, 999, 1000, day - 1} {
				checkTime(t, edge+d*day+off)
			}
		}
	}
	// Every day of years 0–9999 at a varying time of day, and beyond.
	for ms := year0 - 400*day; ms < year10000+400*day; ms += day + 3_601_001 {
		checkTime(t, ms)
	}
	for _, ms := range []int64{math.MaxInt64 / 1_000_000, math.MinInt64 / 1_000_000, -1, -999, -1000, -1001} {
		checkTime(t, ms)
	}
}

func TestWriteUserMatchesWriteJSON(t *testing.T) {
	u := &storage.User{ID: "u1", Name: "Ada <Lovelace>", Email: "ada@example.com", Role: storage.RoleAdmin,
		Version: 42, CreatedMs: 1_700_000_000_000, UpdatedMs: 1_700_000_123_456}
	var a, b fasthttp.RequestCtx
	a.Response.Header.Set("ETag", etag(u.Version))
	writeJSON(&a, 201, toUserJSON(u))
	writeUser(&b, 201, u)
	if a.Response.StatusCode() != b.Response.StatusCode() ||
		!bytes.Equal(a.Response.Header.ContentType(), b.Response.Header.ContentType()) ||
		!bytes.Equal(a.Response.Header.Peek("ETag"), b.Response.Header.Peek("ETag")) ||
		!bytes.Equal(a.Response.Body(), b.Response.Body()) {
		t.Fatalf("writeUser differs from writeJSON:\n%s\n%s", a.Response.String(), b.Response.String())
	}
	if got := string(b.Response.Header.Peek("ETag")); got != `"42"` {
		t.Fatalf("ETag %s", got)
	}
}

func FuzzUserJSON(f *testing.F) {
	f.Add("Ada Lovelace", "ada@example.com", uint64(3), int64(1_700_000_000_000), int64(1_700_000_123_456))
	f.Add("Zoë <&>", "\u2028\xff", uint64(math.MaxUint64), int64(-1), int64(253402300800000))
	f.Fuzz(func(t *testing.T, name, email string, version uint64, created, updated int64) {
		// Times beyond what time.UnixMilli represents exactly are not
		// users' times; keep to the range it does.
		created %= 1 << 52
		updated %= 1 << 52
		checkTime(t, created)
		checkUserJSON(t, &storage.User{ID: email + name, Name: name, Email: email, Role: storage.Role(version % 3),
			Version: version, CreatedMs: created, UpdatedMs: updated})
	})
}

func BenchmarkWriteUser(b *testing.B) {
	var ctx fasthttp.RequestCtx
	b.Run("writeJSON", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ctx.Response.Reset()
			ctx.Response.Header.Set("ETag", etag(benchUser.Version))
			writeJSON(&ctx, 200, toUserJSON(benchUser))
		}
	})
	b.Run("writeUser", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ctx.Response.Reset()
			writeUser(&ctx, 200, benchUser)
		}
	})
}

// The one-call path of decodeJSON must refuse what the stream decoder
// refuses: an unknown field, data after the object.
func TestDecodeJSONUnknownField(t *testing.T) {
	var r createUserRequest
	if err := json.UnmarshalWithOption([]byte(`{"name":"a","nope":1}`), &r, disallowUnknownFields); err == nil {
		t.Fatal("UnmarshalWithOption(disallowUnknownFields) accepted an unknown field")
	}
	for _, body := range []string{`{"name":"a","nope":1}`, `{"name":"a"} {}`, `{"name":1}`} {
		r = createUserRequest{}
		if err := decodeJSON([]byte(body), &r); err == nil {
			t.Errorf("decodeJSON(%s) accepted it", body)
		}
	}
	r = createUserRequest{}
	if err := decodeJSON([]byte(" {\"name\":\"Ada\",\"email\":\"a@b.c\"}\n"), &r); err != nil || r.Name == nil || *r.Name != "Ada" {
		t.Errorf("decodeJSON of a valid body: %v %+v", err, r)
	}
}
