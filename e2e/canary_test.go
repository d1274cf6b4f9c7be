package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cmkdb/cmkdb/e2e/e2etest"
)

// canaryDocs is how many documents carry the canary; with the filler they
// are several MiB, so the engine flushes memtables to sstables and the scan
// covers WAL, sstables and MANIFEST.
const canaryDocs = 1500

func newCanary(t *testing.T) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "CMKDB-CANARY-" + hex.EncodeToString(b)
}

// writeCanary writes canaryDocs documents carrying canary in an indexed
// field, a nested field, an array, a field name and a long string, through
// the Go driver, plus one document through mongosh. Every write is
// acknowledged (w:1, the default) before it returns.
func writeCanary(t *testing.T, uri, canary string) {
	t.Helper()
	c := connect(t, uri)
	defer disconnect(c)
	coll := c.Database("canarydb").Collection("secrets")
	filler := strings.Repeat(canary+" top secret payload; ", 200)
	batch := make([]any, 0, 100)
	for i := range canaryDocs {
		batch = append(batch, bson.D{
			{Key: "_id", Value: int32(i)},
			{Key: "secret", Value: fmt.Sprintf("%s-%06d", canary, i)},
			{Key: "nested", Value: bson.D{{Key: "deep", Value: bson.D{{Key: "value", Value: canary}}}}},
			{Key: "list", Value: bson.A{"a", canary, int32(i)}},
			{Key: "field_" + canary, Value: true},
			{Key: "filler", Value: filler},
		})
		if len(batch) == cap(batch) {
			if _, err := coll.InsertMany(opCtx(t), batch); err != nil {
				t.Fatalf("insertMany: %v", err)
			}
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		if _, err := coll.InsertMany(opCtx(t), batch); err != nil {
			t.Fatalf("insertMany: %v", err)
		}
	}
	// The index keys hold the canary too. An engineer may still be adding
	// createIndexes: report that, but scan the data either way.
	if _, err := coll.Indexes().CreateOne(opCtx(t), mongo.IndexModel{Keys: bson.D{{Key: "secret", Value: 1}}, Options: options.Index().SetUnique(true)}); err != nil {
		t.Errorf("createIndex on the canary field: %v", err)
	}
	if _, err := coll.Indexes().CreateOne(opCtx(t), mongo.IndexModel{Keys: bson.D{{Key: "nested.deep.value", Value: 1}}}); err != nil {
		t.Errorf("createIndex on the nested canary field: %v", err)
	}
	e2etest.Mongosh(t, uri, fmt.Sprintf(`
const r = db.getSiblingDB("canarydb").shell.insertOne({_id: "from-mongosh", secret: %q});
if (!r.acknowledged) { throw new Error("not acknowledged"); }
print(EJSON.stringify({ok: 1}));
`, canary+"-mongosh"))
}

// checkCanaryData verifies, after a restart, that everything written is back.
func checkCanaryData(t *testing.T, uri, canary string) {
	t.Helper()
	c := connect(t, uri)
	defer disconnect(c)
	db := c.Database("canarydb")
	n, err := db.Collection("secrets").CountDocuments(opCtx(t), bson.D{})
	if err != nil {
		t.Fatalf("count after restart: %v", err)
	}
	if n != canaryDocs {
		t.Fatalf("%d documents after restart, want %d", n, canaryDocs)
	}
	want := fmt.Sprintf("%s-%06d", canary, 777)
	var doc bson.M
	if err := db.Collection("secrets").FindOne(opCtx(t), bson.D{{Key: "secret", Value: want}}).Decode(&doc); err != nil {
		t.Fatalf("find by the canary field after restart: %v", err)
	}
	if doc["_id"] != int32(777) || doc["field_"+canary] != true {
		t.Fatalf("document 777 after restart: _id %v", doc["_id"])
	}
	if err := db.Collection("shell").FindOne(opCtx(t), bson.D{{Key: "secret", Value: canary + "-mongosh"}}).Err(); err != nil {
		t.Fatalf("the mongosh document after restart: %v", err)
	}
}

// scanForCanary reads every byte of every file under the server's data
// directory, and the server's captured stdout/stderr. A hit in a file fails
// the test at once; a hit in the output (logged at --log-level debug) is
// reported and the test goes on, so the data checks still run.
func scanForCanary(t *testing.T, s *e2etest.Server, canary, when string) {
	t.Helper()
	hits, files, n, err := e2etest.FindInTree(s.Dir, []byte(canary))
	if err != nil {
		t.Fatalf("scanning %s: %v", s.Dir, err)
	}
	if files == 0 || n == 0 {
		t.Fatalf("scanned nothing under %s", s.Dir)
	}
	t.Logf("%s: scanned %d files, %d bytes under %s", when, files, n, s.Dir)
	if strings.Contains(s.Output.String(), canary) {
		t.Errorf("%s: canary found in plaintext in the server's logs (stdout/stderr at --log-level debug)", when)
	}
	if len(hits) > 0 {
		t.Fatalf("%s: canary found in plaintext in: %v", when, hits)
	}
}

// listTree names the files under dir, for the log.
func listTree(t *testing.T, dir string) []string {
	var names []string
	_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, path)
			names = append(names, rel)
		}
		return nil
	})
	return names
}

func TestCanary(t *testing.T) {
	e2etest.RequireNodeClients(t)
	for _, tc := range []struct {
		name string
		kill bool
	}{{"GracefulStop", false}, {"Kill9", true}} {
		t.Run(tc.name, func(t *testing.T) {
			canary := newCanary(t)
			dir := t.TempDir()
			s := e2etest.Start(t, cmkdbBin, dir, "--log-level", "debug", "--key-check-interval", "1h")
			writeCanary(t, s.URI, canary)

			scanForCanary(t, s, canary, "while running")
			if tc.kill {
				s.Kill(t)
			} else {
				s.Stop(t)
			}
			t.Logf("files: %q", listTree(t, dir))
			scanForCanary(t, s, canary, "after "+tc.name)

			s2 := e2etest.Start(t, cmkdbBin, dir, "--log-level", "debug", "--key-check-interval", "1h")
			checkCanaryData(t, s2.URI, canary)
			s2.Stop(t)
			scanForCanary(t, s2, canary, "after the restart")
		})
	}
}

// TestCanaryPlaintextControl proves the scan can see data: on a server with
// encryption switched off, the same writes leave the canary on disk.
func TestCanaryPlaintextControl(t *testing.T) {
	e2etest.RequireNodeClients(t)
	canary := newCanary(t)
	s := startServer(t, "--insecure-no-encryption", "--key-check-interval", "1h")
	writeCanary(t, s.URI, canary)
	s.Stop(t)
	hits, _, _, err := e2etest.FindInTree(s.Dir, []byte(canary))
	if err != nil {
		t.Fatal(err)
	}
	if len(hits) == 0 {
		t.Fatalf("with --insecure-no-encryption the canary is nowhere under %s: the scan would not see plaintext", s.Dir)
	}
	t.Logf("plaintext control: canary found in %d files", len(hits))
}
