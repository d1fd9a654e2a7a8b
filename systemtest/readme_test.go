package systemtest

// Reading README.md (and the Makefile's run target) into the commands the
// README tour runs (tour_test.go), and checking an output against what the
// README says it is. Everything here is pure: no processes, no network.
//
// A README ```sh block is read a logical line at a time:
//   - a command, with an optional trailing comment (`cmd   # comment`);
//   - `# → [STATUS] [BODY]` after a command: what that command returns;
//   - `#   headers: Name: value, Name: value` after such a line: headers of
//     that response;
//   - any other `# ...` line: narration, not checked.
// A trailing comment that is a bare status (`# 204`) is an expectation too.
// Values in angle brackets are placeholders: in a command, something the
// reader fills in from an earlier output (tourPlaceholders); in a header,
// something of the same response (expectPlaceholders). One the test does not
// know is an error, so that a README edit cannot slip past the tour.

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// mdLine is one line of a Markdown file with its 1-based number.
type mdLine struct {
	No   int
	Text string
}

// readmeSection returns the lines of the section headed "## title", up to
// the next heading of level 2.
func readmeSection(readme, title string) ([]mdLine, error) {
	var out []mdLine
	in := false
	for i, l := range strings.Split(readme, "\n") {
		if strings.HasPrefix(l, "## ") {
			if in {
				break
			}
			in = strings.TrimSpace(l[3:]) == title
			continue
		}
		if in {
			out = append(out, mdLine{No: i + 1, Text: l})
		}
	}
	if !in {
		return nil, fmt.Errorf("README.md has no section %q", "## "+title)
	}
	return out, nil
}

// shBlocks returns the ```sh blocks of a section, and its prose (every line
// outside a fenced block).
func shBlocks(section []mdLine) (blocks [][]mdLine, prose []mdLine, err error) {
	var cur []mdLine
	fence, isSh := false, false
	for _, l := range section {
		if strings.HasPrefix(l.Text, "```") {
			if !fence {
				fence, isSh, cur = true, strings.TrimSpace(l.Text[3:]) == "sh", nil
			} else {
				if isSh {
					blocks = append(blocks, cur)
				}
				fence = false
			}
			continue
		}
		switch {
		case fence && isSh:
			cur = append(cur, l)
		case !fence:
			prose = append(prose, l)
		}
	}
	if fence {
		return nil, nil, errors.New("a fenced block is not closed")
	}
	return blocks, prose, nil
}

// codeSpans returns the inline code spans of prose lines, in order; a span
// may run over a line break, which reads as a space.
func codeSpans(prose []mdLine) []mdLine {
	var text strings.Builder
	var starts []int // offset in text of each line
	for _, l := range prose {
		starts = append(starts, text.Len())
		text.WriteString(l.Text)
		text.WriteByte('\n')
	}
	var spans []mdLine
	s := text.String()
	for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatchIndex(s, -1) {
		i := 0
		for i+1 < len(starts) && starts[i+1] <= m[0] {
			i++
		}
		spans = append(spans, mdLine{No: prose[i].No, Text: strings.ReplaceAll(s[m[2]:m[3]], "\n", " ")})
	}
	return spans
}

// tourCommand is one command of the README and what it says the command
// returns.
type tourCommand struct {
	Line    int    // README line
	Text    string // the command as written, without its trailing comment
	Comment string // the trailing comment, without "#"
	Expect  *tourExpect
}

// tourExpect is what the README says a command's response is; a zero
// Status or an empty Body means it does not say.
type tourExpect struct {
	Line    int
	Status  int
	Body    string
	Headers [][2]string // name, value as written (placeholders included)
}

var (
	bareStatus = regexp.MustCompile(`^[1-5][0-9][0-9]$`)
	headerName = regexp.MustCompile(`(?:^|, )([A-Za-z][A-Za-z0-9-]*): `)
)

// parseCommands reads a ```sh block's lines into commands.
func parseCommands(block []mdLine) ([]tourCommand, error) {
	var cmds []tourCommand
	for i := 0; i < len(block); i++ {
		l := block[i]
		text := strings.TrimSpace(l.Text)
		for strings.HasSuffix(text, `\`) && i+1 < len(block) { // a continued line
			i++
			text = strings.TrimSpace(strings.TrimSuffix(text, `\`)) + " " + strings.TrimSpace(block[i].Text)
		}
		switch {
		case text == "":
		case strings.HasPrefix(text, "#"):
			c := strings.TrimSpace(text[1:])
			switch {
			case strings.HasPrefix(c, "→"):
				if len(cmds) == 0 {
					return nil, fmt.Errorf("README.md:%d: %q follows no command", l.No, text)
				}
				e, err := parseExpect(l.No, c)
				if err != nil {
					return nil, err
				}
				cmds[len(cmds)-1].Expect = e
			case strings.HasPrefix(c, "headers:"):
				if len(cmds) == 0 || cmds[len(cmds)-1].Expect == nil {
					return nil, fmt.Errorf("README.md:%d: headers follow no \"# →\" line", l.No)
				}
				h, err := parseHeaders(l.No, strings.TrimSpace(strings.TrimPrefix(c, "headers:")))
				if err != nil {
					return nil, err
				}
				e := cmds[len(cmds)-1].Expect
				e.Headers = append(e.Headers, h...)
			}
		default:
			cmd, comment := splitComment(text)
			c := tourCommand{Line: l.No, Text: cmd, Comment: comment}
			switch {
			case bareStatus.MatchString(comment):
				c.Expect = &tourExpect{Line: l.No}
				c.Expect.Status, _ = strconv.Atoi(comment)
			case strings.HasPrefix(comment, "→"):
				e, err := parseExpect(l.No, comment)
				if err != nil {
					return nil, err
				}
				c.Expect = e
			}
			cmds = append(cmds, c)
		}
	}
	return cmds, nil
}

// parseExpect reads "→ [STATUS] [BODY]".
func parseExpect(line int, c string) (*tourExpect, error) {
	rest := strings.TrimSpace(strings.TrimPrefix(c, "→"))
	e := &tourExpect{Line: line}
	if f, after, _ := strings.Cut(rest, " "); bareStatus.MatchString(f) {
		e.Status, _ = strconv.Atoi(f)
		rest = strings.TrimSpace(after)
	}
	if rest != "" && rest[0] != '{' && rest[0] != '[' {
		return nil, fmt.Errorf("README.md:%d: cannot read %q: want \"→ [status] [JSON body]\"", line, c)
	}
	e.Body = rest
	if e.Status == 0 && e.Body == "" {
		return nil, fmt.Errorf("README.md:%d: %q names neither a status nor a body", line, c)
	}
	return e, nil
}

// parseHeaders reads "Name: value, Name: value".
func parseHeaders(line int, s string) ([][2]string, error) {
	idx := headerName.FindAllStringSubmatchIndex(s, -1)
	if len(idx) == 0 || idx[0][0] != 0 {
		return nil, fmt.Errorf("README.md:%d: cannot read headers %q: want \"Name: value, ...\"", line, s)
	}
	var out [][2]string
	for i, m := range idx {
		end := len(s)
		if i+1 < len(idx) {
			end = idx[i+1][0]
		}
		out = append(out, [2]string{s[m[2]:m[3]], strings.TrimSpace(s[m[1]:end])})
	}
	return out, nil
}

// splitComment splits a shell line at its first unquoted "#" that begins a
// word.
func splitComment(line string) (cmd, comment string) {
	var quote byte
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote == '\'':
			if c == '\'' {
				quote = 0
			}
		case c == '\\':
			i++
		case quote == '"':
			if c == '"' {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '#' && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t'):
			return strings.TrimSpace(line[:i]), strings.TrimSpace(line[i+1:])
		}
	}
	return strings.TrimSpace(line), ""
}

// shellWords splits a command without expansions into words, honouring
// quotes; a command that needs the shell (variables, substitutions,
// redirections, pipes) is an error: the test cannot run it as a process.
func shellWords(cmd string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	var quote byte
	for i := 0; i < len(cmd); i++ {
		c := cmd[i]
		switch {
		case quote == '\'':
			if c == '\'' {
				quote = 0
			} else {
				w.WriteByte(c)
			}
		case quote == '"' && c == '"':
			quote = 0
		case c == '$' || c == '`' || (quote == 0 && strings.IndexByte(";|&<>()\\", c) >= 0):
			return nil, fmt.Errorf("%q: %q needs a shell; the test runs this command as a process", cmd, c)
		case quote == '"':
			w.WriteByte(c)
		case c == '\'' || c == '"':
			quote, inWord = c, true
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("%q: unbalanced quote", cmd)
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

// placeholderSource says where the README's reader finds a placeholder's
// value: field Field of the JSON output of the latest earlier command whose
// README text matches From.
type placeholderSource struct {
	From  *regexp.Regexp
	Field string
}

// tourPlaceholders are the placeholders the README's commands hold.
var tourPlaceholders = map[string]placeholderSource{
	"<the access_token from above>": {regexp.MustCompile(`/v1/auth/login `), "access_token"},
	"<the id from above>":           {regexp.MustCompile(`-XPOST \S+/v1/users `), "id"},
	"<Ada's token>":                 {regexp.MustCompile(`/v1/auth/login .*"ada@example\.com"`), "access_token"},
	"<Ada's refresh token>":         {regexp.MustCompile(`/v1/auth/login .*"ada@example\.com"`), "refresh_token"},
}

// placeholder finds <words> in a command; a "<" followed by a space (a
// redirection) is not one.
var placeholder = regexp.MustCompile(`<[A-Za-z][^<>]*>`)

// safeValue is what a placeholder's value may hold to be pasted into a
// command without quoting (tokens, ids).
var safeValue = regexp.MustCompile(`^[A-Za-z0-9._~+/=-]+$`)

// tourOutput is a command already run: its README text and its output.
type tourOutput struct {
	Readme string
	Out    []byte
}

// fillPlaceholders replaces each placeholder of cmd with its value from the
// earlier outputs (latest first).
func fillPlaceholders(cmd string, earlier []tourOutput) (string, error) {
	var err error
	filled := placeholder.ReplaceAllStringFunc(cmd, func(p string) string {
		src, ok := tourPlaceholders[p]
		if !ok {
			err = errors.Join(err, fmt.Errorf("unknown placeholder %s: teach tourPlaceholders where its value comes from", p))
			return p
		}
		for i := len(earlier) - 1; i >= 0; i-- {
			if !src.From.MatchString(earlier[i].Readme) {
				continue
			}
			var fields map[string]any
			if e := json.Unmarshal(earlier[i].Out, &fields); e != nil {
				err = errors.Join(err, fmt.Errorf("%s: the output of %q is not a JSON object: %v", p, earlier[i].Readme, e))
				return p
			}
			v, _ := fields[src.Field].(string)
			if !safeValue.MatchString(v) {
				err = errors.Join(err, fmt.Errorf("%s: field %q of the output of %q is %q", p, src.Field, earlier[i].Readme, v))
				return p
			}
			return v
		}
		err = errors.Join(err, fmt.Errorf("%s: no earlier command matches %s", p, src.From))
		return p
	})
	return filled, err
}

// exampleFields are fields whose value the README shows as an example of
// a generated one: the output must have the same form, not the same value.
var exampleFields = map[string]*regexp.Regexp{
	"id": regexp.MustCompile(`^[0-9a-v]{16}$`),
}

// expectPlaceholders are the placeholders of expected headers: a pattern,
// given the response's body.
var expectPlaceholders = map[string]func(body map[string]any) string{
	"<id>": func(body map[string]any) string {
		id, _ := body["id"].(string)
		return regexp.QuoteMeta(id)
	},
	"<raft log index>": func(map[string]any) string { return `[1-9][0-9]*` },
}

// elided is "...", standing for further members of an object or array.
var elided = regexp.MustCompile(`,\s*\.\.\.\s*([,}\]])`)

// checkBody checks got against the README's body: each member the README
// names, with its value; a string ending in "..." is a prefix, and an
// exampleField a form.
func checkBody(want string, got []byte) error {
	norm := elided.ReplaceAllString(want, "$1")
	var w, g any
	if err := json.Unmarshal([]byte(norm), &w); err != nil {
		return fmt.Errorf("cannot read the README's body %s: %v", want, err)
	}
	if err := json.Unmarshal(got, &g); err != nil {
		return fmt.Errorf("the output is not JSON: %v: %q", err, got)
	}
	wo, isObj := w.(map[string]any)
	if !isObj {
		if !reflect.DeepEqual(w, g) {
			return fmt.Errorf("got %s, the README says %s", got, want)
		}
		return nil
	}
	gm, ok := g.(map[string]any)
	if !ok {
		return fmt.Errorf("got %s, the README says an object %s", got, want)
	}
	var errs []error
	for k, wv := range wo {
		gv, ok := gm[k]
		if !ok {
			errs = append(errs, fmt.Errorf("%q is missing", k))
			continue
		}
		if ws, ok := wv.(string); ok {
			gs, _ := gv.(string)
			if p, isPrefix := strings.CutSuffix(ws, "..."); isPrefix {
				if !strings.HasPrefix(gs, p) {
					errs = append(errs, fmt.Errorf("%q is %v, the README says it begins %q", k, gv, p))
				}
				continue
			}
			if re := exampleFields[k]; re != nil {
				if !re.MatchString(gs) {
					errs = append(errs, fmt.Errorf("%q is %v, not of the form of the README's %q (%s)", k, gv, ws, re))
				}
				continue
			}
		}
		if !reflect.DeepEqual(wv, gv) {
			errs = append(errs, fmt.Errorf("%q is %s, the README says %s", k, jsonText(gv), jsonText(wv)))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("body %s: %w", got, errors.Join(errs...))
	}
	return nil
}

// headerPattern turns a header value as the README writes it into a
// regular expression over the real one, its placeholders filled in from
// the response's body.
func headerPattern(value string, body []byte) (*regexp.Regexp, error) {
	var fields map[string]any
	_ = json.Unmarshal(body, &fields)
	var err error
	var b strings.Builder
	last := 0
	for _, m := range placeholder.FindAllStringIndex(value, -1) {
		b.WriteString(regexp.QuoteMeta(value[last:m[0]]))
		p := value[m[0]:m[1]]
		f, ok := expectPlaceholders[p]
		if !ok {
			err = errors.Join(err, fmt.Errorf("unknown placeholder %s in header value %q: teach expectPlaceholders what it stands for", p, value))
			continue
		}
		b.WriteString(f(fields))
		last = m[1]
	}
	b.WriteString(regexp.QuoteMeta(value[last:]))
	if err != nil {
		return nil, err
	}
	return regexp.Compile("^" + b.String() + "$")
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// makeRecipe returns the command line of a Makefile target with exactly
// one recipe line, its $(VAR)s expanded from the Makefile's own
// assignments.
func makeRecipe(makefile, target string) (string, error) {
	vars := map[string]string{}
	assign := regexp.MustCompile(`^([A-Z_]+)\s*[:?]?=\s*(.*)$`)
	var recipe []string
	in := false
	for _, l := range strings.Split(makefile, "\n") {
		if m := assign.FindStringSubmatch(l); m != nil {
			vars[m[1]] = strings.TrimSpace(m[2])
		}
		switch {
		case strings.HasPrefix(l, target+":"):
			in = true
		case in && strings.HasPrefix(l, "\t"):
			recipe = append(recipe, strings.TrimSpace(l))
		default:
			in = false
		}
	}
	if len(recipe) != 1 {
		return "", fmt.Errorf("the Makefile's %s target has %d recipe lines, want one: %q", target, len(recipe), recipe)
	}
	line := regexp.MustCompile(`\$\(([A-Z_]+)\)`).ReplaceAllStringFunc(recipe[0], func(v string) string {
		if val, ok := vars[v[2:len(v)-1]]; ok {
			return val
		}
		return v
	})
	if strings.Contains(line, "$") {
		return "", fmt.Errorf("the Makefile's %s recipe %q has a variable the test cannot expand", target, line)
	}
	return line, nil
}

// configDefault returns the default of a flag in README.md's
// configuration table (the row "| `--flag` | `default` | ...").
func configDefault(readme, flag string) (string, error) {
	m := regexp.MustCompile("(?m)^\\| `" + regexp.QuoteMeta(flag) + "` \\| `([^`]+)` \\|").FindStringSubmatch(readme)
	if m == nil {
		return "", fmt.Errorf("README.md's configuration table has no default for %s", flag)
	}
	return m[1], nil
}

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
