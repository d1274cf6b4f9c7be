package node

import (
	"bufio"
	"context"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/keys"
	"github.com/cmkdb/cmkdb/internal/kms/local"
	"github.com/cmkdb/cmkdb/internal/snapshot"
	"github.com/cmkdb/cmkdb/internal/storage"
	"github.com/cmkdb/cmkdb/internal/testenv"
)

// The snapshot crash test: a child inserts documents and takes snapshots
// into a snapshot store over and over (node.Checkpoint, then the store's
// Commit), and is killed with SIGKILL at a random instant. After each kill
// every snapshot the store lists must match its manifest and open — its
// keystore with the CMK, every database — and hold at least the documents
// acknowledged before the snapshot began; nothing half-written is listed.
const snapshotChildEnv = "CMKDB_SNAPSHOT_CHILD_DIR"

func snapshotChild(dir string) {
	fail := func(what string, err error) {
		fmt.Fprintln(os.Stderr, "child:", what+":", err)
		os.Exit(2)
	}
	n, err := openNodeForChild(Layout{Dir: dir})
	if err != nil {
		fail("open", err)
	}
	w := &writerNode{Node: n}
	store := snapshot.Store{Dir: filepath.Join(dir, "snapshots")}
	if err := store.Clean(); err != nil {
		fail("clean", err)
	}
	out := bufio.NewWriter(os.Stdout)
	go func() {
		for i := 0; ; i++ {
			id := fmt.Sprintf("%d-%06d", os.Getpid(), i)
			if err := w.insert("app", "c", bson.D{{Key: "_id", Value: id}, {Key: "pad", Value: strings.Repeat("p", 300)}}); err != nil {
				fail("insert", err)
			}
		}
	}()
	for s := 0; ; s++ {
		before, err := w.count("app", "c")
		if err != nil {
			fail("count", err)
		}
		id := fmt.Sprintf("s%d-%d", os.Getpid(), s)
		p, err := store.Begin("g", "c", id)
		if err != nil {
			fail("begin", err)
		}
		info, err := n.Checkpoint(context.Background(), p.Dir())
		if err != nil {
			fail("checkpoint", err)
		}
		if _, err := p.Commit(snapshot.Manifest{CreatedAt: time.Now(), NodeID: info.NodeID, CMK: info.CMK, DatabaseIDs: info.DatabaseIDs}); err != nil {
			fail("commit", err)
		}
		fmt.Fprintf(out, "snapshot %s %d\n", id, before)
		out.Flush()
	}
}

func TestSnapshotKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test runs child processes")
	}
	dir := t.TempDir()
	l := Layout{Dir: dir}
	store := snapshot.Store{Dir: filepath.Join(dir, "snapshots")}
	r := mrand.New(mrand.NewPCG(13, 14))
	const rounds = 20
	minDocs := map[string]int{}
	for round := 0; round < rounds; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), snapshotChildEnv+"="+dir)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		lines := make(chan string, 64)
		go func() {
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		// Killed a random instant after its first snapshot (one round in
		// five: after its start, to crash it opening or in its first
		// snapshot), not at a fixed time from its start: a race-built
		// child on a loaded machine may take longer than that to open.
		delay := time.Duration(10+r.IntN(700)) * time.Millisecond
		var killAfter <-chan time.Time
		if r.IntN(5) == 0 {
			killAfter = time.After(delay)
		}
		giveUp := time.After(testenv.Timeout(time.Minute))
	collect:
		for {
			select {
			case line, ok := <-lines:
				if !ok {
					break collect
				}
				var id string
				var n int
				if _, err := fmt.Sscanf(line, "snapshot %s %d", &id, &n); err == nil {
					minDocs[id] = n
				}
				if killAfter == nil {
					killAfter, giveUp = time.After(delay), nil
				}
			case <-killAfter:
				cmd.Process.Signal(syscall.SIGKILL)
				break collect
			case <-giveUp:
				cmd.Process.Signal(syscall.SIGKILL)
				cmd.Wait()
				t.Fatalf("round %d: the child did not run: %s", round, stderr.String())
			}
		}
		for line := range lines {
			var id string
			var n int
			if _, err := fmt.Sscanf(line, "snapshot %s %d", &id, &n); err == nil {
				minDocs[id] = n
			}
		}
		cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("round %d: child exited on its own: %s", round, stderr.String())
		}
		listed, err := store.List("g", "c")
		if err != nil {
			t.Fatalf("round %d: the store does not list after kill -9: %v", round, err)
		}
		for _, m := range listed {
			if err := snapshot.Verify(store.Path("g", "c", m.ID), m); err != nil {
				t.Fatalf("round %d: listed snapshot %s: %v", round, m.ID, err)
			}
		}
		// The newest listed snapshot opens and holds what was acknowledged
		// before it began.
		if len(listed) > 0 {
			m := listed[len(listed)-1]
			got := openSnapshotDocs(t, l, store.Path("g", "c", m.ID))
			if want, ok := minDocs[m.ID]; ok && got < want {
				t.Fatalf("round %d: snapshot %s holds %d documents, %d were acknowledged before it began", round, m.ID, got, want)
			}
		}
	}
	if len(minDocs) == 0 {
		t.Fatal("no snapshot completed")
	}
	t.Logf("%d rounds, %d snapshots completed", rounds, len(minDocs))
}

// openSnapshotDocs opens a snapshot's keystore with the node's local CMK
// and counts app.c's documents in its checkpoint.
func openSnapshotDocs(t *testing.T, l Layout, dir string) int {
	t.Helper()
	// A copy: opening Pebble writes into its directory, and the store's
	// snapshot must stay as its manifest says.
	cp := filepath.Join(t.TempDir(), "snap")
	if err := snapshot.CopyTree(context.Background(), dir, cp, nil); err != nil {
		t.Fatal(err)
	}
	dir = cp
	cmk, _, err := local.Ensure(l.LocalKeyPath())
	if err != nil {
		t.Fatal(err)
	}
	ks, err := keys.Open(context.Background(), dir, cmk)
	if err != nil {
		t.Fatalf("snapshot keystore does not open: %v", err)
	}
	defer ks.Close()
	eng, err := storage.Open(storage.Options{Dir: filepath.Join(dir, "db"), QuarantineDir: filepath.Join(t.TempDir(), "q")}, ks)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	db, err := eng.Database("app")
	if err != nil {
		t.Fatal(err)
	}
	it, err := db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	docs := 0
	for it.First(); it.Valid(); it.Next() {
		if it.Key()[0] == 0x01 { // docstore's document prefix
			docs++
		}
	}
	return docs
}
