package client

import (
	"strings"
	"testing"
)

// The webhook calls against a real node: create (the secret shown once),
// read, list, re-enable, a refused private target, delete.
func TestNodeWebhooks(t *testing.T) {
	c := newTestClient(t, testConfig(startNode(t)))
	ctx := testCtx(t)
	w, meta, err := c.CreateWebhook(ctx, NewWebhook{URL: "https://203.0.113.10/hook", Kinds: []string{"users"}, Description: "mirror"})
	if err != nil || meta.Status != 201 || !strings.HasPrefix(w.Secret, "whsec_") || w.Status != "active" || len(w.Kinds) != 1 {
		t.Fatalf("create: %+v %+v %v", w, meta, err)
	}
	got, _, err := c.GetWebhook(ctx, w.ID, ReadOptions{})
	if err != nil || got.Secret != "" || got.URL != w.URL || got.AckedIndex == 0 {
		t.Fatalf("get: %+v %v", got, err)
	}
	list, _, err := c.ListWebhooks(ctx, ReadOptions{})
	if err != nil || len(list) != 1 || list[0].ID != w.ID {
		t.Fatalf("list: %+v %v", list, err)
	}
	on, desc := true, "renamed"
	if p, _, err := c.PatchWebhook(ctx, w.ID, WebhookPatch{Enabled: &on, Description: &desc}); err != nil || p.Description != desc {
		t.Fatalf("patch: %+v %v", p, err)
	}
	_, _, err = c.CreateWebhook(ctx, NewWebhook{URL: "http://127.0.0.1:9/hook"})
	if ae, ok := asAPIError(err); !ok || ae.Code != "target_not_allowed" {
		t.Fatalf("a loopback target: %v", err)
	}
	if _, err := c.DeleteWebhook(ctx, w.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.GetWebhook(ctx, w.ID, ReadOptions{}); !IsNotFound(err) {
		t.Fatalf("after delete: %v", err)
	}
}
