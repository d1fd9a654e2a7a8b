package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func get(t *testing.T, uri string, header map[string]string) *fasthttp.Response {
	t.Helper()
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod("GET")
	ctx.Request.SetRequestURI(uri)
	for k, v := range header {
		ctx.Request.Header.Set(k, v)
	}
	Handler()(&ctx)
	var resp fasthttp.Response
	ctx.Response.CopyTo(&resp)
	return &resp
}

func TestIndex(t *testing.T) {
	r := get(t, "/", nil)
	if r.StatusCode() != 200 {
		t.Fatalf("status %d", r.StatusCode())
	}
	if ct := string(r.Header.ContentType()); ct != "text/html; charset=utf-8" {
		t.Fatalf("content type %q", ct)
	}
	if cc := string(r.Header.Peek("Cache-Control")); cc != "no-cache" {
		t.Fatalf("cache control %q", cc)
	}
	if csp := string(r.Header.Peek("Content-Security-Policy")); !strings.Contains(csp, "script-src 'self'") {
		t.Fatalf("content security policy %q", csp)
	}
	body := string(r.Body())
	// The page names each asset with its content hash, and nothing from
	// elsewhere.
	for name, a := range assets {
		if name == "selftest.js" || name == "sw.js" {
			continue
		}
		if !strings.Contains(body, `"/assets/`+name+`?v=`+a.version+`"`) {
			t.Errorf("index does not link %s at version %s", name, a.version)
		}
	}
	if m := regexp.MustCompile(`(?i)(src|href)="(https?:)?//`).FindString(body); m != "" {
		t.Fatalf("index loads something from elsewhere: %s", m)
	}
	etag := string(r.Header.Peek("ETag"))
	if r := get(t, "/", map[string]string{"If-None-Match": etag}); r.StatusCode() != 304 || len(r.Body()) != 0 {
		t.Fatalf("revalidation: %d, %d bytes", r.StatusCode(), len(r.Body()))
	}
}

func TestAssets(t *testing.T) {
	cases := map[string]string{
		"app.js":      "text/javascript; charset=utf-8",
		"editor.js":   "text/javascript; charset=utf-8",
		"offline.js":  "text/javascript; charset=utf-8",
		"history.js":  "text/javascript; charset=utf-8",
		"selftest.js": "text/javascript; charset=utf-8",
		"style.css":   "text/css; charset=utf-8",
	}
	for name, ct := range cases {
		a := assets[name]
		r := get(t, "/assets/"+name+"?v="+a.version, nil)
		if r.StatusCode() != 200 || string(r.Header.ContentType()) != ct {
			t.Fatalf("%s: %d %q", name, r.StatusCode(), r.Header.ContentType())
		}
		if cc := string(r.Header.Peek("Cache-Control")); !strings.Contains(cc, "max-age=31536000") || !strings.Contains(cc, "immutable") {
			t.Fatalf("%s: versioned cache control %q", name, cc)
		}
		if string(r.Header.Peek("X-Content-Type-Options")) != "nosniff" {
			t.Fatalf("%s: no nosniff", name)
		}
		etag := string(r.Header.Peek("ETag"))
		if etag != `"`+a.version+`"` || len(r.Body()) != len(a.body) {
			t.Fatalf("%s: etag %s, %d bytes", name, etag, len(r.Body()))
		}
		// Without the version (or with an old one) it is revalidated.
		for _, uri := range []string{"/assets/" + name, "/assets/" + name + "?v=old"} {
			if cc := string(get(t, uri, nil).Header.Peek("Cache-Control")); cc != "no-cache" {
				t.Fatalf("%s: cache control %q", uri, cc)
			}
		}
		for _, inm := range []string{etag, "W/" + etag, `"x", ` + etag, "*"} {
			if r := get(t, "/assets/"+name, map[string]string{"If-None-Match": inm}); r.StatusCode() != 304 {
				t.Fatalf("%s: If-None-Match %s: %d", name, inm, r.StatusCode())
			}
		}
		if r := get(t, "/assets/"+name, map[string]string{"If-None-Match": `"other"`}); r.StatusCode() != 200 {
			t.Fatalf("%s: a stale ETag got %d", name, r.StatusCode())
		}
	}
}

func TestNotFound(t *testing.T) {
	for _, uri := range []string{"/assets/nope.js", "/assets/", "/assets/../web.go", "/assets/index.html", "/index.html", "/assets/app.js/x"} {
		r := get(t, uri, nil)
		if r.StatusCode() != 404 || string(r.Header.ContentType()) != "application/json" {
			t.Fatalf("%s: %d %q", uri, r.StatusCode(), r.Header.ContentType())
		}
		var body struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		dec := json.NewDecoder(strings.NewReader(string(r.Body())))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil || body.Error.Code != "not_found" || body.Error.Message == "" {
			t.Fatalf("%s: body %s (%v)", uri, r.Body(), err)
		}
	}
}

// The page loads the bundle before the scripts that use it.
func TestScriptOrder(t *testing.T) {
	body := string(get(t, "/", nil).Body())
	last := -1
	for _, name := range []string{"editor.js", "offline.js", "history.js", "share.js", "app.js"} {
		i := strings.Index(body, `<script src="/assets/`+name+`?v=`)
		if i < 0 || i < last {
			t.Fatalf("%s is not linked after the scripts it needs", name)
		}
		last = i
	}
}

func TestServiceWorker(t *testing.T) {
	r := get(t, "/assets/sw.js", nil)
	if r.StatusCode() != 200 || string(r.Header.ContentType()) != "text/javascript; charset=utf-8" {
		t.Fatalf("%d %q", r.StatusCode(), r.Header.ContentType())
	}
	// It serves the page at /, outside its own directory.
	if h := string(r.Header.Peek("Service-Worker-Allowed")); h != "/" {
		t.Fatalf("Service-Worker-Allowed %q", h)
	}
	// Always revalidated, so a new build's worker replaces the old one.
	if cc := string(r.Header.Peek("Cache-Control")); cc != "no-cache" {
		t.Fatalf("cache control %q", cc)
	}
	if h := get(t, "/assets/app.js", nil).Header.Peek("Service-Worker-Allowed"); len(h) != 0 {
		t.Fatalf("app.js answered with Service-Worker-Allowed %q", h)
	}
}

// The committed bundle is what build.mjs builds from src/ (it records the
// sources' hash): a change to src/ without make web fails here, where no
// Node is needed.
func TestBundleUpToDate(t *testing.T) {
	names, err := filepath.Glob(filepath.Join("src", "*.js"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no sources in src/: %v", err)
	}
	slices.Sort(names)
	h := sha256.New()
	for _, name := range names {
		body, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		h.Write([]byte(filepath.Base(name) + "\x00"))
		h.Write(body)
		h.Write([]byte{0})
	}
	want := "(source-sha256: " + hex.EncodeToString(h.Sum(nil)) + ")"
	head, _, _ := bytes.Cut(assets["editor.js"].body, []byte("\n"))
	if !bytes.Contains(head, []byte(want)) {
		t.Fatalf("editor.js was not built from the sources in src/ (run make web): its first line is\n%s\nwant %s", head, want)
	}
}

// The bundle keeps the licence of each package in it (CodeMirror's and
// its dependencies' are MIT: their notice must travel with the code).
func TestBundleLicences(t *testing.T) {
	body := assets["editor.js"].body
	banner, _, ok := bytes.Cut(body, []byte("*/"))
	if !ok || !bytes.HasPrefix(body, []byte("/*!")) {
		t.Fatal("editor.js does not start with its licence comment")
	}
	for _, want := range []string{"@codemirror/state@", "@codemirror/view@", "style-mod@", "MIT License",
		"Copyright (C) 2018-2021 by Marijn Haverbeke", "Permission is hereby granted, free of charge"} {
		if !bytes.Contains(banner, []byte(want)) {
			t.Errorf("the licence comment lacks %q", want)
		}
	}
	// Every package named is followed by its licence text.
	for _, line := range strings.Split(string(banner), "\n") {
		if strings.Contains(line, "@") && strings.HasSuffix(line, "):") && !strings.Contains(line, "(MIT)") {
			t.Errorf("a package that is not MIT: %s (check its licence before shipping it)", line)
		}
	}
}

// Clients that accept gzip get the bundle (and the page) gzipped, with an
// ETag of their own; others get it as it is.
func TestGzip(t *testing.T) {
	a := assets["editor.js"]
	for _, ae := range []string{"gzip", "br, gzip;q=0.5", "*", "deflate, GZIP"} {
		r := get(t, "/assets/editor.js?v="+a.version, map[string]string{"Accept-Encoding": ae})
		if string(r.Header.Peek("Content-Encoding")) != "gzip" || string(r.Header.Peek("Vary")) != "Accept-Encoding" {
			t.Fatalf("%q: encoding %q, vary %q", ae, r.Header.Peek("Content-Encoding"), r.Header.Peek("Vary"))
		}
		zr, err := gzip.NewReader(bytes.NewReader(r.Body()))
		if err != nil {
			t.Fatal(err)
		}
		plain, err := io.ReadAll(zr)
		if err != nil || !bytes.Equal(plain, a.body) {
			t.Fatalf("%q: the gzipped body is not the bundle (%v)", ae, err)
		}
		if len(r.Body()) > len(a.body)/2 {
			t.Fatalf("gzipped to %d of %d bytes", len(r.Body()), len(a.body))
		}
		etag := string(r.Header.Peek("ETag"))
		if etag == a.etag {
			t.Fatalf("the gzipped bundle has the plain one's ETag %s", etag)
		}
		if r := get(t, "/assets/editor.js", map[string]string{"Accept-Encoding": ae, "If-None-Match": etag}); r.StatusCode() != 304 {
			t.Fatalf("%q: revalidation %d", ae, r.StatusCode())
		}
	}
	for _, ae := range []string{"", "br", "gzip;q=0", "identity, gzip; q=0.0"} {
		r := get(t, "/assets/editor.js", map[string]string{"Accept-Encoding": ae})
		if len(r.Header.Peek("Content-Encoding")) != 0 || !bytes.Equal(r.Body(), a.body) {
			t.Fatalf("%q: encoding %q, %d bytes", ae, r.Header.Peek("Content-Encoding"), len(r.Body()))
		}
	}
	if r := get(t, "/", map[string]string{"Accept-Encoding": "gzip"}); string(r.Header.Peek("Content-Encoding")) != "gzip" {
		t.Fatal("the page is not gzipped")
	}
}
