package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cmkdb/cmkdb/internal/cli"
	"github.com/cmkdb/cmkdb/internal/testenv"
)

type upJSON struct {
	ConnectionString string    `json:"connectionString"`
	StartedAt        time.Time `json:"startedAt"`
	Auth             bool      `json:"auth"`
	AdminUser        string    `json:"adminUser"`
	AdminPassword    string    `json:"adminPassword"`
	TLS              bool      `json:"tls"`
	TLSCAFile        string    `json:"tlsCAFile"`
	APIURL           string    `json:"apiUrl"`
	APIPublicKey     string    `json:"apiPublicKey"`
	APIPrivateKey    string    `json:"apiPrivateKey"`
	GroupID          string    `json:"groupId"`
}

// runUp runs `cmkdb up args...` until the returned stop is called, and
// returns the up.json it writes.
func runUp(t *testing.T, dir string, args ...string) (upJSON, *testenv.SyncBuffer, func()) {
	t.Helper()
	var prev time.Time
	if b, err := os.ReadFile(filepath.Join(dir, "up.json")); err == nil {
		var p upJSON
		_ = json.Unmarshal(b, &p)
		prev = p.StartedAt
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := &testenv.SyncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- cli.Execute(ctx, append([]string{"up", "--dir", dir, "--port", "0"}, args...), out, out)
	}()
	stop := func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("cmkdb up exited %d:\n%s", code, out.String())
			}
			done <- code
		case <-time.After(30 * time.Second):
			t.Error("cmkdb up did not stop")
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case code := <-done:
			t.Fatalf("cmkdb up exited %d:\n%s", code, out.String())
		default:
		}
		b, err := os.ReadFile(filepath.Join(dir, "up.json"))
		if err == nil {
			var info upJSON
			if json.Unmarshal(b, &info) == nil && !info.StartedAt.Equal(prev) {
				return info, out, stop
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	t.Fatalf("no up.json:\n%s", out.String())
	return upJSON{}, nil, nil
}

func TestUpAuthTLS(t *testing.T) {
	dir := t.TempDir()
	info, out, stop := runUp(t, dir, "--auth", "--tls")
	if !info.Auth || !info.TLS || info.AdminUser != "admin" {
		t.Fatalf("up.json = %+v", info)
	}
	u, err := url.Parse(info.ConnectionString)
	if err != nil {
		t.Fatal(err)
	}
	// The connection string never carries credentials; up.json holds the
	// generated password as its own field.
	if u.User != nil {
		t.Fatalf("connection string carries credentials: %s", u.Redacted())
	}
	pw := info.AdminPassword
	if len(pw) < 24 {
		t.Fatalf("up.json holds no generated password: %+v", info)
	}
	q := u.Query()
	if q.Get("tls") != "true" || q.Get("authSource") != "admin" || q.Get("tlsCAFile") != filepath.Join(dir, "tls", "ca.pem") {
		t.Fatalf("connection string options: %s", u.Redacted())
	}
	st, err := os.Stat(filepath.Join(dir, "up.json"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("up.json mode: %v %v", st.Mode(), err)
	}
	for _, f := range []string{"ca.pem", "server.pem", "server-key.pem"} {
		if st, err := os.Stat(filepath.Join(dir, "tls", f)); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("tls/%s: %v %v", f, err, st)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	use := func(uri string, pw string) error {
		o := options.Client().ApplyURI(uri).SetServerSelectionTimeout(5 * time.Second)
		if pw != "" {
			o.SetAuth(options.Credential{AuthSource: "admin", Username: "admin", Password: pw})
		}
		c, err := mongo.Connect(o)
		if err != nil {
			return err
		}
		defer c.Disconnect(ctx)
		coll := c.Database("app").Collection("c")
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "k", Value: "v"}}); err != nil {
			return err
		}
		n, err := coll.CountDocuments(ctx, bson.D{})
		if err == nil && n == 0 {
			err = errors.New("no documents")
		}
		return err
	}
	if err := use(info.ConnectionString, pw); err != nil {
		t.Fatalf("up.json connection string and password: %v", err)
	}
	// Without the password: refused.
	err = use(info.ConnectionString, "")
	if err == nil || !strings.Contains(err.Error(), "requires authentication") {
		t.Fatalf("unauthenticated insert: %v", err)
	}
	stop()
	if strings.Contains(out.String(), pw) {
		t.Errorf("the password was printed or logged:\n%s", out.String())
	}
	// The password is nowhere under DIR but up.json.
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Base(p) == "up.json" {
			return err
		}
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(pw)) {
			t.Errorf("password found in %s", p)
		}
		return nil
	})

	// A second run reuses the user, the password and the certificates.
	caBefore, _ := os.ReadFile(filepath.Join(dir, "tls", "ca.pem"))
	info2, _, stop2 := runUp(t, dir, "--auth", "--tls")
	defer stop2()
	if info2.AdminPassword != pw {
		t.Errorf("second run changed the password in up.json")
	}
	if caAfter, _ := os.ReadFile(filepath.Join(dir, "tls", "ca.pem")); !bytes.Equal(caBefore, caAfter) {
		t.Error("second run replaced the CA")
	}
	if err := use(info2.ConnectionString, pw); err != nil {
		t.Fatalf("second run: %v", err)
	}
}

func TestUpDefaultAndPasswordFile(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Default: no flags, plaintext loopback, no auth.
	dir := t.TempDir()
	info, _, stop := runUp(t, dir)
	if info.Auth || info.TLS || !strings.HasPrefix(info.ConnectionString, "mongodb://127.0.0.1:") {
		t.Fatalf("default up.json = %+v", info)
	}
	c, err := mongo.Connect(options.Client().ApplyURI(info.ConnectionString))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Database("app").Collection("c").InsertOne(ctx, bson.D{{Key: "k", Value: 1}}); err != nil {
		t.Fatalf("default up: %v", err)
	}
	_ = c.Disconnect(ctx)
	stop()

	// --admin-password-file: the password is not copied into up.json.
	dir = t.TempDir()
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("file-pass-Xq1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	info, _, stop = runUp(t, dir, "--auth", "--admin-user", "boss", "--admin-password-file", pwFile)
	defer stop()
	if b, _ := os.ReadFile(filepath.Join(dir, "up.json")); bytes.Contains(b, []byte("file-pass-Xq1")) {
		t.Error("up.json holds the password from --admin-password-file")
	}
	c, err = mongo.Connect(options.Client().ApplyURI(info.ConnectionString).
		SetAuth(options.Credential{Username: "boss", Password: "file-pass-Xq1"}).SetServerSelectionTimeout(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(ctx)
	if _, err := c.Database("app").Collection("c").InsertOne(ctx, bson.D{{Key: "k", Value: 1}}); err != nil {
		t.Fatalf("as boss: %v", err)
	}
}
