package systemtest

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// metricName matches the metric names a PromQL expression queries (of
// troupe and of the Go runtime and process collectors).
var metricName = regexp.MustCompile(`\b(?:troupe|go|process)_[A-Za-z0-9_]+\b`)

// dashboardMetrics returns every metric name a panel of the Grafana
// dashboard queries.
func dashboardMetrics(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "deploy", "grafana", "dashboards", "troupe.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	var names []string
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			found := metricName.FindAllString(tg.Expr, -1)
			if len(found) == 0 {
				t.Fatalf("panel %q queries no metric: %s", p.Title, tg.Expr)
			}
			names = append(names, found...)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// TestDashboardMetricsExist: every metric the Grafana dashboard queries
// is served by /metrics of a running node once it has done each kind of
// work (requests, a snapshot, a scheduled backup, rate-limit checks,
// documents and WebSocket edits), so the dashboard cannot drift from the
// metrics.
func TestDashboardMetricsExist(t *testing.T) {
	t.Parallel()
	requireBinary(t)
	names := dashboardMetrics(t)
	cfg := newNodeConfig(t, "dash")
	cfg.ExtraArgs = append(cfg.ExtraArgs, "--backup-dir", filepath.Join(t.TempDir(), "backups"), "--backup-every", "1s")
	n := startNode(t, cfg)
	expectUser(t, n.do(t, "POST", "/v1/users", map[string]string{"name": "D", "email": "d@example.com"}, nil), 201)
	expectStatus(t, n.do(t, "PUT", "/v1/ratelimit/policies/dash", map[string]any{"limit": 100, "window_ms": 60000}, nil), 200)
	expectStatus(t, n.do(t, "POST", "/v1/ratelimit/check", map[string]any{"policy": "dash", "key": "k"}, nil), 200)
	// Documents edited over WebSockets.
	out, err := exec.Command(troupeBin, "bench", "--addr", n.URL, "--scenario", "docs-ws", "--connections", "2",
		"--docs", "2", "--duration", "500ms", "--warmup", "0s").CombinedOutput()
	if err != nil {
		t.Fatalf("troupe bench docs-ws: %v\n%s", err, out)
	}
	expectStatus(t, n.do(t, "POST", "/v1/cluster/snapshot", nil, nil), 200)
	deadline := time.Now().Add(20 * time.Second)
	for {
		body := "\n" + string(n.do(t, "GET", "/metrics", nil, nil).Body)
		var missing []string
		for _, name := range names {
			if !strings.Contains(body, "\n"+name+"{") && !strings.Contains(body, "\n"+name+" ") {
				missing = append(missing, name)
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dashboard queries metrics /metrics does not serve: %v", missing)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
