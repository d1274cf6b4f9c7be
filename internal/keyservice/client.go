package keyservice

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cmkdb/cmkdb/internal/cpproto"
	"github.com/cmkdb/cmkdb/internal/kms"
)

// Client is a node's connection to the key service. As a kms.Provider it
// wraps and unwraps the node's master key through the control plane, which
// alone holds the KMS credentials; its Check asks for the cluster's key
// verdict.
type Client struct {
	base string
	hc   *http.Client
	// CallTimeout bounds a wrap, unwrap, check or report.
	CallTimeout time.Duration
}

// NewClient connects to the key service at baseURL (https://host:port) with
// a TLS configuration carrying the node's certificate and the control
// plane's CA.
func NewClient(baseURL string, tlsConfig *tls.Config) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("keyservice: %q is not an https URL", baseURL)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsConfig
	return &Client{base: strings.TrimRight(baseURL, "/"), hc: &http.Client{Transport: tr}, CallTimeout: 30 * time.Second}, nil
}

var _ kms.Provider = (*Client)(nil)

// Wrap implements kms.Provider.
func (c *Client) Wrap(ctx context.Context, plaintext, aad []byte) (kms.Wrapped, error) {
	var w kms.Wrapped
	err := c.call(ctx, "wrap", http.MethodPost, "/v1/wrap", wrapRequest{Plaintext: plaintext, AAD: aad}, &w, c.CallTimeout)
	return w, err
}

// Unwrap implements kms.Provider.
func (c *Client) Unwrap(ctx context.Context, w kms.Wrapped, aad []byte) ([]byte, error) {
	var resp unwrapResponse
	if err := c.call(ctx, "unwrap", http.MethodPost, "/v1/unwrap", unwrapRequest{Wrapped: w, AAD: aad}, &resp, c.CallTimeout); err != nil {
		return nil, err
	}
	return resp.Plaintext, nil
}

// Check implements kms.Provider: the control plane's verdict on the
// cluster's key, at once.
func (c *Client) Check(ctx context.Context) kms.Status {
	d, err := c.Directive(ctx, 0, 0)
	if err != nil {
		return kms.StatusFromError(kms.KeyRef{Provider: "controlplane"}, err)
	}
	return DirectiveStatus(d)
}

// DirectiveStatus turns a directive's verdict into a kms.Status.
func DirectiveStatus(d cpproto.Directive) kms.Status {
	st := kms.Status{Key: d.WrapKey, Reason: d.Reason, Detail: d.Detail, CheckedAt: time.Now().UTC()}
	switch d.Validity {
	case kms.Valid.String():
		st.Validity = kms.Valid
	case kms.Invalid.String():
		st.Validity = kms.Invalid
	default:
		st.Validity = kms.Unreachable
		if st.Reason == "" {
			st.Reason = kms.ReasonServerError
		}
	}
	return st
}

// Directive long-polls for a directive newer than after, waiting up to wait.
func (c *Client) Directive(ctx context.Context, after uint64, wait time.Duration) (cpproto.Directive, error) {
	var d cpproto.Directive
	path := fmt.Sprintf("/v1/directive?after=%d&wait=%s", after, wait)
	err := c.call(ctx, "directive", http.MethodGet, path, nil, &d, wait+c.CallTimeout)
	return d, err
}

// Report sends the node's state.
func (c *Client) Report(ctx context.Context, r cpproto.NodeReport) error {
	return c.call(ctx, "report", http.MethodPost, "/v1/report", r, nil, c.CallTimeout)
}

func (c *Client) call(ctx context.Context, op, method, path string, in, out any, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var body io.Reader
	if in != nil {
		js, err := json.Marshal(in)
		if err != nil {
			return err
		}
		defer clear(js)
		body = bytes.NewReader(js)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil && strings.Contains(err.Error(), "remote error: tls:") {
		// The key service refused the node's certificate in the handshake:
		// an answer about the node's credentials, not a network failure.
		return &kms.Error{Op: op, Key: kms.KeyRef{Provider: "controlplane", KeyID: c.base}, Reason: kms.ReasonCredentialsRejected,
			Detail: "the key service refused the node's certificate", Err: stripURL(err)}
	}
	if err != nil {
		return &kms.Error{Op: op, Key: kms.KeyRef{Provider: "controlplane", KeyID: c.base}, Reason: kms.ReasonOf(err),
			Detail: "the control plane's key service did not answer", Err: stripURL(err)}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	defer clear(data)
	if err != nil {
		return &kms.Error{Op: op, Key: kms.KeyRef{Provider: "controlplane", KeyID: c.base}, Reason: kms.ReasonNetwork, Err: err}
	}
	switch {
	case resp.StatusCode/100 == 2:
		if out == nil {
			return nil
		}
		if len(data) == 0 {
			// An empty success is no answer: a proxy or a server giving
			// up on a cancelled request can send one, and taking it as a
			// result would hand back an empty key.
			reason, detail := kms.ReasonServerError, "the key service answered with an empty body"
			if err := ctx.Err(); err != nil {
				reason, detail = kms.ReasonOf(err), "the key service did not answer in time"
			}
			return &kms.Error{Op: op, Key: kms.KeyRef{Provider: "controlplane", KeyID: c.base}, Reason: reason, Detail: detail}
		}
		if err := json.Unmarshal(data, out); err != nil {
			return &kms.Error{Op: op, Key: kms.KeyRef{Provider: "controlplane", KeyID: c.base}, Reason: kms.ReasonServerError,
				Detail: "the key service's answer is not valid JSON", Err: err}
		}
		return nil
	case resp.StatusCode == http.StatusUnprocessableEntity || resp.StatusCode == http.StatusNotFound:
		var eb errorBody
		if json.Unmarshal(data, &eb) != nil || eb.Reason == "" {
			eb.Reason = kms.ReasonServerError
		}
		ke := &kms.Error{Op: op, Key: kms.KeyRef{Provider: "controlplane", KeyID: c.base}, Reason: eb.Reason, Detail: eb.Detail}
		if eb.Decrypt {
			ke.Err = kms.ErrDecrypt
		}
		return ke
	case resp.StatusCode == http.StatusTooManyRequests:
		return &kms.Error{Op: op, Key: kms.KeyRef{Provider: "controlplane", KeyID: c.base}, Reason: kms.ReasonThrottled,
			Detail: "the key service (or a proxy in front of it) is throttling"}
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return &kms.Error{Op: op, Key: kms.KeyRef{Provider: "controlplane", KeyID: c.base}, Reason: kms.ReasonCredentialsRejected,
			Detail: "the key service refused the node's certificate"}
	}
	return &kms.Error{Op: op, Key: kms.KeyRef{Provider: "controlplane", KeyID: c.base}, Reason: kms.ReasonServerError,
		Detail: fmt.Sprintf("the key service answered HTTP %d", resp.StatusCode)}
}

// stripURL keeps the cause of a transport error without its URL.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
