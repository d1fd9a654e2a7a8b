package storage

import (
	"bytes"
	"math"
	"os"
	"reflect"
	"strings"
	"testing"
)

func secret(b byte) []byte { return bytes.Repeat([]byte{b}, WebhookSecretBytes) }

// sampleWebhookCommands are webhook commands of every shape (the fuzz
// seeds and round-trip tests use them).
func sampleWebhookCommands(stamp uint64) []*Command {
	return []*Command{
		{Kind: CmdWebhook, Stamp: stamp + 60, RequestID: "wh-1", Fingerprint: 3, Webhook: &WebhookCommand{Action: WebhookCreate, ID: "wh1",
			URL: "https://example.com/hook", Kinds: 0x0f, Description: "séarch index", Secret: secret(7)}},
		{Kind: CmdWebhook, Stamp: stamp + 61, Webhook: &WebhookCommand{Action: WebhookUpdate, ID: "wh1",
			Fields: webhookFieldsAll, URL: "http://b.example/x", Kinds: 1, Description: "d"}},
		{Kind: CmdWebhook, Stamp: stamp + 62, Webhook: &WebhookCommand{Action: WebhookUpdate, ID: "wh1", Fields: WebhookFieldEnable}},
		{Kind: CmdWebhook, Stamp: stamp + 63, Webhook: &WebhookCommand{Action: WebhookDelete, ID: "wh1"}},
		{Kind: CmdWebhookProgress, Stamp: stamp + 64, Progress: []WebhookReport{
			{ID: "wh1", Gen: 2, AckedIndex: 90, AckedN: 3, FailingSinceMs: 5, LastAttemptMs: 6, LastError: "500 Internal Server Error"},
			{ID: "wh2", Gen: 1, AckedIndex: 7, AckedN: math.MaxUint32, Status: WebhookGap, GapOldest: 40},
		}},
	}
}

func sampleWebhooks() []Webhook {
	return []Webhook{
		{ID: "a", URL: "https://a.example/h", Kinds: 3, Secret: secret(1), CreatedMs: 10, Gen: 1, AckedIndex: 5, AckedN: math.MaxUint32},
		{ID: "b", URL: "http://10.0.0.1:9/x?y=1", Kinds: 0x0f, Description: "b", Secret: secret(2), CreatedMs: 11, Gen: 4,
			Status: WebhookGap, AckedIndex: 9, AckedN: 2, FailingSinceMs: 3, LastAttemptMs: 4, LastError: "e", GapOldest: 77},
	}
}

func TestWebhookCommandRoundTrip(t *testing.T) {
	for _, c := range sampleWebhookCommands(StampAt(t0)) {
		got, err := DecodeCommand(EncodeCommand(nil, c))
		if err != nil {
			t.Fatalf("%s: %v", c.Kind, err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, c)
		}
	}
}

// A webhook command in a command of a version before webhooks is
// corrupt, not a kind to skip.
func TestWebhookCommandOlderVersion(t *testing.T) {
	b := EncodeCommand(nil, sampleWebhookCommands(1)[0])
	b[0] = cmdVersionWebhooks - 1
	if _, err := DecodeCommand(b); err == nil || !strings.Contains(err.Error(), "older than webhooks") {
		t.Fatalf("err %v", err)
	}
}

func TestSnapshotWebhooksRoundTrip(t *testing.T) {
	s := tinySnapshot(1, 2)
	s.Meta.Webhooks = sampleWebhooks()
	got, err := ReadSnapshot(bytes.NewReader(writeSnap(t, s)))
	if err != nil {
		t.Fatal(err)
	}
	sameState(t, got, s)
}

// TestReadSnapshotVersion10 reads a snapshot written by the build before
// webhooks (testdata/snapshot-v10.bin: goldenV10, with members, share
// links and named versions): it has no webhooks and keeps the rest, and
// a webhooks frame in a snapshot of that version is refused.
func TestReadSnapshotVersion10(t *testing.T) {
	b, err := os.ReadFile("testdata/snapshot-v10.bin")
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadSnapshot(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	want := goldenV10(t)
	sameState(t, got, want)
	if got.Meta.Webhooks != nil {
		t.Fatalf("webhooks %v", got.Meta.Webhooks)
	}
	named := 0
	for _, d := range got.Docs {
		named += len(d.NamedVersions())
	}
	if named == 0 {
		t.Fatal("the golden snapshot has no named versions")
	}
	again, err := ReadSnapshot(bytes.NewReader(writeSnap(t, got)))
	if err != nil {
		t.Fatal(err)
	}
	sameState(t, again, want)
	s := tinySnapshot(1, 1)
	s.Meta.Webhooks = sampleWebhooks()
	w := writeSnap(t, s)
	w[len(snapshotMagic)] = snapVersionWebhooks - 1
	if _, err := ReadSnapshot(bytes.NewReader(w)); err == nil || !strings.Contains(err.Error(), "older than webhooks") {
		t.Fatalf("err %v", err)
	}
}

func create(id, url string) *WebhookCommand {
	return &WebhookCommand{Action: WebhookCreate, ID: id, URL: url, Kinds: WebhookKinds, Secret: secret(9)}
}

func TestApplyWebhook(t *testing.T) {
	hooks, r := ApplyWebhook(nil, create("a", "https://x.example/h"), 12, 1000)
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	a := hooks["a"]
	if a.AckedIndex != 12 || a.AckedN != math.MaxUint32 || a.CreatedMs != 1000 || a.Gen != 1 || a.Status != WebhookActive {
		t.Fatalf("created %+v", a)
	}
	if _, r := ApplyWebhook(hooks, create("a", "https://x.example/h"), 13, 1000); r.Err == nil || r.Err.Kind != KindConflict {
		t.Fatalf("duplicate id: %v", r.Err)
	}
	for _, bad := range []*WebhookCommand{
		create("b", "ftp://x/"), create("b", "https://"), create("b", "https://u:p@x/"), create("b", "https://x/"+strings.Repeat("a", MaxWebhookURL)),
		{Action: WebhookCreate, ID: "b", URL: "https://x/", Kinds: 0x10, Secret: secret(1)},
		{Action: WebhookCreate, ID: "b", URL: "https://x/", Kinds: 1, Secret: secret(1)[:3]},
		{Action: WebhookCreate, ID: "b", URL: "https://x/", Kinds: 1, Secret: secret(1), Description: strings.Repeat("d", MaxWebhookDescription+1)},
	} {
		if _, r := ApplyWebhook(hooks, bad, 13, 1000); r.Err == nil || r.Err.Kind != KindBadRequest {
			t.Fatalf("%+v: %v", bad, r.Err)
		}
	}
	// Progress moves the position on; a report of the current
	// generation sets the status.
	before := hooks
	hooks = ApplyWebhookProgress(hooks, []WebhookReport{{ID: "a", Gen: 1, AckedIndex: 20, AckedN: 4, FailingSinceMs: 7,
		LastError: strings.Repeat("é", MaxWebhookError), Status: WebhookFailing}, {ID: "gone", Gen: 1, AckedIndex: 99}})
	if before["a"].AckedIndex != 12 {
		t.Fatal("the old map changed")
	}
	a = hooks["a"]
	if a.AckedIndex != 20 || a.AckedN != 4 || a.Status != WebhookFailing || len(a.LastError) > MaxWebhookError || hooks["gone"] != nil {
		t.Fatalf("after progress %+v", a)
	}
	// An older position never moves it back.
	hooks = ApplyWebhookProgress(hooks, []WebhookReport{{ID: "a", Gen: 1, AckedIndex: 19}})
	if hooks["a"].AckedIndex != 20 {
		t.Fatalf("moved back to %d", hooks["a"].AckedIndex)
	}
	// Re-enabling a failing webhook resumes where it was.
	hooks, r = ApplyWebhook(hooks, &WebhookCommand{Action: WebhookUpdate, ID: "a", Fields: WebhookFieldEnable}, 30, 2000)
	if a = hooks["a"]; r.Err != nil || a.Status != WebhookActive || a.AckedIndex != 20 || a.Gen != 2 || a.FailingSinceMs != 0 {
		t.Fatalf("re-enabled %+v %v", a, r.Err)
	}
	// A report of the previous generation changes no status.
	hooks = ApplyWebhookProgress(hooks, []WebhookReport{{ID: "a", Gen: 1, AckedIndex: 21, Status: WebhookGap, GapOldest: 25}})
	if a = hooks["a"]; a.Status != WebhookActive || a.AckedIndex != 21 {
		t.Fatalf("stale report %+v", a)
	}
	// A gap: re-enabling resumes after the re-enabling entry.
	hooks = ApplyWebhookProgress(hooks, []WebhookReport{{ID: "a", Gen: 2, AckedIndex: 21, Status: WebhookGap, GapOldest: 25}})
	if a = hooks["a"]; a.Status != WebhookGap || a.GapOldest != 25 {
		t.Fatalf("gap %+v", a)
	}
	hooks, _ = ApplyWebhook(hooks, &WebhookCommand{Action: WebhookUpdate, ID: "a", Fields: WebhookFieldEnable}, 40, 3000)
	if a = hooks["a"]; a.Status != WebhookActive || a.AckedIndex != 40 || a.AckedN != math.MaxUint32 || a.GapOldest != 0 {
		t.Fatalf("resumed %+v", a)
	}
	hooks, r = ApplyWebhook(hooks, &WebhookCommand{Action: WebhookDelete, ID: "a"}, 41, 3000)
	if r.Err != nil || len(hooks) != 0 {
		t.Fatalf("delete: %v %v", r.Err, hooks)
	}
	if _, r = ApplyWebhook(hooks, &WebhookCommand{Action: WebhookDelete, ID: "a"}, 42, 3000); r.Err == nil || r.Err.Kind != KindNotFound {
		t.Fatalf("delete again: %v", r.Err)
	}
}

func TestApplyWebhookQuota(t *testing.T) {
	var hooks map[string]*Webhook
	for i := range MaxWebhooks {
		var r Result
		hooks, r = ApplyWebhook(hooks, create(string(rune('A'+i/26))+string(rune('a'+i%26)), "https://x/"), uint64(i), 1)
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	_, r := ApplyWebhook(hooks, create("zz", "https://x/"), 999, 1)
	if r.Err == nil || r.Err.Kind != KindQuotaExceeded || r.Err.Limit != MaxWebhooks {
		t.Fatalf("%v", r.Err)
	}
}
