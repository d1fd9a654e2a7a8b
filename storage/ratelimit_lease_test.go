package storage

import (
	"math/rand/v2"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// leaseModel: the live leases by id, nothing else.
type leaseModel map[uint64][2]int64 // id → expires, cost

func (m leaseModel) held(now int64) int64 {
	var n int64
	for _, l := range m {
		if l[0] > now {
			n += l[1]
		}
	}
	return n
}

// TestConcurrencyAgainstModel: random acquisitions, releases (live,
// expired, twice, unknown, exactly at expiry) and clock steps: the
// semaphore decides as the model does and never holds more than the
// limit.
func TestConcurrencyAgainstModel(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for round := range 100 {
		p := mustPolicy(t, Policy{Name: "p", Algorithm: Concurrency, Limit: 1 + uint32(r.IntN(12))})
		m := leaseModel{}
		var s Semaphore
		var ids []uint64
		now := r.Int64N(1 << 40)
		next := uint64(0)
		for range 2000 {
			switch r.IntN(5) {
			case 0:
				now += r.Int64N(int64(50 * time.Millisecond))
			case 1:
				if len(ids) > 0 { // to an instant a lease expires at, exactly
					if l, ok := m[ids[r.IntN(len(ids))]]; ok && l[0] >= now {
						now = l[0]
					}
				}
			}
			if r.IntN(2) == 0 || len(ids) == 0 {
				next++
				cost := 1 + uint32(r.IntN(3))
				lease := 1 + r.Int64N(int64(100*time.Millisecond))
				d := p.Acquire(&s, cost, lease, next, now)
				ok := m.held(now)+int64(cost) <= int64(p.Limit)
				if d.Allowed != ok || (ok && d.LeaseID != next) || (!ok && d.LeaseID != 0) {
					t.Fatalf("round %d: acquire %d at %d: %+v, model %v (held %d)", round, cost, now, d, ok, m.held(now))
				}
				if ok {
					m[next] = [2]int64{now + lease, int64(cost)}
					ids = append(ids, next)
				} else if cost <= p.Limit {
					// The retry time is when enough leases will have expired.
					if d.RetryAfterNs <= 0 || m.held(now+d.RetryAfterNs)+int64(cost) > int64(p.Limit) || m.held(now+d.RetryAfterNs-1)+int64(cost) <= int64(p.Limit) {
						t.Fatalf("retry after %d is not when room frees", d.RetryAfterNs)
					}
				}
			} else {
				var id uint64
				switch r.IntN(4) {
				case 0:
					id = next + 1 + uint64(r.IntN(5)) // unknown
				default:
					id = ids[r.IntN(len(ids))] // live, expired or released already
				}
				l, known := m[id]
				live := known && l[0] > now
				d := p.ReleaseLease(&s, id, now)
				if d.Released != live {
					t.Fatalf("release of %d (known %v live %v) at %d: %+v", id, known, live, now, d)
				}
				delete(m, id)
			}
			held := s.Held(now)
			if int64(held) != m.held(now) || held > p.Limit {
				t.Fatalf("holds %d, model %d, limit %d", held, m.held(now), p.Limit)
			}
			if len(s.Leases) > int(p.Limit) {
				t.Fatalf("%d lease records for a limit of %d", len(s.Leases), p.Limit)
			}
		}
	}
}

func TestConcurrencyDecisionFields(t *testing.T) {
	p := mustPolicy(t, Policy{Name: "p", Algorithm: Concurrency, Limit: 3})
	ms := int64(time.Millisecond)
	var s Semaphore
	d := p.Acquire(&s, 2, 100*ms, 7, 0)
	if !d.Allowed || d.LeaseID != 7 || d.Remaining != 1 || d.ResetNs != 100*ms {
		t.Fatalf("first: %+v", d)
	}
	if d = p.Acquire(&s, 1, 300*ms, 8, 10*ms); !d.Allowed || d.Remaining != 0 || d.ResetNs != 300*ms {
		t.Fatalf("second: %+v", d)
	}
	if d = p.Acquire(&s, 2, 100*ms, 9, 20*ms); d.Allowed || d.LeaseID != 0 || d.RetryAfterNs != 80*ms {
		t.Fatalf("over: %+v", d)
	}
	if d = p.Acquire(&s, 4, 100*ms, 9, 20*ms); d.Allowed || d.RetryAfterNs != -1 {
		t.Fatalf("cost above the limit: %+v", d)
	}
	if d = p.ReleaseLease(&s, 7, 30*ms); !d.Released || d.Remaining != 2 {
		t.Fatalf("release: %+v", d)
	}
	if d = p.ReleaseLease(&s, 7, 30*ms); d.Released || d.Remaining != 2 {
		t.Fatalf("double release: %+v", d)
	}
	// Lease 8 expires at 310 ms: released then, it is gone already.
	if d = p.ReleaseLease(&s, 8, 310*ms); d.Released || d.Remaining != 3 || d.ResetNs != 0 || len(s.Leases) != 0 {
		t.Fatalf("release after expiry: %+v %+v", d, s)
	}
	shadow := p
	shadow.Shadow = true
	var ss Semaphore
	shadow.Acquire(&ss, 3, ms, 1, 0)
	if d = shadow.Acquire(&ss, 1, ms, 2, 0); !d.Allowed || !d.Denied || d.LeaseID != 0 {
		t.Fatalf("shadow: %+v", d)
	}
}

func BenchmarkConcurrencyAcquireRelease(b *testing.B) {
	p := Policy{Name: "p", Algorithm: Concurrency, Limit: 16}
	if e := p.Validate(); e != nil {
		b.Fatal(e)
	}
	states := make([]Semaphore, 1024)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		s := &states[i&1023]
		now := int64(i) * 1000
		if d := p.Acquire(s, 1, int64(time.Second), uint64(i)+1, now); d.Allowed && i&1 == 0 {
			p.ReleaseLease(s, d.LeaseID, now)
		}
	}
}

// BenchmarkXTimeRateAllow is the floor the decisions above are held
// against: golang.org/x/time/rate's Allow on as many limiters.
func BenchmarkXTimeRateAllow(b *testing.B) {
	ls := make([]*rate.Limiter, 1024)
	for i := range ls {
		ls[i] = rate.NewLimiter(rate.Limit(1000), 1000)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ls[i&1023].Allow()
	}
}
