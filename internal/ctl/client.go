package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mongodb-forks/digest"
)

const (
	// apiPrefix is the version of the admin API ctl speaks.
	apiPrefix = "/api/atlas/v2"
	// mediaType pins the v2 resource version, as Atlas clients do.
	mediaType = "application/vnd.atlas.2023-01-01+json"
	// maxResponse bounds an answer; the largest list page is far below it.
	maxResponse = 32 << 20
	// pageSize is Atlas's largest itemsPerPage.
	pageSize = 500
	// requestTimeout covers a key check, which the server bounds at 30s.
	requestTimeout = 90 * time.Second
)

// Client is an admin API client authenticated with an API key.
type Client struct {
	root      string // scheme://host[:port], for messages
	base      string // root + apiPrefix
	publicKey string
	http      *http.Client
}

// NewClient returns a client of the admin API at apiURL ("http://host:port",
// with or without the /api/atlas/v2 prefix) using HTTP Digest over base.
func NewClient(apiURL, publicKey, privateKey string, base http.RoundTripper) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(apiURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("API URL %q is not an http(s) URL", apiURL)
	}
	if u.User != nil {
		return nil, errors.New("the API URL must not carry credentials; use --public-key and --private-key-file")
	}
	root := u.Scheme + "://" + u.Host
	path := strings.TrimSuffix(u.Path, "/")
	for _, p := range []string{"/api/atlas/v2", "/api/atlas/v1.0"} {
		path = strings.TrimSuffix(path, p)
	}
	if base == nil {
		base = http.DefaultTransport
	}
	return &Client{
		root:      root + path,
		base:      root + path + apiPrefix,
		publicKey: publicKey,
		http:      &http.Client{Transport: digest.NewTransportWithHTTPRoundTripper(publicKey, privateKey, base), Timeout: requestTimeout},
	}, nil
}

// Do sends one request. path is relative to the version prefix and already
// escaped; in (if not nil) is sent as JSON; out (if not nil) receives the
// answer. An answer of 400 or more is returned as an *APIError.
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encoding the request: %w", err)
		}
		// A bytes.Reader lets the digest transport replay the body after
		// the challenge.
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return fmt.Errorf("building the request: %w", err)
	}
	req.Header.Set("Accept", mediaType)
	if in != nil {
		req.Header.Set("Content-Type", mediaType)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the admin API at %s (is the control plane running?): %w", c.root, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("reading the answer to %s %s: %w", method, path, err)
	}
	if res.StatusCode >= 400 {
		return c.apiError(res, b)
	}
	if out == nil || res.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decoding the answer to %s %s: %w", method, path, err)
	}
	return nil
}

// apiError decodes Atlas's error envelope; an answer that is not one (a
// proxy's HTML page) still becomes an APIError, named by its status.
func (c *Client) apiError(res *http.Response, b []byte) *APIError {
	e := &APIError{}
	if json.Unmarshal(b, e) != nil || (e.ErrorCode == "" && e.Detail == "") {
		e = &APIError{Detail: strings.TrimSpace(string(b))}
		if len(e.Detail) > 200 {
			e.Detail = e.Detail[:200] + "…"
		}
	}
	e.Status = res.StatusCode
	if e.Reason == "" {
		e.Reason = http.StatusText(res.StatusCode)
	}
	if e.ErrorCode == "" {
		e.ErrorCode = "HTTP_" + strconv.Itoa(res.StatusCode)
	}
	e.api, e.publicKey = c.root, c.publicKey
	return e
}

// page is Atlas's list envelope.
type page struct {
	Results    []json.RawMessage `json:"results"`
	TotalCount *int              `json:"totalCount"`
	Links      []struct {
		Rel string `json:"rel"`
	} `json:"links"`
}

// List fetches a paginated list, page after page, until the API names no
// next page or limit results (0: no limit) are in.
func (c *Client) List(ctx context.Context, path string, query url.Values, limit int) ([]json.RawMessage, error) {
	q := url.Values{}
	for k, v := range query {
		q[k] = v
	}
	per := pageSize
	if limit > 0 && limit < per {
		per = limit
	}
	q.Set("itemsPerPage", strconv.Itoa(per))
	out := []json.RawMessage{}
	// The page bound only stops a server that always names a next page.
	for n := 1; n <= 10000; n++ {
		q.Set("pageNum", strconv.Itoa(n))
		var p page
		if err := c.Do(ctx, http.MethodGet, path, q, nil, &p); err != nil {
			return nil, err
		}
		out = append(out, p.Results...)
		if limit > 0 && len(out) >= limit {
			return out[:limit], nil
		}
		if len(p.Results) == 0 || !hasNext(p) {
			return out, nil
		}
	}
	return out, nil
}

func hasNext(p page) bool {
	for _, l := range p.Links {
		if l.Rel == "next" {
			return true
		}
	}
	return false
}

// seg escapes one path segment (a cluster or project name).
func seg(s string) string { return url.PathEscape(s) }
