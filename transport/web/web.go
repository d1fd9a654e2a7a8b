// Package web serves troupe's browser editor: one page and its scripts
// and styles, embedded in the binary (nothing fetched from elsewhere).
// The page talks to the /v1 API of the node that served it.
//
// editor.js is a bundle (CodeMirror 6 and the modules in src/) that
// build.mjs builds with esbuild; it is committed, so the Go build needs
// no Node (make web rebuilds it, make web-test tests src/ with node).
// The other files are served as written.
//
// GET / answers index.html with Cache-Control: no-cache (always
// revalidated, by ETag). The page names its assets with ?v=<content
// hash>, so GET /assets/{file}?v=<that hash> may be cached for a year;
// any other asset request is revalidated by ETag. Clients that accept gzip
// get the page and its assets gzipped (once, at start). /assets/sw.js is the
// service worker that keeps the page for offline reloads; it is answered
// with Service-Worker-Allowed: / so that it may serve the page at /.
// Anything else is 404 in the API's error shape.
package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"path"
	"strings"

	"github.com/valyala/fasthttp"
)

//go:embed index.html app.js editor.js offline.js history.js share.js style.css selftest.js sw.js
var files embed.FS

// asset is one file as served.
type asset struct {
	body        []byte
	contentType string
	etag        string // quoted
	version     string // content hash, the ?v= of the page's links
	// gz is body gzipped once at start, for clients that accept it (the
	// bundle shrinks to a third); nil when that saves nothing. It has its
	// own ETag, as a different representation must.
	gz     []byte
	gzEtag string
}

var (
	index  asset
	assets = map[string]*asset{}
)

func init() {
	for _, name := range []string{"editor.js", "offline.js", "history.js", "share.js", "app.js", "style.css", "selftest.js", "sw.js"} {
		assets[name] = load(name)
	}
	index = *load("index.html")
	// Point the page at the current version of each asset.
	for name, a := range assets {
		ref := []byte(`"/assets/` + name + `"`)
		index.body = bytes.ReplaceAll(index.body, ref, []byte(`"/assets/`+name+`?v=`+a.version+`"`))
	}
	index.etag, index.version = tag(index.body)
	index.compress()
	for _, a := range assets {
		a.compress()
	}
}

func (a *asset) compress() {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		panic("web: " + err.Error())
	}
	_, _ = zw.Write(a.body)
	if err := zw.Close(); err != nil {
		panic("web: " + err.Error())
	}
	if buf.Len() < len(a.body)*9/10 {
		a.gz = buf.Bytes()
		a.gzEtag = `"` + a.version + `-gzip"`
	}
}

func load(name string) *asset {
	body, err := files.ReadFile(name)
	if err != nil {
		panic("web: embedded file missing: " + name)
	}
	a := &asset{body: body, contentType: contentType(name)}
	a.etag, a.version = tag(body)
	return a
}

func tag(body []byte) (etag, version string) {
	sum := sha256.Sum256(body)
	version = hex.EncodeToString(sum[:8])
	return `"` + version + `"`, version
}

func contentType(name string) string {
	switch path.Ext(name) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	}
	return "application/octet-stream"
}

// contentSecurityPolicy allows the page's own scripts, styles and API
// (WebSockets to the same host included) and nothing else.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler serves GET / and GET /assets/{file}.
func Handler() fasthttp.RequestHandler {
	return serve
}

func serve(ctx *fasthttp.RequestCtx) {
	p := string(ctx.Path())
	switch {
	case p == "/":
		ctx.Response.Header.Set("Content-Security-Policy", contentSecurityPolicy)
		ctx.Response.Header.Set("Referrer-Policy", "no-referrer")
		write(ctx, &index, "no-cache")
	case strings.HasPrefix(p, "/assets/"):
		a, ok := assets[strings.TrimPrefix(p, "/assets/")]
		if !ok {
			notFound(ctx, "no such asset: "+p)
			return
		}
		cache := "no-cache"
		if a == assets["sw.js"] {
			ctx.Response.Header.Set("Service-Worker-Allowed", "/")
		} else if string(ctx.QueryArgs().Peek("v")) == a.version {
			cache = "public, max-age=31536000, immutable"
		}
		write(ctx, a, cache)
	default:
		notFound(ctx, "no such page: "+p)
	}
}

func write(ctx *fasthttp.RequestCtx, a *asset, cache string) {
	h := &ctx.Response.Header
	h.Set("Cache-Control", cache)
	h.Set("X-Content-Type-Options", "nosniff")
	h.SetContentType(a.contentType)
	body, etag := a.body, a.etag
	if a.gz != nil {
		h.Set("Vary", "Accept-Encoding")
		if acceptsGzip(string(ctx.Request.Header.Peek("Accept-Encoding"))) {
			body, etag = a.gz, a.gzEtag
			h.Set("Content-Encoding", "gzip")
		}
	}
	h.Set("ETag", etag)
	if match := ctx.Request.Header.Peek("If-None-Match"); len(match) > 0 && etagMatches(string(match), etag) {
		ctx.SetStatusCode(fasthttp.StatusNotModified)
		return
	}
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetBody(body)
}

// acceptsGzip reports whether an Accept-Encoding list allows gzip (by
// name or *, without q=0).
func acceptsGzip(list string) bool {
	for _, item := range strings.Split(list, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(item), ";")
		name = strings.ToLower(strings.TrimSpace(name))
		if name != "gzip" && name != "*" {
			continue
		}
		q := strings.ReplaceAll(strings.ToLower(params), " ", "")
		if q == "q=0" || strings.HasPrefix(q, "q=0.") && strings.Trim(q[4:], "0") == "" {
			return false
		}
		return true
	}
	return false
}

// etagMatches reports whether an If-None-Match list names etag (weak
// comparison, as RFC 9110 asks for If-None-Match).
func etagMatches(list, etag string) bool {
	for _, t := range strings.Split(list, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}

func notFound(ctx *fasthttp.RequestCtx, msg string) {
	body, _ := json.Marshal(map[string]map[string]string{"error": {"code": "not_found", "message": msg}})
	ctx.SetStatusCode(fasthttp.StatusNotFound)
	ctx.SetContentType("application/json")
	ctx.SetBody(body)
}
