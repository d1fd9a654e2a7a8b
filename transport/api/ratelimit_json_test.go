package api

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"

	json "github.com/goccy/go-json"

	"github.com/troupe-db/troupe/storage"
)

// randomDecision draws a decision with edge values often.
func randomDecision(r *rand.Rand) storage.Decision {
	pick64 := func() int64 {
		switch r.IntN(5) {
		case 0:
			return 0
		case 1:
			return -r.Int64N(1 << 40)
		case 2:
			return math.MaxInt64 - r.Int64N(3)
		}
		return r.Int64N(1 << 42)
	}
	pick32 := func() uint32 {
		if r.IntN(4) == 0 {
			return math.MaxUint32
		}
		return r.Uint32N(1_000_000_001)
	}
	d := storage.Decision{Allowed: r.IntN(2) == 0, Limit: pick32(), Remaining: pick32(), ResetNs: pick64(), RetryAfterNs: pick64()}
	if r.IntN(3) == 0 {
		d.LeaseID = r.Uint64()
		if r.IntN(4) == 0 {
			d.LeaseID = uint64(r.IntN(16)) // leading zeros
		}
	}
	return d
}

// The hand-written answers are what the encoder writes, byte for byte.
func TestCheckJSONAsEncoder(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	for range 5000 {
		d := randomDecision(r)
		want, err := json.Marshal(toCheckResponse(&d))
		if err != nil {
			t.Fatal(err)
		}
		if got := appendCheckJSON(nil, &d); !bytes.Equal(got, want) {
			t.Fatalf("%+v:\n got %s\nwant %s", d, got, want)
		}
		if d.LeaseID != 0 && formatLeaseID(d.LeaseID) != string(appendLeaseID(nil, d.LeaseID)) {
			t.Fatalf("lease %x", d.LeaseID)
		}
	}
	for range 500 {
		out := make([]storage.Decision, 1+r.IntN(maxMultiCheck))
		for i := range out {
			out[i] = randomDecision(r)
			// Results under one policy share its limit (the answer
			// writes a repeated limit from its digits kept).
			if i > 0 && r.IntN(3) > 0 {
				out[i].Limit = out[i-1].Limit
			}
		}
		allowed := r.IntN(2) == 0
		resp := multiCheckResponse{Allowed: allowed, Results: make([]checkResponse, len(out))}
		for i := range out {
			resp.Results[i] = toCheckResponse(&out[i])
		}
		want, err := json.Marshal(resp)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendMultiCheckJSON(nil, allowed, out, nil); !bytes.Equal(got, want) {
			t.Fatalf("\n got %s\nwant %s", got, want)
		}
		// Flushed result by result, the same bytes.
		var flushed []byte
		rest := appendMultiCheckJSON(make([]byte, 0, 8), allowed, out, func(b []byte) { flushed = append(flushed, b...) })
		if got := append(flushed, rest...); !bytes.Equal(got, want) {
			t.Fatalf("flushed:\n got %s\nwant %s", got, want)
		}
	}
}
