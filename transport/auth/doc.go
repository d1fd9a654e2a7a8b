// Package auth holds the credentials a node checks before a request
// reaches its handler: access tokens (JWTs signed with the cluster's
// replicated keys) and refresh tokens, the proof that marks a request
// forwarded by a member, password hashing with bounded concurrency, and
// the throttle on failed logins. It knows nothing of HTTP: package api
// reads the credentials from requests and maps these errors to codes.
package auth
