package storage

import (
	"net/url"
	"strings"
)

// A policy may serve Envoy's rate-limit service (transport/envoy): it
// declares a domain and the keys (and, optionally, values) of the
// descriptor entries it limits. A request's descriptor whose entries
// carry exactly those keys, in that order, with the given values where
// a value is given, is decided by the policy; the entries' values form
// the bucket key (EnvoyRule.Key).

// EnvoyRule binds a policy to Envoy descriptors of one domain.
type EnvoyRule struct {
	Domain      string
	Descriptors []EnvoyEntry
}

// EnvoyEntry is one descriptor entry a rule matches: its key, and its
// value when Value is not "" (any value otherwise).
type EnvoyEntry struct {
	Key, Value string
}

// Envoy rule limits.
const (
	MaxEnvoyDomain  = 255
	MaxEnvoyEntries = 8
	MaxEnvoyString  = 255
	// MaxEnvoyKey bounds a bucket key made of a descriptor's values (as
	// the HTTP API bounds a key).
	MaxEnvoyKey = 512
)

// validate checks a rule; its errors name the field under "envoy.".
func (r *EnvoyRule) validate(alg Algorithm) *Error {
	if alg == Concurrency {
		return badRequest("envoy", "envoy applies to gcra, sliding_window and fixed_window policies: Envoy never releases a concurrency lease")
	}
	if r.Domain == "" || len(r.Domain) > MaxEnvoyDomain || !envoyText(r.Domain) {
		return badRequest("envoy.domain", "envoy.domain must be 1 to %d printable characters", MaxEnvoyDomain)
	}
	if len(r.Descriptors) < 1 || len(r.Descriptors) > MaxEnvoyEntries {
		return badRequest("envoy.descriptors", "envoy.descriptors must hold 1 to %d entries, each {\"key\", \"value\"?}", MaxEnvoyEntries)
	}
	for _, e := range r.Descriptors {
		if e.Key == "" || len(e.Key) > MaxEnvoyString || !envoyText(e.Key) {
			return badRequest("envoy.descriptors", "an entry's key must be 1 to %d printable characters", MaxEnvoyString)
		}
		if len(e.Value) > MaxEnvoyString || !envoyText(e.Value) {
			return badRequest("envoy.descriptors", "an entry's value must be at most %d printable characters (omit it to match any value)", MaxEnvoyString)
		}
	}
	return nil
}

// envoyText reports whether s holds printable ASCII only.
func envoyText(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// EnvoyPair is one entry of an incoming descriptor.
type EnvoyPair struct {
	Key, Value string
}

// Match reports whether the rule matches a descriptor's entries, and
// how specifically: the number of values the rule fixes (a rule that
// fixes more values is preferred over one that matches any value).
func (r *EnvoyRule) Match(entries []EnvoyPair) (specificity int, ok bool) {
	if len(entries) != len(r.Descriptors) {
		return 0, false
	}
	for i, e := range r.Descriptors {
		if entries[i].Key != e.Key {
			return 0, false
		}
		if e.Value != "" {
			if entries[i].Value != e.Value {
				return 0, false
			}
			specificity++
		}
	}
	return specificity, true
}

// EnvoyKey is the bucket key of a descriptor's entries: their values,
// each path-escaped (so "/" cannot occur in one), joined by "/". It is
// "" when the key would exceed MaxEnvoyKey bytes or a value is empty.
func EnvoyKey(entries []EnvoyPair) string {
	var b strings.Builder
	for i, e := range entries {
		if e.Value == "" {
			return ""
		}
		if i > 0 {
			b.WriteByte('/')
		}
		b.WriteString(url.PathEscape(e.Value))
		if b.Len() > MaxEnvoyKey {
			return ""
		}
	}
	return b.String()
}

func (e *encoder) envoyRule(r *EnvoyRule) {
	e.boolean(r != nil)
	if r == nil {
		return
	}
	e.str(r.Domain)
	e.uvarint(uint64(len(r.Descriptors)))
	for _, d := range r.Descriptors {
		e.str(d.Key)
		e.str(d.Value)
	}
}

func (d *decoder) envoyRule() *EnvoyRule {
	if !d.boolean() || d.err != nil {
		return nil
	}
	r := &EnvoyRule{Domain: d.str()}
	n := d.count(2)
	if d.err == nil && (n < 1 || n > MaxEnvoyEntries) {
		d.fail("%d envoy descriptor entries", n)
	}
	if d.err != nil {
		return nil
	}
	r.Descriptors = make([]EnvoyEntry, n)
	for i := range r.Descriptors {
		r.Descriptors[i] = EnvoyEntry{Key: d.str(), Value: d.str()}
	}
	if d.err == nil && (len(r.Domain) > MaxEnvoyDomain) {
		d.fail("envoy domain of %d bytes", len(r.Domain))
	}
	return r
}
