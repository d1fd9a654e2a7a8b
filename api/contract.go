package api

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// Validator checks HTTP exchanges against openapi.yaml. The server under test
// is fasthttp, so callers pass the raw pieces of a request and its response.
// A Validator is safe for concurrent use.
type Validator struct {
	doc    *openapi3.T
	router routers.Router
}

// NewValidator loads and validates the document and builds its router.
func NewValidator() (*Validator, error) {
	doc, err := Load()
	if err != nil {
		return nil, err
	}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("api: build router: %w", err)
	}
	return &Validator{doc: doc, router: router}, nil
}

// Doc returns the validated document. Do not modify it.
func (v *Validator) Doc() *openapi3.T { return v.doc }

// ValidateRequest checks a request against its operation: path, query and
// header parameters and the body. Security requirements are not checked.
// path is the request path; rawQuery the query string without '?' (if it is
// empty and path contains '?', the query is taken from path). A non-empty
// body without a Content-Type header is taken as application/json.
func (v *Validator) ValidateRequest(method, path, rawQuery string, reqHeader http.Header, reqBody []byte) error {
	in, err := v.requestInput(method, path, rawQuery, reqHeader, reqBody)
	if err != nil {
		return err
	}
	return v.validateRequest(in)
}

// ValidateResponse checks the request (as ValidateRequest does) and then the
// response: its status must be documented for the operation, documented
// headers must be present when required and match their schemas, and the body
// must have a documented Content-Type and match its schema (a response
// documented without content must have an empty body).
func (v *Validator) ValidateResponse(method, path, rawQuery string, reqHeader http.Header, reqBody []byte,
	status int, respHeader http.Header, respBody []byte) error {
	in, err := v.requestInput(method, path, rawQuery, reqHeader, reqBody)
	if err != nil {
		return err
	}
	if err := v.validateRequest(in); err != nil {
		return err
	}
	return v.validateResponse(in, status, respHeader, respBody)
}

// ValidateResponseOnly is ValidateResponse without validating the request,
// for requests that are deliberately wrong (unknown fields, bad values). The
// route must still exist in the document.
func (v *Validator) ValidateResponseOnly(method, path, rawQuery string, reqHeader http.Header, reqBody []byte,
	status int, respHeader http.Header, respBody []byte) error {
	in, err := v.requestInput(method, path, rawQuery, reqHeader, reqBody)
	if err != nil {
		return err
	}
	return v.validateResponse(in, status, respHeader, respBody)
}

func (v *Validator) requestInput(method, path, rawQuery string, reqHeader http.Header, reqBody []byte) (*openapi3filter.RequestValidationInput, error) {
	if rawQuery == "" {
		if i := strings.IndexByte(path, '?'); i >= 0 {
			path, rawQuery = path[:i], path[i+1:]
		}
	}
	target := path
	if rawQuery != "" {
		target += "?" + rawQuery
	}
	method = strings.ToUpper(method)
	req, err := http.NewRequestWithContext(context.Background(), method, target, bytes.NewReader(reqBody))
	if err != nil {
		return nil, fmt.Errorf("api: %s %s: bad request target: %w", method, target, err)
	}
	req.Header = reqHeader.Clone()
	if req.Header == nil {
		req.Header = http.Header{}
	}
	if len(reqBody) > 0 && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	route, pathParams, err := v.router.FindRoute(req)
	if err != nil {
		return nil, fmt.Errorf("api: %s %s: no such operation in openapi.yaml: %w", method, path, err)
	}
	return &openapi3filter.RequestValidationInput{
		Request:    req,
		PathParams: pathParams,
		Route:      route,
		Options: &openapi3filter.Options{
			AuthenticationFunc:  openapi3filter.NoopAuthenticationFunc,
			SkipSettingDefaults: true,
			MultiError:          true,
			// Keep messages short: no schema and value dumps.
			SchemaValidationOptions: []openapi3.SchemaValidationOption{openapi3.DisableSchemaErrorDetails()},
		},
	}, nil
}

func (v *Validator) validateRequest(in *openapi3filter.RequestValidationInput) error {
	if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
		return fmt.Errorf("api: %s %s: request does not match openapi.yaml: %w",
			in.Request.Method, in.Request.URL.Path, err)
	}
	return nil
}

func (v *Validator) validateResponse(in *openapi3filter.RequestValidationInput, status int, respHeader http.Header, respBody []byte) error {
	where := fmt.Sprintf("api: %s %s -> %d", in.Request.Method, in.Request.URL.Path, status)
	responses := in.Route.Operation.Responses
	ref := responses.Status(status)
	if ref == nil {
		ref = responses.Default()
	}
	// openapi3filter lets a few statuses (304, 301, 307, 308) through
	// unchecked; the contract documents every status.
	if ref == nil || ref.Value == nil {
		return fmt.Errorf("%s: status not documented in openapi.yaml", where)
	}
	if len(ref.Value.Content) == 0 && len(respBody) > 0 {
		return fmt.Errorf("%s: response documented without a body has %d body bytes", where, len(respBody))
	}
	if respHeader == nil {
		respHeader = http.Header{}
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 status,
		Header:                 respHeader,
		Options: &openapi3filter.Options{
			IncludeResponseStatus:   true,
			MultiError:              true,
			SchemaValidationOptions: []openapi3.SchemaValidationOption{openapi3.DisableSchemaErrorDetails()},
		},
	}
	out.SetBodyBytes(respBody)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		return fmt.Errorf("%s: response does not match openapi.yaml: %w", where, err)
	}
	return nil
}
