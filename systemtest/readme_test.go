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
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
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
