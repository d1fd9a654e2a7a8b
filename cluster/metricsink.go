package cluster

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	vm "github.com/VictoriaMetrics/metrics"
	gometrics "github.com/hashicorp/go-metrics"
)

// MetricSink is a github.com/hashicorp/go-metrics sink (the metrics package
// hashicorp/raft v1.8 emits to) that records into a VictoriaMetrics
// *metrics.Set, so raft's metrics can be served in Prometheus text format
// alongside troupe's own.
//
// A key such as ["raft", "commitTime"] becomes the metric name
// "<prefix>_raft_commitTime", with every character outside [a-zA-Z0-9_]
// replaced by '_'. go-metrics labels become Prometheus labels, sorted by name,
// with label names sanitized the same way and label values escaped; if two
// labels end up with the same name the later one wins.
//
// Gauges (SetGauge, SetPrecisionGauge and EmitKey) become VictoriaMetrics
// gauges holding the last value, counters (IncrCounter) become float
// counters, and samples (AddSample, and therefore go-metrics' MeasureSince,
// which reports milliseconds when installed by InstallRaftMetrics) become
// VictoriaMetrics histograms exposed as <name>_bucket{vmrange="..."},
// <name>_sum and <name>_count.
//
// A go-metrics key that maps to a name the Set already holds as a different
// metric type (or to an invalid name) is dropped rather than allowed to panic
// inside raft; Dropped counts such emissions.
//
// A MetricSink is safe for concurrent use.
type MetricSink struct {
	set     *vm.Set
	prefix  string
	dropped atomic.Uint64
	// cache finds the metric of a key and labels seen before without
	// building its name again: raft emits several metrics per entry.
	cache sync.Map // uint64 (hash of key and labels) → *sinkEntry
}

// sinkEntry is a cached emission target: the key and labels it was made
// for (to tell hash collisions apart) and the metric.
type sinkEntry struct {
	key    []string
	labels []gometrics.Label
	metric any // *vm.Gauge, *vm.FloatCounter or *vm.Histogram
}

var (
	_ gometrics.MetricSink               = (*MetricSink)(nil)
	_ gometrics.PrecisionGaugeMetricSink = (*MetricSink)(nil)
)

// NewMetricSink returns a sink that records into set, prefixing every metric
// name with prefix (sanitized; an empty prefix adds nothing). set must not be
// nil.
func NewMetricSink(set *vm.Set, prefix string) *MetricSink {
	return &MetricSink{set: set, prefix: sanitizeName(prefix)}
}

// SetGauge sets the gauge for key to val.
func (s *MetricSink) SetGauge(key []string, val float32) {
	s.SetPrecisionGaugeWithLabels(key, float64(val), nil)
}

// SetGaugeWithLabels sets the gauge for key and labels to val.
func (s *MetricSink) SetGaugeWithLabels(key []string, val float32, labels []gometrics.Label) {
	s.SetPrecisionGaugeWithLabels(key, float64(val), labels)
}

// SetPrecisionGauge sets the gauge for key to val.
func (s *MetricSink) SetPrecisionGauge(key []string, val float64) {
	s.SetPrecisionGaugeWithLabels(key, val, nil)
}

// SetPrecisionGaugeWithLabels sets the gauge for key and labels to val.
func (s *MetricSink) SetPrecisionGaugeWithLabels(key []string, val float64, labels []gometrics.Label) {
	if g, ok := s.cached(key, labels).(*vm.Gauge); ok {
		g.Set(val)
		return
	}
	s.record(key, labels, func(name string) {
		g := s.set.GetOrCreateGauge(name, nil)
		g.Set(val)
		s.remember(key, labels, g)
	})
}

// EmitKey records val as the current value of the gauge for key; a Prometheus
// scrape cannot observe individual key/value events.
func (s *MetricSink) EmitKey(key []string, val float32) {
	s.SetPrecisionGaugeWithLabels(key, float64(val), nil)
}

// IncrCounter adds val to the counter for key.
func (s *MetricSink) IncrCounter(key []string, val float32) {
	s.IncrCounterWithLabels(key, val, nil)
}

// IncrCounterWithLabels adds val to the counter for key and labels.
func (s *MetricSink) IncrCounterWithLabels(key []string, val float32, labels []gometrics.Label) {
	if c, ok := s.cached(key, labels).(*vm.FloatCounter); ok {
		c.Add(float64(val))
		return
	}
	s.record(key, labels, func(name string) {
		c := s.set.GetOrCreateFloatCounter(name)
		c.Add(float64(val))
		s.remember(key, labels, c)
	})
}

// AddSample adds val to the histogram for key. Negative and NaN samples are
// ignored by the histogram.
func (s *MetricSink) AddSample(key []string, val float32) {
	s.AddSampleWithLabels(key, val, nil)
}

// AddSampleWithLabels adds val to the histogram for key and labels. Negative
// and NaN samples are ignored by the histogram.
func (s *MetricSink) AddSampleWithLabels(key []string, val float32, labels []gometrics.Label) {
	if h, ok := s.cached(key, labels).(*vm.PrometheusHistogram); ok {
		h.Update(float64(val))
		return
	}
	s.record(key, labels, func(name string) {
		h := s.set.GetOrCreatePrometheusHistogramExt(name, sampleBuckets)
		h.Update(float64(val))
		s.remember(key, labels, h)
	})
}

// Dropped returns how many emissions were discarded because their name was
// invalid or was already registered in the Set as a different metric type.
func (s *MetricSink) Dropped() uint64 { return s.dropped.Load() }

func sinkHash(key []string, labels []gometrics.Label) uint64 {
	h := uint64(14695981039346656037)
	add := func(s string) {
		for i := 0; i < len(s); i++ {
			h ^= uint64(s[i])
			h *= 1099511628211
		}
		h ^= 0xff // separator
		h *= 1099511628211
	}
	for _, k := range key {
		add(k)
	}
	for _, l := range labels {
		add(l.Name)
		add(l.Value)
	}
	return h
}

// cached returns the metric recorded for exactly key and labels, or nil.
func (s *MetricSink) cached(key []string, labels []gometrics.Label) any {
	v, ok := s.cache.Load(sinkHash(key, labels))
	if !ok {
		return nil
	}
	e := v.(*sinkEntry)
	if !slices.Equal(e.key, key) || !slices.Equal(e.labels, labels) {
		return nil
	}
	return e.metric
}

// remember caches metric for key and labels (copied: callers may reuse
// their slices). On a hash collision the first entry stays.
func (s *MetricSink) remember(key []string, labels []gometrics.Label, metric any) {
	s.cache.LoadOrStore(sinkHash(key, labels), &sinkEntry{key: slices.Clone(key), labels: slices.Clone(labels), metric: metric})
}

// record builds the metric name for key and labels and calls update with it,
// turning the panics VictoriaMetrics raises for invalid or conflicting names
// into a dropped emission.
func (s *MetricSink) record(key []string, labels []gometrics.Label, update func(name string)) {
	name, ok := s.metricName(key, labels)
	if !ok {
		s.dropped.Add(1)
		return
	}
	defer func() {
		if recover() != nil {
			s.dropped.Add(1)
		}
	}()
	update(name)
}

// metricName renders key and labels in VictoriaMetrics syntax, for example
// `troupe_raft_replication_heartbeat{peer_id="n2"}`.
func (s *MetricSink) metricName(key []string, labels []gometrics.Label) (string, bool) {
	var b strings.Builder
	b.WriteString(s.prefix)
	for _, k := range key {
		if b.Len() > 0 {
			b.WriteByte('_')
		}
		writeSanitized(&b, k)
	}
	if b.Len() == 0 {
		return "", false
	}
	name := b.String()
	if name[0] >= '0' && name[0] <= '9' {
		name = "_" + name
	}
	if len(labels) == 0 {
		return name, true
	}

	type label struct{ name, value string }
	ls := make([]label, 0, len(labels))
	for _, l := range labels {
		ls = append(ls, label{sanitizeName(l.Name), l.Value})
	}
	slices.SortStableFunc(ls, func(a, b label) int { return strings.Compare(a.name, b.name) })

	b.Reset()
	b.WriteString(name)
	b.WriteByte('{')
	first := true
	for i, l := range ls {
		if i+1 < len(ls) && ls[i+1].name == l.name {
			continue // a later label with the same name wins
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		b.WriteString(l.name)
		b.WriteString(`="`)
		writeLabelValue(&b, l.value)
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String(), true
}

// sanitizeName returns s with every character outside [a-zA-Z0-9_] replaced
// by '_' and, if it would start with a digit, prefixed with '_'. An empty s
// stays empty.
func sanitizeName(s string) string {
	var b strings.Builder
	writeSanitized(&b, s)
	out := b.String()
	if out != "" && out[0] >= '0' && out[0] <= '9' {
		out = "_" + out
	}
	return out
}

// writeSanitized writes s to b, replacing each rune outside [a-zA-Z0-9_]
// (including each invalid UTF-8 byte) with a single '_'.
func writeSanitized(b *strings.Builder, s string) {
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
}

// writeLabelValue writes v escaped for a quoted Prometheus label value:
// backslash, double quote and newline are escaped and invalid UTF-8 is
// replaced with U+FFFD.
func writeLabelValue(b *strings.Builder, v string) {
	if !utf8.ValidString(v) {
		v = strings.ToValidUTF8(v, "\uFFFD")
	}
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '\\':
			b.WriteString(`\\`)
		case '"':
			b.WriteString(`\"`)
		case '\n':
			b.WriteString(`\n`)
		default:
			b.WriteByte(c)
		}
	}
}

// globalMetricsMu serialises InstallRaftMetrics and the shutdown functions it
// returns. It guards go-metrics' process-global sink, which is global state
// this package cannot avoid; it holds no state of its own.
var globalMetricsMu sync.Mutex

// InstallRaftMetrics points the process-global go-metrics instance, which
// hashicorp/raft emits to, at a MetricSink recording into set with the given
// prefix. The configuration adds no hostname, service name or type prefix to
// keys, collects no Go runtime metrics (the VictoriaMetrics process metrics
// cover those) and reports timers in milliseconds.
//
// go-metrics v0.7.0 has no option to suppress raft's legacy duplicate
// metrics (per-peer copies of the labelled replication metrics, with the
// peer ID in the key); set raft.Config.NoLegacyTelemetry for that.
//
// Because the go-metrics sink is process-global, it cannot tell several
// in-process raft nodes apart: every node's raft metrics land in the same
// series. Per-node metrics are recorded elsewhere, and a process should call
// InstallRaftMetrics once. Calling it again is safe: the new sink replaces
// the previous one, which stops receiving metrics.
//
// shutdown restores go-metrics' default discarding sink, but only if the
// sink installed by this call is still the current one, so a stale shutdown
// cannot undo a later installation. shutdown may be called more than once.
// Code that installs go-metrics sinks by other means is not coordinated with.
func InstallRaftMetrics(set *vm.Set, prefix string) (shutdown func(), err error) {
	if set == nil {
		return nil, errors.New("cluster: InstallRaftMetrics: nil metrics set")
	}
	conf := &gometrics.Config{
		EnableHostname:       false,
		EnableHostnameLabel:  false,
		EnableServiceLabel:   false,
		EnableRuntimeMetrics: false,
		EnableTypePrefix:     false,
		TimerGranularity:     time.Millisecond,
		ProfileInterval:      time.Second,
		FilterDefault:        true, // with no filters configured, allow every metric
	}

	globalMetricsMu.Lock()
	defer globalMetricsMu.Unlock()
	m, err := gometrics.NewGlobal(conf, NewMetricSink(set, prefix))
	if err != nil {
		return nil, err
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			globalMetricsMu.Lock()
			defer globalMetricsMu.Unlock()
			if gometrics.Default() == m {
				gometrics.Shutdown()
			}
		})
	}, nil
}

// The histograms' buckets: standard Prometheus `le` buckets, so that any
// Prometheus computes quantiles from them (histogram_quantile; the
// dashboard under deploy/grafana does).
var (
	// countBuckets are for counts of commands or entries: 1 to 4096.
	countBuckets = vm.ExponentialBuckets(1, 2, 13)
	// sampleBuckets are for raft's samples, milliseconds mostly (its
	// timings) and some counts: 0.05 to 26214.
	sampleBuckets = vm.ExponentialBuckets(0.05, 2, 20)
)
