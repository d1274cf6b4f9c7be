package node

import (
	"bufio"
	"context"
	"errors"
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

	"github.com/cmkdb/cmkdb/internal/testenv"
)

// The restore crash test: a child snapshots a node holding documents a*,
// then over and over inserts a batch of b-<pid>-<batch>-* documents
// (acknowledging each) and restores the snapshot; it is killed with
// SIGKILL at a random instant. After each kill the node must hold all of
// a*, and of the b documents either none (a restore committed) or every
// acknowledged one of the last batch and nothing of earlier batches
// (never a mix of before and after a restore).
const restoreChildEnv = "CMKDB_RESTORE_CHILD_DIR"

func restoreChild(dir string) {
	fail := func(what string, err error) {
		fmt.Fprintln(os.Stderr, "child:", what+":", err)
		os.Exit(2)
	}
	l := Layout{Dir: dir}
	n, err := openNodeForChild(l)
	if err != nil {
		fail("open", err)
	}
	w := &writerNode{Node: n}
	snap := filepath.Join(dir, "snap")
	if _, err := os.Stat(snap); errors.Is(err, os.ErrNotExist) {
		for i := 0; i < 500; i++ {
			if err := w.insert("app", "c", bson.D{{Key: "_id", Value: fmt.Sprintf("a%04d", i)}}); err != nil {
				fail("insert", err)
			}
		}
		if _, err := n.Checkpoint(context.Background(), snap+".tmp"); err != nil {
			fail("checkpoint", err)
		}
		if err := os.Rename(snap+".tmp", snap); err != nil {
			fail("rename", err)
		}
	}
	out := bufio.NewWriter(os.Stdout)
	for batch := 0; ; batch++ {
		fmt.Fprintf(out, "batch %d-%d\n", os.Getpid(), batch)
		out.Flush()
		for i := 0; i < 100; i++ {
			id := fmt.Sprintf("b-%d-%d-%03d", os.Getpid(), batch, i)
			if err := w.insert("app", "c", bson.D{{Key: "_id", Value: id}}); err != nil {
				fail("insert", err)
			}
			fmt.Fprintf(out, "ack app %s\n", id)
			out.Flush()
		}
		if err := n.Restore(context.Background(), snap, nil); err != nil {
			fail("restore", err)
		}
		fmt.Fprintln(out, "restored")
		out.Flush()
	}
}

func TestRestoreKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test runs child processes")
	}
	dir := t.TempDir()
	l := Layout{Dir: dir}
	r := mrand.New(mrand.NewPCG(11, 12))
	const rounds = 25
	restores := 0
	// pending are the batches written since the last restore known to
	// have committed, with their acknowledged documents: the node holds
	// all of them or, if a restore committed unseen, none.
	pending := map[string]map[string]bool{}
	batch := ""
	for round := 0; round < rounds; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), restoreChildEnv+"="+dir)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1024)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		handle := func(line string) {
			switch f := strings.Fields(line); {
			case len(f) == 2 && f[0] == "batch":
				pending["b-"+f[1]+"-"] = map[string]bool{}
				batch = "b-" + f[1] + "-"
			case len(f) == 3 && f[0] == "ack":
				pending[batch][f[2]] = true
			case line == "restored":
				restores++
				pending = map[string]map[string]bool{}
			}
		}
		killAfter := time.Duration(10+r.IntN(800)) * time.Millisecond
		var deadline <-chan time.Time
		firstLine := time.After(testenv.Timeout(time.Minute))
	collect:
		for {
			select {
			case line, ok := <-lines:
				if !ok {
					break collect
				}
				handle(line)
				if deadline == nil {
					deadline, firstLine = time.After(killAfter), nil
				}
			case <-deadline:
				cmd.Process.Signal(syscall.SIGKILL)
				break collect
			case <-firstLine:
				cmd.Process.Signal(syscall.SIGKILL)
				cmd.Wait()
				t.Fatalf("round %d: the child said nothing within %s: %s", round, testenv.Timeout(time.Minute), stderr.String())
			}
		}
		for line := range lines {
			handle(line)
		}
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("round %d: child exited on its own (%v): %s", round, err, stderr.String())
		}

		n, err := openNodeForChild(l)
		if err != nil {
			t.Fatalf("round %d: node does not open after kill -9 during a restore: %v", round, err)
		}
		w := &writerNode{Node: n}
		as, bs := 0, map[string]bool{}
		for _, id := range w.ids(t, "app", "c") {
			if strings.HasPrefix(id, "a") {
				as++
			} else {
				bs[id] = true
			}
		}
		if as != 500 {
			t.Fatalf("round %d: %d of the snapshot's 500 documents", round, as)
		}
		if len(bs) > 0 {
			for id := range bs {
				ok := false
				for prefix := range pending {
					ok = ok || strings.HasPrefix(id, prefix)
				}
				if !ok {
					t.Fatalf("round %d: %s survives from a batch a restore removed", round, id)
				}
			}
			for _, acked := range pending {
				for id := range acked {
					if !bs[id] {
						t.Fatalf("round %d: acknowledged %s lost though no restore committed since (%d b documents there)", round, id, len(bs))
					}
				}
			}
		} else {
			pending = map[string]map[string]bool{} // a restore committed
		}
		_, ids := keystoreIDs(t, n)
		if got := dirNames(t, l.DataDir()); fmt.Sprint(got) != fmt.Sprint(ids) {
			t.Fatalf("round %d: data directory holds %v, the keystore names %v", round, got, ids)
		}
		for _, p := range []string{l.NextDir(), filepath.Join(dir, "node", "quarantine")} {
			if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("round %d: %s exists after opening", round, p)
			}
		}
		n.Close()
	}
	if restores == 0 {
		t.Fatal("no restore completed: the test exercised little")
	}
	t.Logf("%d rounds, %d completed restores", rounds, restores)
}
