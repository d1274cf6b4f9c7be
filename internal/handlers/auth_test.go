package handlers_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cmkdb/cmkdb/internal/handlers"
	"github.com/cmkdb/cmkdb/internal/handlers/handlerstest"
	"github.com/cmkdb/cmkdb/internal/kms/local"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/node"
	"github.com/cmkdb/cmkdb/internal/tlsutil"
	"github.com/cmkdb/cmkdb/internal/wire"
	"github.com/cmkdb/cmkdb/internal/wire/wiretest"
)

// authNode is a node served with authentication on, in a directory the
// test chooses (so it can be reopened), optionally over TLS.
type authNode struct {
	addr string
	stop func()
}

func startAuthNode(t *testing.T, dir string, tlsCfg *tls.Config) *authNode {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	l := node.Layout{Dir: dir}
	cmk, _, err := local.Ensure(l.LocalKeyPath())
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.Open(context.Background(), l, cmk, node.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	h := handlers.New(n, handlers.Options{AuthRequired: true, Logger: quiet})
	srv := wiretest.StartServer(t, h, func(c *wire.Config) { c.TLS = tlsCfg; c.Logger = quiet })
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = srv.Stop()
		h.Close()
		if err := n.Close(); err != nil {
			t.Errorf("node.Close: %v", err)
		}
	}
	t.Cleanup(stop)
	return &authNode{addr: srv.Addr, stop: stop}
}

// connect returns a driver client for uri with optional credentials.
func authConnect(t *testing.T, uri string, cred *options.Credential) *mongo.Client {
	t.Helper()
	opts := options.Client().ApplyURI(uri).
		SetServerSelectionTimeout(5 * time.Second).SetConnectTimeout(5 * time.Second)
	if cred != nil {
		opts.SetAuth(*cred)
	}
	c, err := mongo.Connect(opts)
	if err != nil {
		t.Fatalf("mongo.Connect: %v", err)
	}
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	return c
}

func scramCred(user, pwd string) *options.Credential {
	return &options.Credential{AuthMechanism: "SCRAM-SHA-256", AuthSource: "admin", Username: user, Password: pwd}
}

func authRun(ctx context.Context, c *mongo.Client, db string, cmd bson.D) (bson.Raw, error) {
	return c.Database(db).RunCommand(ctx, cmd).Raw()
}

func wantAuthCode(t *testing.T, err error, code mongoerr.Code) {
	t.Helper()
	var ce mongo.CommandError
	if errors.As(err, &ce) && ce.Code == int32(code) {
		return
	}
	var se mongo.ServerError
	if errors.As(err, &se) && se.HasErrorCode(int(code)) {
		return
	}
	t.Fatalf("want error code %d (%s), got %v", code, code.Name(), err)
}

// wantAuthFailed checks a failed authentication as the driver reports it.
func wantAuthFailed(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("authenticated with bad credentials")
	}
	if !strings.Contains(err.Error(), "(AuthenticationFailed) Authentication failed.") {
		t.Fatalf("err = %v", err)
	}
	var se mongo.ServerError
	if errors.As(err, &se) && !se.HasErrorCode(int(mongoerr.AuthenticationFailed)) {
		t.Fatalf("err = %v, want code 18", err)
	}
}

func mkUser(ctx context.Context, c *mongo.Client, db, user, pwd string, roles bson.A) error {
	_, err := authRun(ctx, c, db, bson.D{{Key: "createUser", Value: user}, {Key: "pwd", Value: pwd}, {Key: "roles", Value: roles}})
	return err
}

// TestAuthFirstUserAndSCRAM covers the localhost exception, SCRAM-SHA-256
// through the driver, and what unauthenticated clients may do.
func TestAuthFirstUserAndSCRAM(t *testing.T) {
	e := handlerstest.StartEnv(t, handlers.Options{AuthRequired: true})
	ctx := handlerstest.Context(t)
	anon := e.Client

	// Handshake commands answer without authentication.
	for _, cmd := range []string{"hello", "ping", "buildInfo"} {
		if _, err := authRun(ctx, anon, "admin", bson.D{{Key: cmd, Value: 1}}); err != nil {
			t.Errorf("%s: %v", cmd, err)
		}
	}
	// Data commands do not.
	_, err := anon.Database("app").Collection("c").InsertOne(ctx, bson.D{{Key: "x", Value: 1}})
	wantAuthCode(t, err, mongoerr.Unauthorized)
	if !strings.Contains(err.Error(), "Command insert requires authentication") {
		t.Errorf("err = %v", err)
	}
	for _, cmd := range []bson.D{
		{{Key: "find", Value: "c"}},
		{{Key: "listDatabases", Value: 1}},
		{{Key: "usersInfo", Value: 1}},
		{{Key: "dropUser", Value: "x"}},
		{{Key: "serverStatus", Value: 1}},
	} {
		_, err := authRun(ctx, anon, "admin", cmd)
		wantAuthCode(t, err, mongoerr.Unauthorized)
	}
	// The localhost exception works only in admin, and only once.
	wantAuthCode(t, mkUser(ctx, anon, "app", "x", "pw", bson.A{"readWrite"}), mongoerr.Unauthorized)
	if err := mkUser(ctx, anon, "admin", "root", "r00t-pw", bson.A{"root"}); err != nil {
		t.Fatalf("first user through the localhost exception: %v", err)
	}
	wantAuthCode(t, mkUser(ctx, anon, "admin", "second", "pw", bson.A{"root"}), mongoerr.Unauthorized)

	root := e.Connect(t, func(o *options.ClientOptions) { o.SetAuth(*scramCred("root", "r00t-pw")) })
	if err := root.Ping(ctx, nil); err != nil {
		t.Fatalf("ping as root: %v", err)
	}
	var status struct {
		AuthInfo struct {
			AuthenticatedUsers     []struct{ User, DB string } `bson:"authenticatedUsers"`
			AuthenticatedUserRoles []struct{ Role, DB string } `bson:"authenticatedUserRoles"`
		} `bson:"authInfo"`
	}
	if err := root.Database("admin").RunCommand(ctx, bson.D{{Key: "connectionStatus", Value: 1}}).Decode(&status); err != nil {
		t.Fatal(err)
	}
	if u := status.AuthInfo.AuthenticatedUsers; len(u) != 1 || u[0].User != "root" || u[0].DB != "admin" {
		t.Errorf("authenticatedUsers = %+v", u)
	}
	if r := status.AuthInfo.AuthenticatedUserRoles; len(r) != 1 || r[0].Role != "root" {
		t.Errorf("authenticatedUserRoles = %+v", r)
	}
	if _, err := root.Database("app").Collection("c").InsertOne(ctx, bson.D{{Key: "x", Value: 1}}); err != nil {
		t.Fatalf("insert as root: %v", err)
	}

	// Default mechanism negotiation (saslSupportedMechs, speculative auth).
	nego := e.Connect(t, func(o *options.ClientOptions) {
		o.SetAuth(options.Credential{Username: "root", Password: "r00t-pw"})
	})
	if err := nego.Ping(ctx, nil); err != nil {
		t.Fatalf("negotiated mechanism: %v", err)
	}
	sha1 := e.Connect(t, func(o *options.ClientOptions) {
		o.SetAuth(options.Credential{AuthMechanism: "SCRAM-SHA-1", Username: "root", Password: "r00t-pw"})
	})
	if err := sha1.Ping(ctx, nil); err != nil {
		t.Fatalf("SCRAM-SHA-1: %v", err)
	}

	// Wrong password and unknown user fail alike.
	for _, cred := range []*options.Credential{scramCred("root", "wrong"), scramCred("nobody", "r00t-pw")} {
		c := e.Connect(t, func(o *options.ClientOptions) { o.SetAuth(*cred) })
		wantAuthFailed(t, c.Ping(ctx, nil))
	}

	// logout on the user's database ends the session's privileges; on
	// another database it changes nothing (mongod 7.0's logoutDatabase).
	conn := e.Connect(t, func(o *options.ClientOptions) { o.SetAuth(*scramCred("root", "r00t-pw")).SetMaxPoolSize(1) })
	if _, err := authRun(ctx, conn, "app", bson.D{{Key: "logout", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := authRun(ctx, conn, "app", bson.D{{Key: "find", Value: "c"}}); err != nil {
		t.Fatalf("after logout on app, the admin user: %v", err)
	}
	if _, err := authRun(ctx, conn, "admin", bson.D{{Key: "logout", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	_, err = authRun(ctx, conn, "app", bson.D{{Key: "find", Value: "c"}})
	wantAuthCode(t, err, mongoerr.Unauthorized)
}

// TestAuthRolesAndUserCommands covers roles, the user commands and their
// errors, and the protection of admin.system.users.
func TestAuthRolesAndUserCommands(t *testing.T) {
	e := handlerstest.StartEnv(t, handlers.Options{AuthRequired: true})
	ctx := handlerstest.Context(t)
	if err := mkUser(ctx, e.Client, "admin", "root", "r00t-pw", bson.A{"root"}); err != nil {
		t.Fatal(err)
	}
	root := e.Connect(t, func(o *options.ClientOptions) { o.SetAuth(*scramCred("root", "r00t-pw")) })
	if err := mkUser(ctx, root, "app", "reader", "read-pw", bson.A{"read"}); err != nil {
		t.Fatal(err)
	}
	if _, err := authRun(ctx, root, "app", bson.D{{Key: "createUser", Value: "writer"}, {Key: "pwd", Value: "write-pw"},
		{Key: "roles", Value: bson.A{bson.D{{Key: "role", Value: "readWrite"}, {Key: "db", Value: "app"}}}},
		{Key: "mechanisms", Value: bson.A{"SCRAM-SHA-256"}}, {Key: "customData", Value: bson.D{{Key: "team", Value: "ops"}}}}); err != nil {
		t.Fatal(err)
	}
	wantAuthCode(t, mkUser(ctx, root, "app", "writer", "again", bson.A{"read"}), 51003)
	wantAuthCode(t, mkUser(ctx, root, "app", "bad", "pw", bson.A{"root"}), 31) // root exists only on admin
	wantAuthCode(t, mkUser(ctx, root, "app", "bad", "pw", bson.A{"noSuchRole"}), 31)
	wantAuthCode(t, mkUser(ctx, root, "app", "bad", "", bson.A{"read"}), mongoerr.BadValue)
	_, err := authRun(ctx, root, "app", bson.D{{Key: "dropUser", Value: "ghost"}})
	wantAuthCode(t, err, mongoerr.UserNotFound)
	if _, err := root.Database("app").Collection("c").InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}

	appCred := func(user, pwd string) func(*options.ClientOptions) {
		return func(o *options.ClientOptions) {
			o.SetAuth(options.Credential{AuthMechanism: "SCRAM-SHA-256", AuthSource: "app", Username: user, Password: pwd}).SetMaxPoolSize(1)
		}
	}
	reader := e.Connect(t, appCred("reader", "read-pw"))
	writer := e.Connect(t, appCred("writer", "write-pw"))
	rc := reader.Database("app").Collection("c")
	if n, err := rc.CountDocuments(ctx, bson.D{}); err != nil || n != 1 {
		t.Fatalf("reader count = %d, %v", n, err)
	}
	_, err = rc.InsertOne(ctx, bson.D{{Key: "_id", Value: 2}})
	wantAuthCode(t, err, mongoerr.Unauthorized)
	if !strings.Contains(err.Error(), "not authorized on app to execute command insert") {
		t.Errorf("err = %v", err)
	}
	_, err = rc.DeleteMany(ctx, bson.D{})
	wantAuthCode(t, err, mongoerr.Unauthorized)
	_, err = reader.Database("other").Collection("c").Find(ctx, bson.D{})
	wantAuthCode(t, err, mongoerr.Unauthorized)
	_, err = authRun(ctx, reader, "admin", bson.D{{Key: "serverStatus", Value: 1}})
	wantAuthCode(t, err, mongoerr.Unauthorized)
	if _, err := writer.Database("app").Collection("c").InsertOne(ctx, bson.D{{Key: "_id", Value: 2}}); err != nil {
		t.Fatalf("writer insert: %v", err)
	}
	_, err = authRun(ctx, writer, "app", bson.D{{Key: "dropDatabase", Value: 1}})
	wantAuthCode(t, err, mongoerr.Unauthorized)
	// $out writes: a reader may not run it.
	_, err = rc.Aggregate(ctx, mongo.Pipeline{{{Key: "$out", Value: "copy"}}})
	wantAuthCode(t, err, mongoerr.Unauthorized)
	// Nobody grants what they do not administer.
	wantAuthCode(t, mkUser(ctx, writer, "app", "x", "pw", bson.A{"read"}), mongoerr.Unauthorized)

	// usersInfo: self always, others with userAdmin, never credentials.
	var info struct {
		Users []bson.M `bson:"users"`
	}
	if err := reader.Database("app").RunCommand(ctx, bson.D{{Key: "usersInfo", Value: "reader"}}).Decode(&info); err != nil {
		t.Fatalf("usersInfo self: %v", err)
	}
	if len(info.Users) != 1 || info.Users[0]["user"] != "reader" {
		t.Fatalf("usersInfo self = %v", info.Users)
	}
	_, err = authRun(ctx, reader, "app", bson.D{{Key: "usersInfo", Value: 1}})
	wantAuthCode(t, err, mongoerr.Unauthorized)
	raw, err := authRun(ctx, root, "app", bson.D{{Key: "usersInfo", Value: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if err := bson.Unmarshal(raw, &info); err != nil {
		t.Fatal(err)
	}
	if len(info.Users) != 2 || info.Users[0]["_id"] != "app.reader" || info.Users[1]["_id"] != "app.writer" {
		t.Fatalf("usersInfo = %v", info.Users)
	}
	if w := raw.Lookup("users", "1"); w.Document().Lookup("customData", "team").StringValue() != "ops" ||
		w.Document().Lookup("mechanisms", "0").StringValue() != "SCRAM-SHA-256" || w.Document().Lookup("mechanisms", "1").Type != 0 {
		t.Errorf("writer = %v", w)
	}
	for _, u := range info.Users {
		if _, ok := u["credentials"]; ok {
			t.Errorf("usersInfo returned credentials: %v", u)
		}
	}
	if s := raw.String(); strings.Contains(s, "storedKey") || strings.Contains(s, "serverKey") || strings.Contains(s, "salt") {
		t.Errorf("usersInfo leaks key material: %s", s)
	}
	_, err = authRun(ctx, root, "app", bson.D{{Key: "usersInfo", Value: 1}, {Key: "showCredentials", Value: true}})
	wantAuthCode(t, err, mongoerr.IllegalOperation)

	// admin.system.users is written only through the user commands; a
	// user administrator of every database (root) may read it, as backup
	// tools do, and nobody else.
	cur, err := root.Database("admin").Collection("system.users").Find(ctx, bson.D{})
	if err != nil {
		t.Fatalf("root reading system.users: %v", err)
	}
	var docs []bson.Raw
	if err := cur.All(ctx, &docs); err != nil || len(docs) != 3 {
		t.Fatalf("root read %d user documents (%v), want 3", len(docs), err)
	}
	_, err = reader.Database("admin").Collection("system.users").Find(ctx, bson.D{})
	wantAuthCode(t, err, mongoerr.Unauthorized)
	_, err = root.Database("admin").Collection("system.users").InsertOne(ctx, bson.D{{Key: "_id", Value: "admin.evil"}})
	wantAuthCode(t, err, mongoerr.Unauthorized)
	_, err = root.Database("admin").Collection("x").Aggregate(ctx, mongo.Pipeline{{{Key: "$lookup", Value: bson.D{
		{Key: "from", Value: "system.users"}, {Key: "localField", Value: "a"}, {Key: "foreignField", Value: "b"}, {Key: "as", Value: "u"}}}}})
	wantAuthCode(t, err, mongoerr.Unauthorized)

	// updateUser changes the password; dropUser revokes at once.
	if _, err := authRun(ctx, root, "app", bson.D{{Key: "updateUser", Value: "writer"}, {Key: "pwd", Value: "new-pw"}}); err != nil {
		t.Fatal(err)
	}
	wantAuthFailed(t, e.Connect(t, appCred("writer", "write-pw")).Ping(ctx, nil))
	if err := e.Connect(t, appCred("writer", "new-pw")).Ping(ctx, nil); err != nil {
		t.Fatalf("new password: %v", err)
	}
	if _, err := authRun(ctx, root, "app", bson.D{{Key: "dropUser", Value: "reader"}}); err != nil {
		t.Fatal(err)
	}
	_, err = rc.CountDocuments(ctx, bson.D{})
	wantAuthCode(t, err, mongoerr.Unauthorized)
}

// TestUsersEncryptedAndPersistent checks users survive a restart and that
// neither passwords nor user documents are readable under the data dir.
func TestUsersEncryptedAndPersistent(t *testing.T) {
	dir := t.TempDir()
	const user, pwd = "canaryUserQ7x", "canaryPasswordZ9k"
	ctx := handlerstest.Context(t)
	n := startAuthNode(t, dir, nil)
	anon := authConnect(t, "mongodb://"+n.addr+"/?directConnection=true", nil)
	if err := mkUser(ctx, anon, "admin", user, pwd, bson.A{"root"}); err != nil {
		t.Fatal(err)
	}
	c := authConnect(t, "mongodb://"+n.addr+"/?directConnection=true", scramCred(user, pwd))
	if err := c.Ping(ctx, nil); err != nil {
		t.Fatal(err)
	}
	_ = c.Disconnect(ctx)
	_ = anon.Disconnect(ctx)
	n.stop()

	for _, needle := range []string{pwd, user, "SCRAM-SHA-256", "storedKey", "system.users"} {
		_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if bytes.Contains(b, []byte(needle)) {
				t.Errorf("%q found in plaintext in %s", needle, path)
			}
			return nil
		})
	}

	n = startAuthNode(t, dir, nil)
	c = authConnect(t, "mongodb://"+n.addr+"/?directConnection=true", scramCred(user, pwd))
	if err := c.Ping(ctx, nil); err != nil {
		t.Fatalf("after reopen: %v", err)
	}
	wantAuthFailed(t, authConnect(t, "mongodb://"+n.addr+"/?directConnection=true", scramCred(user, "wrong")).Ping(ctx, nil))
	// The localhost exception stays closed.
	anon = authConnect(t, "mongodb://"+n.addr+"/?directConnection=true", nil)
	wantAuthCode(t, mkUser(ctx, anon, "admin", "late", "pw", bson.A{"root"}), mongoerr.Unauthorized)
}

// TestTLSListener serves the node over TLS with a generated local CA.
func TestTLSListener(t *testing.T) {
	dir := t.TempDir()
	files, created, err := tlsutil.EnsureLocal(filepath.Join(dir, "tls"))
	if err != nil || !created {
		t.Fatalf("EnsureLocal: %v, created=%v", err, created)
	}
	cfg, err := tlsutil.ServerConfig(files.CertFile, files.KeyFile, "")
	if err != nil {
		t.Fatal(err)
	}
	n := startAuthNode(t, filepath.Join(dir, "data"), cfg)
	ctx := handlerstest.Context(t)

	anon := authConnect(t, "mongodb://"+n.addr+"/?directConnection=true&tls=true&tlsCAFile="+files.CAFile, nil)
	if err := mkUser(ctx, anon, "admin", "root", "pw", bson.A{"root"}); err != nil {
		t.Fatalf("over TLS: %v", err)
	}
	c := authConnect(t, "mongodb://"+n.addr+"/?directConnection=true&tls=true&tlsCAFile="+files.CAFile, scramCred("root", "pw"))
	if _, err := c.Database("app").Collection("c").InsertOne(ctx, bson.D{{Key: "x", Value: 1}}); err != nil {
		t.Fatalf("insert over TLS: %v", err)
	}
	// localhost is in the certificate too.
	port := n.addr[strings.LastIndexByte(n.addr, ':'):]
	c = authConnect(t, "mongodb://localhost"+port+"/?directConnection=true&tls=true&tlsCAFile="+files.CAFile, nil)
	if err := c.Ping(ctx, nil); err != nil {
		t.Fatalf("via localhost: %v", err)
	}

	short, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	plain := authConnect(t, "mongodb://"+n.addr+"/?directConnection=true&serverSelectionTimeoutMS=2000", nil)
	if err := plain.Ping(short, nil); err == nil {
		t.Error("plaintext client served by a TLS listener")
	}
	untrusted := authConnect(t, "mongodb://"+n.addr+"/?directConnection=true&tls=true&serverSelectionTimeoutMS=2000", nil)
	if err := untrusted.Ping(short, nil); err == nil {
		t.Error("client that does not trust the local CA connected")
	}
}
