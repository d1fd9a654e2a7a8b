package storage

import (
	"encoding/binary"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestStamp(t *testing.T) {
	for _, ms := range []int64{0, 1, 1_700_000_000_000, 1<<47 - 1} {
		s := StampAt(ms)
		if StampMillis(s) != ms || StampMillis(s+0xffff) != ms || StampMillis(s+0x10000) != ms+1 {
			t.Errorf("stamp of %d", ms)
		}
	}
}

func TestUserIDRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	cases := []struct {
		stamp uint64
		shard uint16
	}{{0, 0}, {1, 1}, {^uint64(0), ^uint16(0)}, {StampAt(1_700_000_000_000), 7}}
	for range 1000 {
		cases = append(cases, struct {
			stamp uint64
			shard uint16
		}{r.Uint64(), uint16(r.Uint32())})
	}
	for _, c := range cases {
		id := MakeUserID(c.stamp, c.shard)
		if len(id) != UserIDLen {
			t.Fatalf("id %q has length %d", id, len(id))
		}
		if strings.Trim(id, "0123456789abcdefghijklmnopqrstuv") != "" {
			t.Fatalf("id %q uses characters outside base32hex lower case", id)
		}
		stamp, shard, ok := ParseUserID(id)
		if !ok || stamp != c.stamp || shard != c.shard {
			t.Fatalf("ParseUserID(%q) = %d, %d, %v; want %d, %d", id, stamp, shard, ok, c.stamp, c.shard)
		}
	}
}

func TestParseUserIDRejects(t *testing.T) {
	id := MakeUserID(StampAt(1_700_000_000_000)+5, 3)
	bad := []string{
		"",
		id[:15],
		id + "0",
		strings.ToUpper(id),
		id[:5] + strings.ToUpper(id[5:6]) + id[6:], // one upper-case letter
		id[:15] + "w",          // outside the alphabet
		id[:15] + "=",          // padding
		id[:8] + "\n" + id[9:], // the decoder skips newlines
		id[:8] + "\r" + id[9:],
		id[:8] + " " + id[9:],
		"0000000000000000\x00",
		"ÿÿÿÿÿÿÿÿ", // 16 bytes, 8 runes
		"--------------------"[:16],
	}
	if strings.ToUpper(id) == id {
		t.Fatalf("id %q has no letters; pick another stamp", id)
	}
	for _, s := range bad {
		if stamp, shard, ok := ParseUserID(s); ok {
			t.Errorf("ParseUserID(%q) accepted: %d %d", s, stamp, shard)
		}
	}
}

func TestUserIDOrderFollowsStamp(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	type rec struct {
		stamp uint64
		shard uint16
		id    string
	}
	recs := make([]rec, 5000)
	for i := range recs {
		var stamp uint64
		switch i % 3 {
		case 0:
			stamp = r.Uint64()
		case 1:
			stamp = StampAt(1_700_000_000_000+r.Int64N(1000)) + r.Uint64N(4) // many ties in ms
		default:
			stamp = r.Uint64N(1 << 20)
		}
		shard := uint16(r.Uint32())
		recs[i] = rec{stamp, shard, MakeUserID(stamp, shard)}
	}
	slices.SortFunc(recs, func(a, b rec) int { return strings.Compare(a.id, b.id) })
	for i := 1; i < len(recs); i++ {
		a, b := recs[i-1], recs[i]
		if a.stamp > b.stamp || a.stamp == b.stamp && a.shard > b.shard {
			t.Fatalf("id order disagrees with (stamp, shard) order: %s (%d,%d) before %s (%d,%d)", a.id, a.stamp, a.shard, b.id, b.stamp, b.shard)
		}
	}
}

func TestShardOf(t *testing.T) {
	// ShardOf is FNV-1a, masked: check against the standard library.
	for _, key := range []string{"", "a", "ada@example.com", "josé@exämple.com"} {
		h := fnv.New64a()
		h.Write([]byte(key))
		for _, n := range []int{1, 2, 16, 4096} {
			if got, want := ShardOf(key, n), uint16(h.Sum64()&uint64(n-1)); got != want {
				t.Errorf("ShardOf(%q, %d) = %d, want %d", key, n, got, want)
			}
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = ShardOf("ada@example.com", 16) }); n != 0 {
		t.Errorf("ShardOf allocates %v", n)
	}
	// Distribution: realistic keys spread evenly.
	for _, n := range []int{2, 8, 64} {
		counts := make([]int, n)
		const keys = 20000
		for i := range keys {
			s := ShardOf(EmailKey("User"+strings.Repeat("x", i%3)+strconv.Itoa(i)+"@example.com"), n)
			if int(s) >= n {
				t.Fatalf("shard %d of %d", s, n)
			}
			counts[s]++
		}
		mean := keys / n
		for s, c := range counts {
			if c < mean*8/10 || c > mean*12/10 {
				t.Errorf("n=%d: shard %d has %d keys, mean %d", n, s, c, mean)
			}
		}
	}
}

// FuzzParseUserID checks the table decoder against the definition: the
// base32hex decoding of exactly 16 characters, canonical spelling only.
func FuzzParseUserID(f *testing.F) {
	for _, s := range []string{"", MakeUserID(0, 0), MakeUserID(^uint64(0), ^uint16(0)), MakeUserID(StampAt(1_700_000_000_000), 7),
		"vvvvvvvvvvvvvvvv", "vvvvvvvvvvvvvvvw", "0000000000000000\n", "000000000000000=", "ÿÿÿÿÿÿÿÿ"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		stamp, shard, ok := ParseUserID(s)
		b := make([]byte, idEncoding.DecodedLen(len(s))+10)
		n, err := idEncoding.Decode(b, []byte(s))
		want := len(s) == UserIDLen && err == nil && n == 10 && idEncoding.EncodeToString(b[:10]) == s
		if ok != want {
			t.Fatalf("ParseUserID(%q) ok = %v, want %v", s, ok, want)
		}
		if ok && (stamp != binary.BigEndian.Uint64(b[:8]) || shard != binary.BigEndian.Uint16(b[8:])) {
			t.Fatalf("ParseUserID(%q) = %d, %d", s, stamp, shard)
		}
		if ok && MakeUserID(stamp, shard) != s {
			t.Fatalf("%q does not round-trip", s)
		}
	})
}
