package systemtest

import (
	"reflect"
	"strings"
	"testing"
)

// TestReadmeParsing checks the reading of README text on its own: what
// is a command, a comment, an expectation, a placeholder, and what fails.
func TestReadmeParsing(t *testing.T) {
	t.Parallel()
	block := func(lines ...string) []mdLine {
		var b []mdLine
		for i, l := range lines {
			b = append(b, mdLine{No: 10 + i, Text: l})
		}
		return b
	}
	cmds, err := parseCommands(block(
		"# narration, not checked",
		`curl -s -d '{"a":"# not a comment"}' x   # → 201 {"id":"06h0l2qie400001i","token":"rt....",...}`,
		`#   headers: Location: /v1/users/<id>, ETag: "1", X-Troupe-Index: <raft log index>`,
		`curl -s -XDELETE -i x   # 204`,
		`curl -s x/ops \`,
		`  -d '{}'`,
		`# → {"version":1}`,
		`curl -s x   # 412 if it changed meanwhile`,
	))
	if err != nil {
		t.Fatal(err)
	}
	if len(cmds) != 4 {
		t.Fatalf("%d commands: %+v", len(cmds), cmds)
	}
	if c := cmds[0]; c.Line != 11 || c.Text != `curl -s -d '{"a":"# not a comment"}' x` || c.Expect == nil || c.Expect.Status != 201 ||
		c.Expect.Body != `{"id":"06h0l2qie400001i","token":"rt....",...}` ||
		!reflect.DeepEqual(c.Expect.Headers, [][2]string{{"Location", "/v1/users/<id>"}, {"ETag", `"1"`}, {"X-Troupe-Index", "<raft log index>"}}) {
		t.Fatalf("first command: %+v %+v", c, c.Expect)
	}
	if c := cmds[1]; c.Expect == nil || c.Expect.Status != 204 || c.Expect.Body != "" {
		t.Fatalf("a bare status: %+v", c)
	}
	if c := cmds[2]; c.Text != `curl -s x/ops -d '{}'` || c.Expect == nil || c.Expect.Status != 0 || c.Expect.Body != `{"version":1}` {
		t.Fatalf("a continued line: %+v %+v", c, c.Expect)
	}
	if c := cmds[3]; c.Expect != nil || c.Comment != "412 if it changed meanwhile" {
		t.Fatalf("a comment that only mentions a status: %+v", c)
	}
	for _, bad := range [][]string{
		{"# → 200 {}"},                     // follows no command
		{"curl x", "# → a fine answer"},    // neither status nor body
		{"curl x", "#   headers: nothing"}, // no expectation before, and no header
	} {
		if _, err := parseCommands(block(bad...)); err == nil {
			t.Errorf("%q was read without an error", bad)
		}
	}

	// Bodies: named members only; "..." a prefix; an example id a form.
	want := cmds[0].Expect.Body
	for got, ok := range map[string]bool{
		`{"id":"06h4raug3s00001i","token":"rt.abc","more":1}`: true,
		`{"id":"06h4raug3s00001i","token":"xx.abc"}`:          false,
		`{"id":"06h4-not-an-id","token":"rt.abc"}`:            false,
		`{"token":"rt.abc"}`:                                  false,
		`not json`:                                            false,
	} {
		if err := checkBody(want, []byte(got)); (err == nil) != ok {
			t.Errorf("checkBody(%s, %s): %v", want, got, err)
		}
	}
	if err := checkBody(`{"version":1,"ops":[{"op":"insert","pos":5}]}`, []byte(`{"version":1,"ops":[{"op":"insert","pos":6}]}`)); err == nil {
		t.Error("a different nested value passed")
	}
	re, err := headerPattern("/v1/users/<id>", []byte(`{"id":"06h4raug3s00001i"}`))
	if err != nil || !re.MatchString("/v1/users/06h4raug3s00001i") || re.MatchString("/v1/users/06h4raug3s00001j") {
		t.Errorf("headerPattern: %v %v", re, err)
	}
	if _, err := headerPattern("<the etag>", nil); err == nil {
		t.Error("an unknown header placeholder passed")
	}

	// Placeholders: the latest matching output; an unknown one fails.
	earlier := []tourOutput{
		{Readme: `curl -s x/v1/auth/login -d '{"email":"admin@troupe.local"}'`, Out: []byte(`{"access_token":"admin.tok"}`)},
		{Readme: `curl -s x/v1/auth/login -d '{"email":"ada@example.com"}'`, Out: []byte(`{"access_token":"ada.tok","refresh_token":"rt.1"}`)},
	}
	if got, err := fillPlaceholders(`TOKEN=<the access_token from above>`, earlier[:1]); err != nil || got != `TOKEN=admin.tok` {
		t.Errorf("filled %q: %v", got, err)
	}
	if got, err := fillPlaceholders(`-H "Bearer <Ada's token>" <Ada's refresh token>`, earlier); err != nil || got != `-H "Bearer ada.tok" rt.1` {
		t.Errorf("filled %q: %v", got, err)
	}
	if _, err := fillPlaceholders(`ID=<a new placeholder>`, earlier); err == nil || !strings.Contains(err.Error(), "unknown placeholder <a new placeholder>") {
		t.Errorf("an unknown placeholder: %v", err)
	}
	if _, err := fillPlaceholders(`<Ada's token>`, earlier[:1]); err == nil {
		t.Error("a placeholder with no earlier output was filled")
	}
	if got, err := fillPlaceholders(`cat < in > out`, nil); err != nil || got != `cat < in > out` {
		t.Errorf("a redirection read as a placeholder: %q %v", got, err)
	}

	if w, err := shellWords(`bin/troupe serve --data "a b" --x='y'`); err != nil || !reflect.DeepEqual(w, []string{"bin/troupe", "serve", "--data", "a b", "--x=y"}) {
		t.Errorf("shellWords: %q %v", w, err)
	}
	if _, err := shellWords(`bin/troupe serve --data $DIR`); err == nil {
		t.Error("shellWords took a variable")
	}

	mk := "BIN     := bin/troupe\n\nrun: build\n\t./$(BIN) serve --data ./troupe-data\n\nbuild:\n\tgo build\n"
	if line, err := makeRecipe(mk, "run"); err != nil || line != "./bin/troupe serve --data ./troupe-data" {
		t.Errorf("makeRecipe: %q %v", line, err)
	}
	if _, err := makeRecipe(mk+"two:\n\ta\n\tb\n", "two"); err == nil {
		t.Error("a recipe of two lines was taken")
	}
}
