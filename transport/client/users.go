package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	json "github.com/goccy/go-json"
)

// User is a user as the API shows it (never a password or its hash).
type User struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Email     string    `json:"email"`
	Role      string    `json:"role"` // "user", "admin" or "service"
	Version   uint64    `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Roles a user may have.
const (
	RoleUser  = "user"
	RoleAdmin = "admin"
	// RoleService may check any key of the named rate-limit policies.
	RoleService = "service"
)

// NewUser is the body of a create. Password and Role are optional (Role
// defaults to "user"). PasswordHash, an argon2id PHC string given instead
// of Password, is accepted in batch imports only.
type NewUser struct {
	Name         string `json:"name"`
	Email        string `json:"email"`
	Password     string `json:"password,omitempty"`
	PasswordHash string `json:"password_hash,omitempty"`
	Role         string `json:"role,omitempty"`
}

// UserPatch is the body of a change; nil fields stay as they are.
// CurrentPassword is required when users change their own password.
type UserPatch struct {
	Name            *string `json:"name,omitempty"`
	Email           *string `json:"email,omitempty"`
	Password        *string `json:"password,omitempty"`
	CurrentPassword *string `json:"current_password,omitempty"`
	Role            *string `json:"role,omitempty"`
}

// Consistency is a read's consistency level.
type Consistency string

const (
	// Linearizable reads reflect every write acknowledged before they
	// started (the server's default).
	Linearizable Consistency = "linearizable"
	// Stale reads answer from the node's state without coordination.
	Stale Consistency = "stale"
)

// ReadOptions are the options every read takes. The zero value asks for
// the server's default: a linearizable read.
type ReadOptions struct {
	Consistency Consistency
	// MinIndex makes the node wait until it has applied this log index
	// (a Meta.Index of an earlier write: read your writes).
	MinIndex uint64
}

func (o ReadOptions) encode(q url.Values) {
	if o.Consistency != "" {
		q.Set("consistency", string(o.Consistency))
	}
	if o.MinIndex > 0 {
		q.Set("min_index", strconv.FormatUint(o.MinIndex, 10))
	}
}

// ListOptions select a page of users.
type ListOptions struct {
	Limit int    // 1–1000; 0 means the server's default (50)
	After string // cursor from UserPage.Next; "" starts at the beginning
	Q     string // case-insensitive substring of name or email
	ReadOptions
}

// UserPage is one page of users, ordered by id.
type UserPage struct {
	Items []User
	Next  string // cursor of the next page; "" on the last page
}

// CountOptions select the users to count.
type CountOptions struct {
	Q string // case-insensitive substring of name or email; "" counts all
	ReadOptions
}

// BatchResult is the outcome of one item of a batch create: Status 201
// with User, or a 4xx Status with Error.
type BatchResult struct {
	Status int
	User   *User
	Error  *APIError
}

func withQuery(path string, q url.Values) string {
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}

func userPath(id string) string { return "/v1/users/" + url.PathEscape(id) }

// CreateUser creates a user (POST /v1/users).
func (c *Client) CreateUser(ctx context.Context, u NewUser, opts ...CallOption) (User, Meta, error) {
	var out User
	body, err := json.Marshal(u)
	if err != nil {
		return out, Meta{}, fmt.Errorf("troupe: cannot encode the user: %w", err)
	}
	meta, err := c.call(ctx, http.MethodPost, "/v1/users", body, &out, nil, opts)
	return out, meta, err
}

// GetUser reads a user (GET /v1/users/{id}); Meta.Version is its ETag.
func (c *Client) GetUser(ctx context.Context, id string, ro ReadOptions, opts ...CallOption) (User, Meta, error) {
	var out User
	q := url.Values{}
	ro.encode(q)
	meta, err := c.call(ctx, http.MethodGet, withQuery(userPath(id), q), nil, &out, nil, opts)
	return out, meta, err
}

// PatchUser changes a user (PATCH /v1/users/{id}). With ifMatchVersion
// other than 0 the change applies only if the user is still at that
// version, else the error is 412 (IsPreconditionFailed).
func (c *Client) PatchUser(ctx context.Context, id string, p UserPatch, ifMatchVersion uint64, opts ...CallOption) (User, Meta, error) {
	var out User
	body, err := json.Marshal(p)
	if err != nil {
		return out, Meta{}, fmt.Errorf("troupe: cannot encode the patch: %w", err)
	}
	var headers [][2]string
	if ifMatchVersion != 0 {
		headers = [][2]string{{"If-Match", `"` + strconv.FormatUint(ifMatchVersion, 10) + `"`}}
	}
	meta, err := c.call(ctx, http.MethodPatch, userPath(id), body, &out, headers, opts)
	return out, meta, err
}

// DeleteUser deletes a user (DELETE /v1/users/{id}). A retried delete
// whose first attempt was applied answers as the first did, thanks to
// its Idempotency-Key, not 404.
func (c *Client) DeleteUser(ctx context.Context, id string, opts ...CallOption) (Meta, error) {
	return c.call(ctx, http.MethodDelete, userPath(id), nil, nil, nil, opts)
}

// ListUsers reads one page of users (GET /v1/users).
func (c *Client) ListUsers(ctx context.Context, lo ListOptions, opts ...CallOption) (UserPage, Meta, error) {
	q := url.Values{}
	if lo.Limit != 0 {
		q.Set("limit", strconv.Itoa(lo.Limit))
	}
	if lo.After != "" {
		q.Set("after", lo.After)
	}
	if lo.Q != "" {
		q.Set("q", lo.Q)
	}
	lo.encode(q)
	var out struct {
		Items []User  `json:"items"`
		Next  *string `json:"next"`
	}
	meta, err := c.call(ctx, http.MethodGet, withQuery("/v1/users", q), nil, &out, nil, opts)
	page := UserPage{Items: out.Items}
	if out.Next != nil {
		page.Next = *out.Next
	}
	return page, meta, err
}

// AllUsers calls fn with every user that lo selects, in id order, page
// by page from lo.After, following the cursors. It stops at the first
// error, fn's included, and returns it. Cursors are stable under
// concurrent writes: a user present throughout is visited exactly once.
func (c *Client) AllUsers(ctx context.Context, lo ListOptions, fn func(User) error, opts ...CallOption) error {
	for {
		page, _, err := c.ListUsers(ctx, lo, opts...)
		if err != nil {
			return err
		}
		for _, u := range page.Items {
			if err := fn(u); err != nil {
				return err
			}
		}
		if page.Next == "" {
			return nil
		}
		lo.After = page.Next
	}
}

// CountUsers counts users (GET /v1/users/count).
func (c *Client) CountUsers(ctx context.Context, co CountOptions, opts ...CallOption) (int, Meta, error) {
	q := url.Values{}
	if co.Q != "" {
		q.Set("q", co.Q)
	}
	co.encode(q)
	var out struct {
		Count int `json:"count"`
	}
	meta, err := c.call(ctx, http.MethodGet, withQuery("/v1/users/count", q), nil, &out, nil, opts)
	return out.Count, meta, err
}

// BatchCreateUsers creates up to 1000 users as one log entry (POST
// /v1/users/batch). The answer is 200 even when items fail: each item
// has its own result, in order. Meta.Index is 0 when every item failed
// validation (nothing entered the log).
func (c *Client) BatchCreateUsers(ctx context.Context, users []NewUser, opts ...CallOption) ([]BatchResult, Meta, error) {
	body, err := json.Marshal(struct {
		Users []NewUser `json:"users"`
	}{users})
	if err != nil {
		return nil, Meta{}, fmt.Errorf("troupe: cannot encode the batch: %w", err)
	}
	var out struct {
		Results []struct {
			Status int   `json:"status"`
			User   *User `json:"user"`
			Error  *struct {
				Code    string         `json:"code"`
				Message string         `json:"message"`
				Details map[string]any `json:"details"`
			} `json:"error"`
		} `json:"results"`
	}
	meta, err := c.call(ctx, http.MethodPost, "/v1/users/batch", body, &out, nil, opts)
	if err != nil {
		return nil, meta, err
	}
	results := make([]BatchResult, len(out.Results))
	for i, r := range out.Results {
		results[i] = BatchResult{Status: r.Status, User: r.User}
		if r.Error != nil {
			results[i].Error = &APIError{Status: r.Status, Code: r.Error.Code, Message: r.Error.Message,
				Details: r.Error.Details, Node: meta.Node}
		}
	}
	return results, meta, nil
}
