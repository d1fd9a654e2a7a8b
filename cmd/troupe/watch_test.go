package main

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/troupe-db/troupe/internal/nodetest"
	"github.com/troupe-db/troupe/transport/client"
)

func TestWatchCmd(t *testing.T) {
	addr := "http://" + nodetest.Start(t, 4)
	cfg := client.DefaultConfig()
	cfg.Nodes = []string{addr}
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, meta, err := c.ListUsers(ctx, client.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, _, err := c.CreateUser(ctx, client.NewUser{Name: "U", Email: fmt.Sprintf("w%d@example.com", i), Password: "password1"}); err != nil {
			t.Fatal(err)
		}
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"watch", "--addr", addr, "--kinds", "users", "--from", fmt.Sprint(meta.Index), "--count", "3"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	line := regexp.MustCompile(`^\d+-0 user created [0-9a-v]{16} v1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("output:\n%s", out.String())
	}
	for _, l := range lines {
		if !line.MatchString(l) {
			t.Fatalf("line %q", l)
		}
	}
	out.Reset()
	if code := run([]string{"watch", "--addr", addr, "--from", fmt.Sprint(meta.Index), "--count", "1", "--json"}, &out, &errOut); code != 0 ||
		!strings.HasPrefix(out.String(), `{"index":`) || !strings.Contains(out.String(), `"kind":"user","op":"created"`) {
		t.Fatalf("exit %d: %s %s", code, out.String(), errOut.String())
	}
	for _, args := range [][]string{{"--from", "x"}, {"--count", "-1"}, {"--timeout", "0s"}, {"extra"}} {
		errOut.Reset()
		if code := run(append([]string{"watch", "--addr", addr}, args...), &out, &errOut); code != 2 {
			t.Errorf("%v: exit %d", args, code)
		}
	}
	errOut.Reset()
	if code := run([]string{"watch", "--addr", addr, "--kinds", "bogus"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "kinds") {
		t.Errorf("bad kinds: exit %d: %s", code, errOut.String())
	}
}
