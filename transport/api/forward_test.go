package api

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	openapi "github.com/troupe-db/troupe/api"
	"github.com/troupe-db/troupe/cluster"
	"github.com/troupe-db/troupe/replica"
	"github.com/troupe-db/troupe/storage"
)

// followerNode is a node that follows leader: it shares the leader's
// state (as a caught-up follower would hold the same) but cannot propose.
type followerNode struct {
	*cluster.Node
	leaderHTTP string
}

func (f *followerNode) IsLeader() bool     { return false }
func (f *followerNode) LeaderHTTP() string { return f.leaderHTTP }
func (f *followerNode) Propose(context.Context, *storage.Command, time.Time) (storage.Result, uint64, error) {
	return storage.Result{}, 0, replica.ErrNotLeader
}
func (f *followerNode) ProposeRestamped(_ context.Context, cmds []*storage.Command, _ time.Time) []replica.Proposal {
	out := make([]replica.Proposal, len(cmds))
	for i := range out {
		out[i].Err = replica.ErrNotLeader
	}
	return out
}

// startFollower serves the HTTP API of a follower of leader.
func startFollower(t *testing.T, leader *testServer, opts ...func(*Config)) *testServer {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(testLogOutput(), nil))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hcfg := DefaultConfig()
	hcfg.Insecure = true
	hcfg.Argon2 = cheapArgon
	for _, o := range opts {
		o(&hcfg)
	}
	node := &followerNode{Node: leader.node, leaderHTTP: strings.TrimPrefix(leader.base, "http://")}
	srv := serveForTest(t, ln, hcfg, logger, metrics.NewSet(), node, leader.node, nil)
	v, err := openapi.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	return &testServer{t: t, base: "http://" + ln.Addr().String(), node: leader.node, validator: v, srv: srv}
}

func TestForwardedCreate(t *testing.T) {
	leader := startServer(t)
	f := startFollower(t, leader)

	r := f.do("POST", "/v1/users", `{"name":"Grace","email":"grace@example.com","password":"long enough pw"}`, nil, true)
	if r.status != 201 {
		t.Fatalf("create through a follower: %d %s", r.status, r.body)
	}
	var u map[string]any
	r.json(t, &u)
	id, _ := u["id"].(string)
	if r.header.Get("Location") != "/v1/users/"+id || r.header.Get("X-Troupe-Index") == "" || r.header.Get("ETag") != `"1"` {
		t.Fatalf("headers: %v", r.header)
	}
	if g := leader.do("GET", "/v1/users/"+id, "", nil, true); g.status != 200 || !strings.Contains(string(g.body), "grace@example.com") {
		t.Fatalf("the leader does not hold the user: %d %s", g.status, g.body)
	}
	// The password was hashed on the follower and travelled as a hash.
	found, err := leader.node.Users().FindEmail("grace@example.com", time.Now().Add(time.Second))
	if err != nil || found == nil || !strings.HasPrefix(found.PasswordHash, "$argon2id$") {
		t.Fatalf("stored user: %+v %v", found, err)
	}

	// The email is taken: the optimistic check answers on the follower;
	// with a key (no optimistic check), apply on the leader does.
	if r := f.do("POST", "/v1/users", `{"name":"G2","email":"GRACE@example.com"}`, nil, true); r.status != 409 {
		t.Fatalf("duplicate: %d %s", r.status, r.body)
	}
	if r := f.do("POST", "/v1/users", `{"name":"G2","email":"GRACE@example.com"}`, map[string]string{"Idempotency-Key": "dup-1"}, true); r.status != 409 {
		t.Fatalf("duplicate with a key: %d %s", r.status, r.body)
	}
	// Validation happens on the follower.
	if r := f.do("POST", "/v1/users", `{"name":"","email":"x@example.com"}`, nil, false); r.status != 400 {
		t.Fatalf("invalid: %d %s", r.status, r.body)
	}
}

func TestForwardedCreateIsIdempotent(t *testing.T) {
	leader := startServer(t)
	f := startFollower(t, leader)
	key := map[string]string{"Idempotency-Key": "k-1"}
	body := `{"name":"Ida","email":"ida@example.com"}`
	r1 := f.do("POST", "/v1/users", body, key, true)
	r2 := f.do("POST", "/v1/users", body, key, true)
	// The same key at the leader directly: the same scope, the same answer.
	r3 := leader.do("POST", "/v1/users", body, key, true)
	if r1.status != 201 || r2.status != 201 || r3.status != 201 || r1.header.Get("Location") != r2.header.Get("Location") || r1.header.Get("Location") != r3.header.Get("Location") {
		t.Fatalf("retries: %d %s / %d %s / %d %s", r1.status, r1.body, r2.status, r2.body, r3.status, r3.body)
	}
	n, err := leader.node.Users().Count("ida@example.com", time.Now().Add(time.Second))
	if err != nil || n != 1 {
		t.Fatalf("count %d %v", n, err)
	}
	// A key reused for a different request is refused.
	if r := f.do("POST", "/v1/users", `{"name":"Other","email":"other@example.com"}`, key, true); r.status != 409 {
		t.Fatalf("reused key: %d %s", r.status, r.body)
	}
}

// forwardBatch posts items (token flag, token, command) to the leader's
// forwarding route as a follower does.
func forwardBatch(t *testing.T, ts *testServer, proof string, items ...fwdItem) (int, []fwdReply) {
	t.Helper()
	body := binary.AppendUvarint(nil, uint64(len(items)))
	for _, it := range items {
		body = it.cred.append(body)
		body = appendBytes(body, it.cmd)
	}
	req, err := http.NewRequest("POST", ts.base+forwardCommandsPath, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if proof != "" {
		req.Header.Set(forwardedHeader, proof)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil
	}
	replies, err := decodeForwardReplies(got, len(items))
	if err != nil {
		t.Fatal(err)
	}
	return http.StatusOK, replies
}

func createCommand(t *testing.T, ts *testServer, requestID, email string) []byte {
	users := ts.node.Users()
	stamp := ts.node.Stamps(1)
	cmd := &storage.Command{Kind: storage.CmdUserCreate, Stamp: stamp, RequestID: requestID,
		Create: &storage.BatchItem{ID: storage.MakeUserID(stamp, users.HomeShardFor(email)), User: storage.NewUser{Name: "N", Email: email, Role: storage.RoleUser}}}
	return storage.EncodeCommand(nil, cmd)
}

func TestForwardRoute(t *testing.T) {
	leader := startServer(t, secure)
	proof := leader.srv.forwardProof()
	if proof == "" {
		t.Fatal("no forwarding proof")
	}
	adminToken := leader.login("admin@troupe.local", testAdminPassword).AccessToken
	cmd := createCommand(t, leader, "-:fwd-1", "fw@example.com")

	// Only members may forward.
	if status, _ := forwardBatch(t, leader, "", fwdItem{cred: fwdCredentials{hasToken: true, token: adminToken}, cmd: cmd}); status != http.StatusForbidden {
		t.Fatalf("without proof: %d", status)
	}
	if status, _ := forwardBatch(t, leader, "forged", fwdItem{cred: fwdCredentials{hasToken: true, token: adminToken}, cmd: cmd}); status != http.StatusForbidden {
		t.Fatalf("forged proof: %d", status)
	}

	// The same command twice (a retry after a lost answer) applies once:
	// the leader stamps it anew, and the request id answers the retry
	// with the first result.
	status, replies := forwardBatch(t, leader, proof,
		fwdItem{cred: fwdCredentials{hasToken: true, token: adminToken}, cmd: cmd},
		fwdItem{cred: fwdCredentials{hasToken: true, token: "not-a-token"}, cmd: createCommand(t, leader, "-:fwd-2", "bad@example.com")},
		fwdItem{cmd: createCommand(t, leader, "-:fwd-3", "anon@example.com")},
		fwdItem{cred: fwdCredentials{hasToken: true, token: adminToken}, cmd: storage.EncodeCommand(nil, &storage.Command{Kind: storage.CmdNoop, Stamp: 1})},
	)
	if status != http.StatusOK {
		t.Fatalf("batch: %d", status)
	}
	first := replies[0]
	if first.status != fwdApplied || first.res.Err != nil || first.res.User == nil || first.index == 0 {
		t.Fatalf("create: %+v", first)
	}
	if replies[1].res.Err == nil || replies[1].res.Err.Kind != storage.KindUnauthenticated {
		t.Fatalf("bad token: %+v", replies[1])
	}
	if replies[2].res.Err == nil || replies[2].res.Err.Kind != storage.KindUnauthenticated {
		t.Fatalf("no token on a secure node: %+v", replies[2])
	}
	if replies[3].res.Err == nil || replies[3].res.Err.Kind != storage.KindBadRequest {
		t.Fatalf("a command that may not be forwarded: %+v", replies[3])
	}
	_, again := forwardBatch(t, leader, proof, fwdItem{cred: fwdCredentials{hasToken: true, token: adminToken}, cmd: cmd})
	if again[0].res.User == nil || again[0].res.User.ID != first.res.User.ID {
		t.Fatalf("retry: %+v, first %+v", again[0].res.User, first.res.User)
	}
	// The id derives from the leader's stamp, in the shard of the email.
	stamp, shard, ok := storage.ParseUserID(first.res.User.ID)
	if !ok || shard != leader.node.Users().HomeShardFor("fw@example.com") || stamp == 0 {
		t.Fatalf("id %s", first.res.User.ID)
	}
	for _, email := range []string{"bad@example.com", "anon@example.com"} {
		if u, _ := leader.node.Users().FindEmail(email, time.Now().Add(time.Second)); u != nil {
			t.Fatalf("%s was created", email)
		}
	}
}

func TestForwardedCreateNeedsAdmin(t *testing.T) {
	leader := startServer(t, secure)
	f := startFollower(t, leader, secure)
	leader.register("Reg", "reg@example.com", "user password 1")
	userToken := leader.login("reg@example.com", "user password 1").AccessToken
	// The follower refuses a user; the leader refuses a user's command.
	if r := f.do("POST", "/v1/users", `{"name":"X","email":"x1@example.com"}`, bearer(userToken), true); r.status != 403 {
		t.Fatalf("a user creating users through a follower: %d %s", r.status, r.body)
	}
	_, replies := forwardBatch(t, leader, leader.srv.forwardProof(), fwdItem{cred: fwdCredentials{hasToken: true, token: userToken}, cmd: createCommand(t, leader, "u:fwd-1", "x1@example.com")})
	if replies[0].res.Err == nil || replies[0].res.Err.Kind != storage.KindForbidden {
		t.Fatalf("a user's forwarded command: %+v", replies[0])
	}
	adminToken := leader.login("admin@troupe.local", testAdminPassword).AccessToken
	if r := f.do("POST", "/v1/users", `{"name":"X","email":"x2@example.com"}`, bearer(adminToken), true); r.status != 201 {
		t.Fatalf("an admin creating a user through a follower: %d %s", r.status, r.body)
	}
}

// FuzzForwardCredentials: the credentials of a forwarded command decode
// without panicking, and what decodes encodes to bytes that decode to
// the same credentials.
func FuzzForwardCredentials(f *testing.F) {
	for _, c := range []fwdCredentials{{}, {hasToken: true, token: "tok"}, {share: "0123456789abcdef0123456789abcdef"}, {hasToken: true, token: "t", share: "s"}} {
		f.Add(c.append(nil))
	}
	f.Add([]byte{4, 0})
	f.Add([]byte{2, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		d := fwdDecoder{b: b}
		c := d.credentials()
		if d.err != nil {
			return
		}
		d2 := fwdDecoder{b: c.append(nil)}
		if again := d2.credentials(); d2.end() != nil || again != c {
			t.Fatalf("%+v re-encoded reads %+v (%v)", c, again, d2.err)
		}
	})
}
