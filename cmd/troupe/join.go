package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"
)

// joinRequest is the body of POST /v1/cluster/members.
type joinRequest struct {
	ID       string `json:"id"`
	HTTPAddr string `json:"http_addr"`
	RaftAddr string `json:"raft_addr"`
	Voter    bool   `json:"voter"`
}

// joinCluster asks the members at urls, in turn, to add this node, until
// one (the leader, or a member pointing at it) does or ctx ends. Failures
// back off exponentially with jitter, up to 5 s between rounds.
func joinCluster(ctx context.Context, urls []string, req joinRequest, secret string, logger *slog.Logger) error {
	body, _ := json.Marshal(req)
	client := &http.Client{Timeout: 15 * time.Second}
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		targets := append([]string(nil), urls...)
		for i := 0; i < len(targets) && i < 8; i++ {
			leader, err := askToJoin(ctx, client, targets[i], body, secret)
			if err == nil {
				logger.Info("joined the cluster", slog.String("via", targets[i]))
				return nil
			}
			if leader != "" {
				targets = append(targets, "http://"+leader) // follow the leader hint
			}
			logger.Info("join attempt failed", slog.String("member", targets[i]), slog.Int("attempt", attempt), slog.Any("err", err))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait/2 + rand.N(wait/2+1)):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// askToJoin posts the request to one member. On a 503 from a member that
// is not the leader it returns the leader's address from the answer.
func askToJoin(ctx context.Context, client *http.Client, base string, body []byte, secret string) (leader string, err error) {
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(base, "/")+"/v1/cluster/members", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	r.Header.Set("Content-Type", "application/json")
	if secret != "" {
		r.Header.Set("X-Troupe-Cluster-Secret", secret)
	}
	resp, err := client.Do(r)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode == http.StatusOK {
		return "", nil
	}
	var e struct {
		Error struct {
			Code    string
			Message string
			Details struct{ Leader string }
		}
	}
	_ = json.Unmarshal(b, &e)
	if e.Error.Code != "" {
		return e.Error.Details.Leader, fmt.Errorf("%d %s: %s", resp.StatusCode, e.Error.Code, e.Error.Message)
	}
	return resp.Header.Get("X-Troupe-Leader"), fmt.Errorf("%d", resp.StatusCode)
}
