package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mongodb-forks/digest"

	"github.com/cmkdb/cmkdb/internal/cli"
	"github.com/cmkdb/cmkdb/internal/testenv"
)

// apiCall sends method path (relative to /api/atlas/v2) to up's admin API
// as the API key pub/priv and returns the status and body.
func apiCall(t *testing.T, base, pub, priv, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		js, _ := json.Marshal(body)
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, base+"/api/atlas/v2"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/vnd.atlas.2023-01-01+json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := (&http.Client{Transport: digest.NewTransport(pub, priv)}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

// TestUpAuthConnectionStringsCarryNoCredentials: with --auth, a cluster
// created through the admin API gets an administrator of its own, yet no
// API key — a GROUP_READ_ONLY one least of all — ever reads a password in
// a connection string: not the bootstrap cluster's, not the new one's.
func TestUpAuthConnectionStringsCarryNoCredentials(t *testing.T) {
	dir := t.TempDir()
	info, _, stop := runUp(t, dir, "--auth")
	defer stop()
	if info.AdminPassword == "" {
		t.Fatalf("up.json has no generated password: %+v", info)
	}
	gid := info.GroupID
	// A read-only key of the project, made by the Organization Owner key.
	st, b := apiCall(t, info.APIURL, info.APIPublicKey, info.APIPrivateKey, "POST", "/groups/"+gid+"/apiKeys",
		map[string]any{"desc": "reader", "roles": []string{"GROUP_READ_ONLY"}})
	if st != http.StatusCreated && st != http.StatusOK {
		t.Fatalf("creating a read-only key: %d %s", st, b)
	}
	var ro struct {
		PublicKey  string `json:"publicKey"`
		PrivateKey string `json:"privateKey"`
	}
	if err := json.Unmarshal(b, &ro); err != nil || ro.PrivateKey == "" {
		t.Fatalf("read-only key: %s", b)
	}
	st, b = apiCall(t, info.APIURL, info.APIPublicKey, info.APIPrivateKey, "POST", "/groups/"+gid+"/clusters",
		map[string]any{"name": "Cluster1"})
	if st != http.StatusCreated {
		t.Fatalf("creating Cluster1: %d %s", st, b)
	}
	// Cluster1's node created its own administrator with a random password.
	var extra upJSON
	js, err := os.ReadFile(filepath.Join(dir, "clusters", gid, "Cluster1", "up.json"))
	if err != nil || json.Unmarshal(js, &extra) != nil || extra.AdminPassword == "" {
		t.Fatalf("Cluster1's up.json: %v %s", err, js)
	}
	secrets := []string{info.AdminPassword, extra.AdminPassword}
	noSecret := func(what string, body []byte) {
		t.Helper()
		for _, s := range secrets {
			if bytes.Contains(body, []byte(s)) {
				t.Fatalf("%s carries an administrator password: %s", what, body)
			}
		}
	}
	noSecret("the answer to the cluster's creation", b)
	for _, k := range [][2]string{{ro.PublicKey, ro.PrivateKey}, {info.APIPublicKey, info.APIPrivateKey}} {
		st, b := apiCall(t, info.APIURL, k[0], k[1], "GET", "/groups/"+gid+"/clusters", nil)
		if st != http.StatusOK {
			t.Fatalf("listing clusters: %d %s", st, b)
		}
		noSecret("the cluster list", b)
		var page struct {
			Results []struct {
				Name              string `json:"name"`
				ConnectionStrings struct {
					Standard string `json:"standard"`
				} `json:"connectionStrings"`
			} `json:"results"`
		}
		if err := json.Unmarshal(b, &page); err != nil || len(page.Results) != 2 {
			t.Fatalf("cluster list: %v %s", err, b)
		}
		for _, c := range page.Results {
			u, err := url.Parse(c.ConnectionStrings.Standard)
			if err != nil || u.User != nil || !strings.HasPrefix(c.ConnectionStrings.Standard, "mongodb://") {
				t.Fatalf("cluster %s: connection string %q", c.Name, c.ConnectionStrings.Standard)
			}
		}
		for _, p := range []string{"/groups/" + gid + "/clusters/Cluster1", "/groups/" + gid + "/events", "/groups/" + gid + "/clusters/Cluster1/nodes"} {
			st, b := apiCall(t, info.APIURL, k[0], k[1], "GET", p, nil)
			if st != http.StatusOK {
				t.Fatalf("GET %s: %d %s", p, st, b)
			}
			noSecret("GET "+p, b)
		}
	}
	// up.json's own connection strings carry none either.
	for _, cs := range []string{info.ConnectionString, extra.ConnectionString} {
		if u, err := url.Parse(cs); err != nil || u.User != nil {
			t.Fatalf("up.json connection string %q carries credentials", cs)
		}
	}
}

// TestSecondUpSaysAlreadyRunning: a second `up` on a data directory in use
// stops at once and names the process holding it.
func TestSecondUpSaysAlreadyRunning(t *testing.T) {
	dir := t.TempDir()
	_, _, stop := runUp(t, dir)
	defer stop()
	out := &testenv.SyncBuffer{}
	code := cli.Execute(context.Background(), []string{"up", "--dir", dir, "--port", "0"}, out, out)
	want := fmt.Sprintf("already running on %s (pid %d)", dir, os.Getpid())
	if code == 0 || !strings.Contains(out.String(), want) {
		t.Fatalf("second up exited %d:\n%s\nwant %q", code, out.String(), want)
	}
}

// TestUpKeepsPorts: ports picked with port 0 are the same on the next run
// (connection string and admin API URL unchanged); a kept port that is
// taken meanwhile is an error naming it.
func TestUpKeepsPorts(t *testing.T) {
	dir := t.TempDir()
	first, _, stop := runUp(t, dir)
	stop()
	second, _, stop2 := runUp(t, dir)
	if second.ConnectionString != first.ConnectionString || second.APIURL != first.APIURL {
		t.Fatalf("restart changed the addresses: %s %s -> %s %s", first.ConnectionString, first.APIURL, second.ConnectionString, second.APIURL)
	}
	stop2()
	// Someone else takes the kept wire port.
	u, _ := url.Parse(first.ConnectionString)
	ln, err := net.Listen("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	out := &testenv.SyncBuffer{}
	code := cli.Execute(context.Background(), []string{"up", "--dir", dir, "--port", "0"}, out, out)
	if code == 0 || !strings.Contains(out.String(), "port "+u.Port()+", kept in") || !strings.Contains(out.String(), "is in use") {
		t.Fatalf("up with its kept port taken exited %d:\n%s", code, out.String())
	}
}

// TestUpReadsLegacyPassword: an up.json written before connection strings
// lost their credentials held the generated password only inside the
// connection string; the next run moves it to adminPassword instead of
// losing the only copy.
func TestUpReadsLegacyPassword(t *testing.T) {
	dir := t.TempDir()
	info, _, stop := runUp(t, dir, "--auth")
	stop()
	pw := info.AdminPassword
	b, err := os.ReadFile(filepath.Join(dir, "up.json"))
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	delete(raw, "adminPassword")
	raw["connectionString"] = strings.Replace(info.ConnectionString, "mongodb://", "mongodb://admin:"+url.QueryEscape(pw)+"@", 1)
	legacy, _ := json.Marshal(raw)
	if err := os.WriteFile(filepath.Join(dir, "up.json"), legacy, 0o600); err != nil {
		t.Fatal(err)
	}
	info2, _, stop2 := runUp(t, dir, "--auth")
	defer stop2()
	if info2.AdminPassword != pw {
		t.Fatalf("the password of the legacy up.json was not carried over (got %d characters)", len(info2.AdminPassword))
	}
	if u, err := url.Parse(info2.ConnectionString); err != nil || u.User != nil {
		t.Fatalf("connection string %q", info2.ConnectionString)
	}
}
