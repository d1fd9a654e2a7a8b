package cluster

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	vm "github.com/VictoriaMetrics/metrics"
	gometrics "github.com/hashicorp/go-metrics"
)

// sinkSamples parses the Prometheus text output of set into a map from series
// (name plus labels) to value.
func sinkSamples(t *testing.T, set *vm.Set) map[string]string {
	t.Helper()
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	out := make(map[string]string)
	for _, line := range strings.Split(buf.String(), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("malformed line %q", line)
		}
		out[line[:i]] = line[i+1:]
	}
	return out
}

func expectSinkSamples(t *testing.T, set *vm.Set, want map[string]string) {
	t.Helper()
	got := sinkSamples(t, set)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if t.Failed() {
		t.Logf("exposition: %v", got)
	}
}

func TestMetricSinkNames(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		key    []string
		labels []gometrics.Label
		want   string
	}{
		{"troupe", []string{"raft", "commitTime"}, nil, "troupe_raft_commitTime"},
		{"", []string{"raft", "commitTime"}, nil, "raft_commitTime"},
		{"my-app.v2", []string{"raft", "net", "rpc.decode"}, nil, "my_app_v2_raft_net_rpc_decode"},
		{"", []string{"9lives", "héllo"}, nil, "_9lives_h_llo"},
		{"1st", []string{"x"}, nil, "_1st_x"},
		{"p", []string{"raft", "replication", "heartbeat", "10.0.0.1:8300"}, nil, "p_raft_replication_heartbeat_10_0_0_1_8300"},
		{"p", []string{"rpc"}, []gometrics.Label{{Name: "peer_id", Value: "n1"}}, `p_rpc{peer_id="n1"}`},
		{"p", []string{"rpc"}, []gometrics.Label{{Name: "z", Value: "1"}, {Name: "a-b", Value: "2"}}, `p_rpc{a_b="2",z="1"}`},
		{"p", []string{"rpc"}, []gometrics.Label{{Name: "k", Value: "old"}, {Name: "k", Value: "new"}}, `p_rpc{k="new"}`},
		{"p", []string{"rpc"}, []gometrics.Label{{Name: "v", Value: "a\"b\\c\nd{}=,"}}, `p_rpc{v="a\"b\\c\nd{}=,"}`},
		{"p", []string{"rpc"}, []gometrics.Label{{Name: "0x", Value: "bad\xffutf8"}}, `p_rpc{_0x="bad` + "\uFFFD" + `utf8"}`},
	} {
		s := NewMetricSink(vm.NewSet(), tc.prefix)
		got, ok := s.metricName(tc.key, tc.labels)
		if !ok || got != tc.want {
			t.Errorf("metricName(%q, %q, %v) = %q, %v; want %q", tc.prefix, tc.key, tc.labels, got, ok, tc.want)
			continue
		}
		if err := vm.ValidateMetric(got); err != nil {
			t.Errorf("%q is not a valid VictoriaMetrics name: %v", got, err)
		}
	}
	if _, ok := NewMetricSink(vm.NewSet(), "").metricName(nil, nil); ok {
		t.Errorf("empty name accepted")
	}
}

func TestMetricSinkDirect(t *testing.T) {
	set := vm.NewSet()
	s := NewMetricSink(set, "troupe")
	peer := []gometrics.Label{{Name: "peer_id", Value: "n2"}}

	s.SetGauge([]string{"raft", "peers"}, 1)
	s.SetGauge([]string{"raft", "peers"}, 3)
	s.SetGaugeWithLabels([]string{"raft", "lag"}, 2.5, peer)
	s.SetPrecisionGauge([]string{"raft", "precise"}, 0.1)
	s.EmitKey([]string{"raft", "key"}, 7)
	s.IncrCounter([]string{"raft", "apply"}, 1)
	s.IncrCounter([]string{"raft", "apply"}, 2)
	s.IncrCounterWithLabels([]string{"raft", "replication", "appendEntries", "logs"}, 1.5, peer)
	s.AddSample([]string{"raft", "commitTime"}, 2)
	s.AddSample([]string{"raft", "commitTime"}, 4)
	s.AddSampleWithLabels([]string{"raft", "replication", "heartbeat"}, 1, peer)

	expectSinkSamples(t, set, map[string]string{
		"troupe_raft_peers":             "3",
		`troupe_raft_lag{peer_id="n2"}`: "2.5",
		"troupe_raft_precise":           "0.1",
		"troupe_raft_key":               "7",
		"troupe_raft_apply":             "3",
		`troupe_raft_replication_appendEntries_logs{peer_id="n2"}`: "1.5",
		"troupe_raft_commitTime_sum":                               "6",
		"troupe_raft_commitTime_count":                             "2",
		`troupe_raft_replication_heartbeat_sum{peer_id="n2"}`:      "1",
		`troupe_raft_replication_heartbeat_count{peer_id="n2"}`:    "1",
	})
	got := sinkSamples(t, set)
	buckets := 0
	for k := range got {
		if strings.HasPrefix(k, `troupe_raft_commitTime_bucket{le="`) {
			buckets++
		}
	}
	if buckets == 0 {
		t.Errorf("no histogram buckets for commitTime: %v", got)
	}
	if s.Dropped() != 0 {
		t.Errorf("Dropped = %d, want 0", s.Dropped())
	}

	// A key already registered as another type is dropped, not a panic.
	s.IncrCounter([]string{"raft", "peers"}, 1)
	s.AddSample([]string{"raft", "apply"}, 1)
	if s.Dropped() != 2 {
		t.Errorf("Dropped = %d, want 2", s.Dropped())
	}
	// So is a gauge the application registered with a callback.
	set.NewGauge("troupe_cb", func() float64 { return 1 })
	s.SetGauge([]string{"cb"}, 5)
	if s.Dropped() != 3 {
		t.Errorf("Dropped = %d, want 3", s.Dropped())
	}
	expectSinkSamples(t, set, map[string]string{"troupe_raft_peers": "3", "troupe_raft_apply": "3", "troupe_cb": "1"})
}

func TestMetricSinkInstallRaftMetrics(t *testing.T) {
	if _, err := InstallRaftMetrics(nil, "x"); err == nil {
		t.Fatal("nil set accepted")
	}

	first := vm.NewSet()
	shutdown1, err := InstallRaftMetrics(first, "troupe")
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown1()

	// Keys as raft emits them, through the global go-metrics API.
	gometrics.IncrCounter([]string{"raft", "sinktest", "apply"}, 1)
	gometrics.IncrCounter([]string{"raft", "sinktest", "apply"}, 1)
	gometrics.SetGauge([]string{"raft", "sinktest", "peers"}, 3)
	gometrics.AddSample([]string{"raft", "sinktest", "lastContact"}, 12)
	gometrics.MeasureSinceWithLabels([]string{"raft", "sinktest", "heartbeat"}, time.Now().Add(-1500*time.Millisecond),
		[]gometrics.Label{{Name: "peer_id", Value: "n2"}})
	expectSinkSamples(t, first, map[string]string{
		"troupe_raft_sinktest_apply":                         "2",
		"troupe_raft_sinktest_peers":                         "3",
		"troupe_raft_sinktest_lastContact_sum":               "12",
		"troupe_raft_sinktest_lastContact_count":             "1",
		`troupe_raft_sinktest_heartbeat_count{peer_id="n2"}`: "1",
	})
	// MeasureSince reports milliseconds; no hostname or service prefix.
	got := sinkSamples(t, first)
	var ms float64
	if _, err := fmt.Sscan(got[`troupe_raft_sinktest_heartbeat_sum{peer_id="n2"}`], &ms); err != nil || ms < 1500 || ms > 60000 {
		t.Errorf("heartbeat sum = %q ms, want about 1500", got[`troupe_raft_sinktest_heartbeat_sum{peer_id="n2"}`])
	}
	for k := range got {
		if !strings.HasPrefix(k, "troupe_raft_") {
			t.Errorf("unexpected series %q", k)
		}
	}

	// A second installation replaces the first.
	second := vm.NewSet()
	shutdown2, err := InstallRaftMetrics(second, "other")
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown2()
	gometrics.IncrCounter([]string{"raft", "sinktest", "apply"}, 5)
	expectSinkSamples(t, first, map[string]string{"troupe_raft_sinktest_apply": "2"})
	expectSinkSamples(t, second, map[string]string{"other_raft_sinktest_apply": "5"})

	// A stale shutdown does not undo the later installation.
	shutdown1()
	shutdown1()
	gometrics.IncrCounter([]string{"raft", "sinktest", "apply"}, 1)
	expectSinkSamples(t, second, map[string]string{"other_raft_sinktest_apply": "6"})

	// The current installation's shutdown detaches it.
	shutdown2()
	gometrics.IncrCounter([]string{"raft", "sinktest", "apply"}, 1)
	expectSinkSamples(t, second, map[string]string{"other_raft_sinktest_apply": "6"})
	expectSinkSamples(t, first, map[string]string{"troupe_raft_sinktest_apply": "2"})
}

func TestMetricSinkConcurrent(t *testing.T) {
	set := vm.NewSet()
	shutdown, err := InstallRaftMetrics(set, "troupe")
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown()
	direct := NewMetricSink(set, "direct")

	const goroutines, iterations = 8, 200
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			labels := []gometrics.Label{{Name: "peer_id", Value: fmt.Sprint("n", g%2)}}
			for i := range iterations {
				gometrics.IncrCounter([]string{"raft", "conc", "apply"}, 1)
				gometrics.IncrCounterWithLabels([]string{"raft", "conc", "logs"}, 1, labels)
				gometrics.SetGauge([]string{"raft", "conc", "gauge"}, float32(i))
				gometrics.MeasureSince([]string{"raft", "conc", "time"}, time.Now())
				direct.AddSampleWithLabels([]string{"conc", "sample"}, float32(i), labels)
				if i%50 == 0 {
					var buf bytes.Buffer
					set.WritePrometheus(&buf)
				}
			}
		})
	}
	wg.Wait()
	total := fmt.Sprint(goroutines * iterations)
	half := fmt.Sprint(goroutines * iterations / 2)
	expectSinkSamples(t, set, map[string]string{
		"troupe_raft_conc_apply":                 total,
		`troupe_raft_conc_logs{peer_id="n0"}`:    half,
		`troupe_raft_conc_logs{peer_id="n1"}`:    half,
		`direct_conc_sample_count{peer_id="n0"}`: half,
		`direct_conc_sample_count{peer_id="n1"}`: half,
		"troupe_raft_conc_gauge":                 fmt.Sprint(iterations - 1),
	})
	if got := sinkSamples(t, set)["troupe_raft_conc_time_count"]; got == "" {
		// Sub-microsecond durations may round to 0 ms, which still counts.
		t.Errorf("no timer samples recorded")
	}
}
