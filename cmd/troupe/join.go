package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/troupe-db/troupe/cluster"
	"github.com/troupe-db/troupe/replica"
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
func joinCluster(ctx context.Context, client *http.Client, urls []string, req joinRequest, secret string, logger *slog.Logger) error {
	body := mustJSON(req)
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		targets := append([]string(nil), urls...)
		for i := 0; i < len(targets) && i < 8; i++ {
			leader, err := askToJoin(ctx, client, targets[i], body, secret)
			if err == nil {
				logger.Info("joined the cluster", slog.String("via", targets[i]))
				return nil
			}
			var refused *joinRefused
			if errors.As(err, &refused) {
				return err // a wrong secret or a bad address does not mend by waiting
			}
			if leader != "" {
				targets = append(targets, schemeOf(targets[i])+leader) // follow the leader hint
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
		err := fmt.Errorf("%d %s: %s", resp.StatusCode, e.Error.Code, e.Error.Message)
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			if secret == "" {
				err = fmt.Errorf("%w; the cluster has a secret: start this node with --cluster-secret-file FILE or the TROUPE_CLUSTER_SECRET variable", err)
			} else {
				err = fmt.Errorf("%w; the cluster secret given (--cluster-secret-file or TROUPE_CLUSTER_SECRET) is not the cluster's", err)
			}
		}
		if resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			return "", &joinRefused{err}
		}
		return e.Error.Details.Leader, err
	}
	return resp.Header.Get("X-Troupe-Leader"), fmt.Errorf("%d", resp.StatusCode)
}

// formCluster is --bootstrap-expect: it asks the peers at urls who they
// are until expect nodes (this one included) know of each other, then
// bootstraps them all with the same configuration (every node computes the
// same sorted list). A peer that already belongs to a cluster is joined
// instead.
func formCluster(ctx context.Context, client *http.Client, node *cluster.Node, urls []string, expect int, req joinRequest, secret string, logger *slog.Logger) error {
	wait := 100 * time.Millisecond
	for {
		known := map[string]replica.Identity{}
		me := node.Identity()
		known[me.ID] = me
		for _, u := range urls {
			id, err := peerIdentity(ctx, client, u, secret)
			if err != nil {
				continue
			}
			if id.Configured {
				logger.Info("a peer already belongs to a cluster; joining it", slog.String("peer", u))
				return joinCluster(ctx, client, []string{u}, req, secret, logger)
			}
			known[id.ID] = id
		}
		if !node.Unconfigured() {
			return nil // another node bootstrapped us meanwhile
		}
		if len(known) >= expect {
			servers := make([]replica.Identity, 0, len(known))
			for _, id := range known {
				servers = append(servers, id)
			}
			slices.SortFunc(servers, func(a, b replica.Identity) int { return strings.Compare(a.ID, b.ID) })
			return node.BootstrapWith(servers[:expect])
		}
		logger.Info("waiting for the expected nodes", slog.Int("known", len(known)), slog.Int("expect", expect))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait/2 + rand.N(wait/2+1)):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

func peerIdentity(ctx context.Context, client *http.Client, base, secret string) (replica.Identity, error) {
	var id replica.Identity
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+replica.IdentityPath, nil)
	if err != nil {
		return id, err
	}
	if secret != "" {
		r.Header.Set("X-Troupe-Cluster-Secret", secret)
	}
	resp, err := client.Do(r)
	if err != nil {
		return id, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return id, fmt.Errorf("%s answered %d", base, resp.StatusCode)
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&id)
	return id, err
}

// keepRegistered makes sure the member directory holds this node's
// addresses (nodes that formed a cluster with --bootstrap-expect, or that
// moved, are not in it yet): it asks the leader to record them, which
// changes nothing else. A node that moved is unknown at its new raft
// address, so no leader contacts it: then it asks the members it was
// told to --join, whose leader updates its address in raft's
// configuration too.
func keepRegistered(ctx context.Context, client *http.Client, scheme string, node *cluster.Node, req joinRequest, secret string, fallback []string, logger *slog.Logger) {
	body := mustJSON(req)
	for !node.Registered() {
		targets := fallback
		if leader := node.LeaderHTTP(); leader != "" {
			targets = []string{scheme + leader}
		}
		if !node.IsLeader() {
			for i := 0; i < len(targets) && i < 8; i++ {
				hint, err := askToJoin(ctx, client, targets[i], body, secret)
				if err == nil {
					logger.Info("recorded this node's addresses in the member directory", slog.String("via", targets[i]))
					break
				}
				if hint != "" {
					targets = append(targets, scheme+hint)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// schemeOf returns "https://" or "http://" as url starts.
func schemeOf(url string) string {
	if strings.HasPrefix(url, "https://") {
		return "https://"
	}
	return "http://"
}

// joinRefused is a join the cluster answered with a definite no.
type joinRefused struct{ err error }

func (e *joinRefused) Error() string { return "the cluster refused this node: " + e.err.Error() }
func (e *joinRefused) Unwrap() error { return e.err }
