// Package e2e drives the real cmkdb binary as a user would: `cmkdb up` as a
// child process on a temporary data directory, the real CLI to change the
// CMK's state, and the real clients — mongosh, the Node driver and the Go
// driver — over TCP on 127.0.0.1.
//
// mongosh and the Node driver come from npm (scripts/install-deps.sh installs
// them into e2e/node); the tests fail, rather than skip, when they are
// missing.
package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cmkdb/cmkdb/e2e/e2etest"
)

// cmkdbBin is the binary under test, built once by TestMain.
var cmkdbBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "cmkdb-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	cmkdbBin, err = e2etest.Build(dir, e2etest.Race)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building cmkdb:", err)
		return 1
	}
	return m.Run()
}

// opTimeout bounds every single client operation (scaled for the machine
// by e2etest.Scaled).
const opTimeout = 60 * time.Second

func opCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), e2etest.Scaled(opTimeout))
	t.Cleanup(cancel)
	return ctx
}

// startServer starts `cmkdb up` on a fresh directory.
func startServer(t *testing.T, args ...string) *e2etest.Server {
	t.Helper()
	return e2etest.Start(t, cmkdbBin, t.TempDir(), args...)
}

// connect opens a Go driver client to uri and closes it at cleanup.
func connect(t testing.TB, uri string) *mongo.Client {
	t.Helper()
	opts := options.Client().ApplyURI(uri).
		SetConnectTimeout(20 * time.Second).
		SetServerSelectionTimeout(30 * time.Second).
		SetTimeout(e2etest.Scaled(opTimeout)).
		SetRetryWrites(false).
		SetRetryReads(false)
	c, err := mongo.Connect(opts)
	if err != nil {
		t.Fatalf("connect %s: %v", uri, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = c.Disconnect(ctx)
	})
	if err := c.Ping(opCtx(t), nil); err != nil {
		t.Fatalf("ping %s: %v", uri, err)
	}
	return c
}

// disconnect closes c now, before the test stops its server (a client
// closing against a stopped server waits out its timeouts).
func disconnect(c *mongo.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_ = c.Disconnect(ctx)
}

// kmsCalls reads serverStatus.encryptionAtRest.kmsCalls.
type kmsCalls struct{ Wrap, Unwrap, Check int64 }

func readKMSCalls(t testing.TB, c *mongo.Client) kmsCalls {
	t.Helper()
	var st struct {
		EncryptionAtRest struct {
			KMSCalls kmsCalls `bson:"kmsCalls"`
		} `bson:"encryptionAtRest"`
	}
	if err := c.Database("admin").RunCommand(opCtx(t), bson.D{{Key: "serverStatus", Value: 1}}).Decode(&st); err != nil {
		t.Fatalf("serverStatus: %v", err)
	}
	return st.EncryptionAtRest.KMSCalls
}

// commandCode returns the server error code carried by err, or 0.
func commandCode(err error) int32 {
	var ce mongo.CommandError
	if errors.As(err, &ce) {
		return ce.Code
	}
	var we mongo.WriteException
	if errors.As(err, &we) {
		if len(we.WriteErrors) > 0 {
			return int32(we.WriteErrors[0].Code)
		}
		if we.WriteConcernError != nil {
			return int32(we.WriteConcernError.Code)
		}
	}
	var be mongo.BulkWriteException
	if errors.As(err, &be) && len(be.WriteErrors) > 0 {
		return int32(be.WriteErrors[0].Code)
	}
	return 0
}

// wantCode fails unless err is a server error with code.
func wantCode(t testing.TB, err error, code int32, what string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: succeeded, want error code %d", what, code)
	}
	if got := commandCode(err); got != code {
		t.Fatalf("%s: error %v (code %d), want code %d", what, err, got, code)
	}
}

// keyUnavailable is handlers.KeyUnavailable: a disabled node's answer to a
// data command.
const keyUnavailable = 41001

// wantKeyUnavailable checks err is the disabled node's refusal naming reason.
func wantKeyUnavailable(err error, reason string) error {
	if err == nil {
		return errors.New("the command succeeded")
	}
	if code := commandCode(err); code != keyUnavailable {
		return fmt.Errorf("error %v has code %d, want %d", err, code, keyUnavailable)
	}
	if !strings.Contains(err.Error(), reason) {
		return fmt.Errorf("error %q does not name %s", err.Error(), reason)
	}
	return nil
}
