package systemtest

// Filling in the README's placeholders from earlier outputs, and checking
// an output against what the README says it is (readme_test.go reads
// them). Pure: no processes, no network.

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
)

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
	"<the lease_id from above>":     {regexp.MustCompile(`/v1/ratelimit/check .*"lease_ms"`), "lease_id"},
	"<the share token from above>":  {regexp.MustCompile(`/v1/docs/\$DOC/links -d`), "token"},
	"<the link id from above>":      {regexp.MustCompile(`/v1/docs/\$DOC/links -d`), "id"},
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
// names, with its value, at any depth (an array has the README's length,
// each element checked the same way); a string ending in "..." is a
// prefix, and an exampleField a form.
func checkBody(want string, got []byte) error {
	norm := elided.ReplaceAllString(want, "$1")
	var w, g any
	if err := json.Unmarshal([]byte(norm), &w); err != nil {
		return fmt.Errorf("cannot read the README's body %s: %v", want, err)
	}
	if err := json.Unmarshal(got, &g); err != nil {
		return fmt.Errorf("the output is not JSON: %v: %q", err, got)
	}
	if _, isObj := w.(map[string]any); !isObj {
		if !reflect.DeepEqual(w, g) {
			return fmt.Errorf("got %s, the README says %s", got, want)
		}
		return nil
	}
	if errs := matchJSON("", "", w, g); len(errs) > 0 {
		return fmt.Errorf("body %s: %w", got, errors.Join(errs...))
	}
	return nil
}

// matchJSON checks the value got at path (whose last member name is key)
// against the README's value wv, as checkBody describes.
func matchJSON(path, key string, wv, gv any) []error {
	name := path
	if name == "" {
		name = key
	}
	switch w := wv.(type) {
	case map[string]any:
		gm, ok := gv.(map[string]any)
		if !ok {
			return []error{fmt.Errorf("%q is %s, the README says an object %s", name, jsonText(gv), jsonText(wv))}
		}
		var errs []error
		for k, v := range w {
			sub := k
			if path != "" {
				sub = path + "." + k
			}
			g, ok := gm[k]
			if !ok {
				errs = append(errs, fmt.Errorf("%q is missing", sub))
				continue
			}
			errs = append(errs, matchJSON(sub, k, v, g)...)
		}
		return errs
	case []any:
		ga, ok := gv.([]any)
		if !ok || len(ga) != len(w) {
			return []error{fmt.Errorf("%q is %s, the README says %s", name, jsonText(gv), jsonText(wv))}
		}
		var errs []error
		for i := range w {
			errs = append(errs, matchJSON(fmt.Sprintf("%s[%d]", name, i), key, w[i], ga[i])...)
		}
		return errs
	case string:
		gs, _ := gv.(string)
		if p, isPrefix := strings.CutSuffix(w, "..."); isPrefix {
			if !strings.HasPrefix(gs, p) {
				return []error{fmt.Errorf("%q is %v, the README says it begins %q", name, gv, p)}
			}
			return nil
		}
		if re := exampleFields[key]; re != nil {
			if !re.MatchString(gs) {
				return []error{fmt.Errorf("%q is %v, not of the form of the README's %q (%s)", name, gv, w, re)}
			}
			return nil
		}
	}
	if !reflect.DeepEqual(wv, gv) {
		return []error{fmt.Errorf("%q is %s, the README says %s", name, jsonText(gv), jsonText(wv))}
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
