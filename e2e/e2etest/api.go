package e2etest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/mongodb-forks/digest"
	"go.mongodb.org/atlas/mongodbatlas"
)

// API is a client of a running control plane's admin API, authenticated
// with an API key over HTTP Digest as any Atlas client is.
type API struct {
	URL string
	hc  *http.Client
}

// NewAPI returns a client for the admin API at url.
func NewAPI(url, publicKey, privateKey string) *API {
	return &API{URL: strings.TrimRight(url, "/"), hc: &http.Client{Transport: digest.NewTransport(publicKey, privateKey)}}
}

// UpAPI is the API of a `cmkdb up`, with the key from its up.json.
func (s *Server) UpAPI() *API {
	return NewAPI(s.Info.APIURL, s.Info.APIPublicKey, s.Info.APIPrivateKey)
}

// Atlas returns the official Atlas Go client for the same API.
func (a *API) Atlas(t testing.TB) *mongodbatlas.Client {
	t.Helper()
	c, err := mongodbatlas.New(a.hc, mongodbatlas.SetBaseURL(a.URL+"/"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Do sends a request to /api/atlas/v2+path and returns the status and body.
func (a *API) Do(method, path string, body any) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		js, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		r = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, a.URL+"/api/atlas/v2"+path, r)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/vnd.atlas.2023-01-01+json")
	resp, err := a.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

// Call is Do that fails the test unless the status is 2xx, and decodes the
// answer into out (when not nil).
func (a *API) Call(t testing.TB, method, path string, body, out any) {
	t.Helper()
	if err := a.CallErr(method, path, body, out); err != nil {
		t.Fatal(err)
	}
}

// CallErr is Call returning the failure.
func (a *API) CallErr(method, path string, body, out any) error {
	status, data, err := a.Do(method, path, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if status/100 != 2 {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, status, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: decoding %s: %w", method, path, data, err)
		}
	}
	return nil
}
