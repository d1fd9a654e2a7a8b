package api

import (
	"strings"

	"github.com/troupe-db/troupe/storage"
)

// What Envoy's rate-limit service (transport/envoy, --grpc-addr) needs of
// this server: the limiter its HTTP checks use (local or global mode),
// and the verification of the bearer tokens its callers show. A policy's
// "envoy" field (storage.EnvoyRule) is read and shown here.

// envoyJSON is a policy's Envoy rule as the API shows and takes it.
type envoyJSON struct {
	Domain      *string          `json:"domain"`
	Descriptors *[]envoyItemJSON `json:"descriptors"`
}

type envoyItemJSON struct {
	Key   *string `json:"key"`
	Value *string `json:"value,omitempty"`
}

func toEnvoyJSON(r *storage.EnvoyRule) *envoyJSON {
	if r == nil {
		return nil
	}
	items := make([]envoyItemJSON, len(r.Descriptors))
	for i := range r.Descriptors {
		e := &r.Descriptors[i]
		items[i].Key = &e.Key
		if e.Value != "" {
			items[i].Value = &e.Value
		}
	}
	return &envoyJSON{Domain: &r.Domain, Descriptors: &items}
}

// rule reads the field into a rule (Policy.Validate checks the rest).
func (j *envoyJSON) rule() (*storage.EnvoyRule, *storage.Error) {
	bad := func(field, msg string) *storage.Error {
		return &storage.Error{Kind: storage.KindBadRequest, Field: field, Message: msg}
	}
	if j.Domain == nil {
		return nil, bad("envoy.domain", `envoy.domain is required: envoy is {"domain", "descriptors":[{"key", "value"?}]}`)
	}
	if j.Descriptors == nil {
		return nil, bad("envoy.descriptors", `envoy.descriptors is required: a list of {"key", "value"?}`)
	}
	r := &storage.EnvoyRule{Domain: *j.Domain, Descriptors: make([]storage.EnvoyEntry, len(*j.Descriptors))}
	for i, it := range *j.Descriptors {
		if it.Key == nil {
			return nil, bad("envoy.descriptors", "every entry of envoy.descriptors needs a key")
		}
		r.Descriptors[i].Key = *it.Key
		if it.Value != nil {
			if *it.Value == "" {
				return nil, bad("envoy.descriptors", "an entry's value must not be empty: omit it to match any value")
			}
			r.Descriptors[i].Value = *it.Value
		}
	}
	return r, nil
}

// RateLimiter is the limiter the rate-limit checks of this server use:
// in global mode, the one that sends each key's decisions to its owner.
// Nil when the server has none.
func (s *Server) RateLimiter() Limiter {
	if s.limiter == nil {
		return nil
	}
	return s.limiter
}

// AuthorizeRateLimitService checks the credentials of a caller of Envoy's
// rate-limit service: authorization is its "Bearer <token>" ("" when it
// sent none). It passes an admin or a service (any caller with
// --insecure); forbidden says the token was good but its user is
// neither.
func (s *Server) AuthorizeRateLimitService(authorization string) (forbidden bool, err error) {
	raw, has := "", authorization != ""
	const prefix = "bearer "
	if len(authorization) > len(prefix) && equalFoldASCII(authorization[:len(prefix)], prefix) {
		raw = strings.TrimSpace(authorization[len(prefix):])
	}
	c, e := s.tokenCaller(raw, has)
	if e != nil {
		if has {
			s.authMetrics.tokenRejected.Inc()
		}
		return false, e
	}
	if c.admin || c.signedIn() && c.role == storage.RoleService {
		return false, nil
	}
	return true, newError("forbidden", "only admins and services may call the rate-limit service")
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
