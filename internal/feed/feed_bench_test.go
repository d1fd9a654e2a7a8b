//go:build unix

package feed

import (
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/troupe-db/troupe/actors"
	"github.com/troupe-db/troupe/storage"
)

// BenchmarkFeed records user creates, in batches of 64 as the FSM hands
// them over, into a feed with the default history (100 000 changes) and
// no subscriber, or 64 subscribers that read every change and render it
// (once per change, shared, as the watch streams do). One op is one
// command, from its Record to every subscriber having read it;
// cpu-ns/op is the process's CPU per command (the feed's goroutine, the
// subscribers' and the collector's included), the figure to read on a
// shared machine.
func BenchmarkFeed(b *testing.B) {
	for _, watchers := range []int{0, 64} {
		b.Run("watchers="+strconv.Itoa(watchers), func(b *testing.B) { benchFeed(b, watchers) })
	}
}

func benchFeed(b *testing.B, watchers int) {
	const batch, chunk = 64, 64 * 64
	f := New(Config{}, nil)
	defer f.Close()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	defer func() { close(stop); wg.Wait() }()
	var mu sync.Mutex
	read := make([]Position, watchers) // where each subscriber has read to
	for w := range watchers {
		s, err := f.Subscribe(After(0))
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.Close()
			var buf []*Change
			var out []byte
			for {
				select {
				case <-stop:
					return
				case <-s.Wake():
				}
				buf, err = s.Next(buf[:0], 256)
				if err != nil {
					b.Error(err)
					return
				}
				out = out[:0]
				for _, c := range buf {
					out = append(out, c.Rendered(benchRender)...)
				}
				if len(buf) > 0 {
					mu.Lock()
					read[w] = buf[len(buf)-1].Position
					mu.Unlock()
				}
			}
		}()
	}
	index := uint64(0)
	type rec struct {
		cmd *storage.Command
		p   *actors.Pending
	}
	gen := func(n int) []rec {
		out := make([]rec, n)
		for i := range out {
			k := strconv.FormatUint(index+uint64(i)+1, 10)
			out[i] = rec{cmd: &storage.Command{Kind: storage.CmdUserCreate}, p: actors.Resolved(storage.Result{User: &storage.User{
				ID: "01HZX" + k, Name: "User " + k, Email: "user" + k + "@example.com", PasswordHash: "$argon2id$v=19$m=65536,t=1,p=2$c2FsdA$aGFzaA",
				Role: storage.RoleUser, Version: 1, CreatedMs: 1_750_000_000_000, UpdatedMs: 1_750_000_000_000}})}
		}
		return out
	}
	b.ReportAllocs()
	b.ResetTimer()
	var cpu time.Duration
	for done := 0; done < b.N; {
		b.StopTimer()
		n := min(chunk, b.N-done)
		recs := gen(n)
		c0 := benchCPU()
		b.StartTimer()
		for i := 0; i < n; i += batch {
			for _, r := range recs[i:min(i+batch, n)] {
				index++
				f.Record(index, r.cmd, r.p, 1_750_000_000_000+int64(index), nil)
			}
			f.Applied(index)
		}
		if err := f.WaitProcessed(index, time.Now().Add(time.Minute)); err != nil {
			b.Fatal(err)
		}
		for deadline := time.Now().Add(time.Minute); ; {
			mu.Lock()
			behind := 0
			for _, p := range read {
				if p.Index < index {
					behind++
				}
			}
			mu.Unlock()
			if behind == 0 {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("%d subscribers did not read up to %d within a minute", behind, index)
			}
			time.Sleep(200 * time.Microsecond) // polled: the subscribers run meanwhile
		}
		b.StopTimer()
		cpu += benchCPU() - c0
		b.StartTimer()
		done += n
	}
	b.StopTimer()
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// benchRender stands for the watch streams' JSON rendering.
func benchRender(c *Change) []byte {
	b := []byte(`{"index":`)
	b = strconv.AppendUint(b, c.Index, 10)
	b = append(b, `,"id":`...)
	b = strconv.AppendQuote(b, c.ID)
	if u := c.User; u != nil {
		b = append(b, `,"data":{"name":`...)
		b = strconv.AppendQuote(b, u.Name)
		b = append(b, `,"email":`...)
		b = strconv.AppendQuote(b, u.Email)
		b = append(b, '}')
	}
	return append(b, '}')
}

func benchCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
