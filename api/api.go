// Package api holds troupe's public HTTP contract in machine-readable form
// (openapi.yaml, OpenAPI 3.0.3) and a validator that checks recorded
// exchanges against it, for tests of any package.
package api

import (
	_ "embed"
	"fmt"

	"github.com/getkin/kin-openapi/openapi3"
)

//go:embed openapi.yaml
var spec []byte

// Spec returns a copy of the OpenAPI document (YAML).
func Spec() []byte {
	return append([]byte(nil), spec...)
}

// Load parses the OpenAPI document and validates it. Each call returns a new
// *openapi3.T that the caller may modify.
func Load() (*openapi3.T, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(spec)
	if err != nil {
		return nil, fmt.Errorf("api: parse openapi.yaml: %w", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("api: invalid openapi.yaml: %w", err)
	}
	return doc, nil
}
