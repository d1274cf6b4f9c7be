package ctl_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cmkdb/cmkdb/internal/ctl"
)

// fakeAPI answers what a test needs without authentication (the digest
// transport passes an answer that is not a 401 through).
func fakeAPI(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

const fakeGroup = "0123456789abcdef01234567"

func fakeOpts(t *testing.T, url string) ctl.Options {
	return ctl.Options{APIURL: url, PublicKey: "pub", PrivateKeyFile: writeFile(t, "priv", "secret"), Group: fakeGroup}
}

// TestSecretScrubbedFromErrors: a server (or a KMS error it relays) that
// echoes a credential back must not get it printed.
func TestSecretScrubbedFromErrors(t *testing.T) {
	const secret = "s3cr3t-value-from-a-file"
	url := fakeAPI(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			fmt.Fprintf(w, `{"id":%q,"name":"P"}`, fakeGroup)
			return
		}
		b, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]any{"error": 400, "errorCode": "INVALID_VAULT_TOKEN",
			"detail": "the KMS said: bad token in " + string(b), "reason": "Bad Request", "parameters": []any{secret}})
	})
	r := run(t, fakeOpts(t, url), func(ctx context.Context, a *ctl.App) error {
		return a.EARSet(ctx, "vaultTransit", []string{"address=http://vault"}, []string{"token=" + writeFile(t, "token", secret+"\n")})
	})
	var ae *ctl.APIError
	if r.err == nil || !errors.As(r.err, &ae) {
		t.Fatalf("want an API error, got %v", r.err)
	}
	if !strings.HasPrefix(r.text(), "error: INVALID_VAULT_TOKEN: the KMS said: bad token in ") || !strings.Contains(r.text(), "[redacted]") {
		t.Errorf("failure %q", r.text())
	}
	if strings.Contains(r.text(), secret) || fmt.Sprint(ae.Parameters) != "[[redacted]]" {
		t.Errorf("secret shown: %q %v", r.text(), ae.Parameters)
	}
}

// TestListPages follows next links to the end, and stops at a limit.
func TestListPages(t *testing.T) {
	const total = 1234
	var calls atomic.Int32
	url := fakeAPI(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		q := r.URL.Query()
		n, _ := strconv.Atoi(q.Get("pageNum"))
		per, _ := strconv.Atoi(q.Get("itemsPerPage"))
		start, end := min((n-1)*per, total), min(n*per, total)
		page := map[string]any{"totalCount": total, "links": []map[string]string{{"rel": "self", "href": r.URL.String()}}}
		results := []map[string]any{}
		for i := start; i < end; i++ {
			results = append(results, map[string]any{"id": strconv.Itoa(i), "eventTypeName": "E", "links": []any{}})
		}
		page["results"] = results
		if end < total {
			page["links"] = append(page["links"].([]map[string]string), map[string]string{"rel": "next", "href": "x"})
		}
		_ = json.NewEncoder(w).Encode(page)
	})
	tests := []struct {
		limit, want int
		calls       int32
	}{
		{limit: 0, want: total, calls: 3},
		{limit: 10, want: 10, calls: 1},
		{limit: 700, want: 700, calls: 2},
	}
	for _, tc := range tests {
		t.Run(strconv.Itoa(tc.limit), func(t *testing.T) {
			calls.Store(0)
			o := fakeOpts(t, url)
			o.Group = "" // the events path is not used by the fake
			a, err := ctl.Connect(o)
			if err != nil {
				t.Fatal(err)
			}
			got, err := a.Client().List(context.Background(), "/groups/x/events", nil, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.want || calls.Load() != tc.calls {
				t.Errorf("%d results in %d calls, want %d in %d", len(got), calls.Load(), tc.want, tc.calls)
			}
			for i, raw := range got {
				var e struct{ ID string }
				_ = json.Unmarshal(raw, &e)
				if e.ID != strconv.Itoa(i) {
					t.Fatalf("result %d is %s", i, raw)
				}
			}
		})
	}
}

// TestNotAnEnvelope: an error page that is not Atlas's envelope (a proxy's)
// still prints its status.
func TestNotAnEnvelope(t *testing.T) {
	url := fakeAPI(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "<html>upstream gone</html>", http.StatusBadGateway)
	})
	r := run(t, fakeOpts(t, url), func(ctx context.Context, a *ctl.App) error { return a.Clusters(ctx) })
	if r.text() != "error: HTTP_502: <html>upstream gone</html>" {
		t.Errorf("failure %q", r.text())
	}
}

// TestTLSWithCAFile trusts an https API through --ca-file, and refuses it
// without.
func TestTLSWithCAFile(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"results":[{"id":"g","name":"TLSProject","clusterCount":0}],"links":[]}`)
	}))
	t.Cleanup(srv.Close)
	ca := writeFile(t, "ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})))
	projects := func(ctx context.Context, a *ctl.App) error { return a.Projects(ctx) }

	o := fakeOpts(t, srv.URL)
	o.CAFile = ca
	if r := run(t, o, projects); r.err != nil || !strings.Contains(r.out, "TLSProject") {
		t.Errorf("with the CA: %s\n%s", r.text(), r.out)
	}
	o.CAFile = ""
	if r := run(t, o, projects); !strings.Contains(r.text(), "cannot reach the admin API at "+srv.URL) || !strings.Contains(r.text(), "certificate") {
		t.Errorf("without the CA: %q", r.text())
	}
}
