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
	"sync"
	"syscall"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/testenv"
)

// The re-encryption crash test: a child inserts documents through docstore
// while it re-encrypts itself in place over and over, and is killed with
// SIGKILL at a random instant — while copying, switching, moving or
// deleting. After each kill the node must open, hold every document the
// child acknowledged, and keep exactly the databases its keystore names:
// nothing quarantined, nothing half-switched left behind.
const reencryptChildEnv = "CMKDB_REENCRYPT_CHILD_DIR"

func reencryptChild(dir string) {
	fail := func(what string, err error) {
		fmt.Fprintln(os.Stderr, "child:", what+":", err)
		os.Exit(2)
	}
	l := Layout{Dir: dir}
	w := &writerNode{}
	n, err := openNodeForChild(l)
	if err != nil {
		fail("open", err)
	}
	w.Node = n
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	seq := time.Now().UnixNano()
	for _, db := range []string{"alpha", "beta"} {
		go func(db string, seq int64) {
			for i := seq; ; i++ {
				id := fmt.Sprintf("%s-%d", db, i)
				if err := w.insert(db, "c", bson.D{{Key: "_id", Value: id}, {Key: "pad", Value: strings.Repeat("x", 200)}}); err != nil {
					fail("insert", err)
				}
				mu.Lock()
				fmt.Fprintf(out, "ack %s %s\n", db, id)
				out.Flush()
				mu.Unlock()
			}
		}(db, seq)
	}
	for {
		if err := n.Reencrypt(context.Background(), nil); err != nil {
			fail("re-encrypt", err)
		}
		mu.Lock()
		fmt.Fprintln(out, "reencrypted")
		out.Flush()
		mu.Unlock()
	}
}

func TestReencryptKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test runs child processes")
	}
	dir := t.TempDir()
	l := Layout{Dir: dir}
	acked := map[string]map[string]bool{}
	r := mrand.New(mrand.NewPCG(9, 10))
	const rounds = 25
	switches := 0
	for round := 0; round < rounds; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), reencryptChildEnv+"="+dir)
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
		// Killed a random instant after its first acknowledged write, so
		// that some rounds die before their first switch and others after
		// several.
		killAfter := time.Duration(10+r.IntN(600)) * time.Millisecond
		var deadline <-chan time.Time
		firstAck := time.After(testenv.Timeout(time.Minute))
	collect:
		for {
			select {
			case line, ok := <-lines:
				if !ok {
					break collect
				}
				if line == "reencrypted" {
					switches++
				}
				record(acked, line)
				if deadline == nil {
					deadline, firstAck = time.After(killAfter), nil
				}
			case <-deadline:
				cmd.Process.Signal(syscall.SIGKILL)
				break collect
			case <-firstAck:
				cmd.Process.Signal(syscall.SIGKILL)
				cmd.Wait()
				t.Fatalf("round %d: the child acknowledged no write within %s: %s", round, testenv.Timeout(time.Minute), stderr.String())
			}
		}
		for line := range lines {
			if line == "reencrypted" {
				switches++
			}
			record(acked, line)
		}
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("round %d: child exited on its own (%v): %s", round, err, stderr.String())
		}

		n, err := openNodeForChild(l)
		if err != nil {
			t.Fatalf("round %d: node does not open after kill -9 during re-encryption: %v", round, err)
		}
		w := &writerNode{Node: n}
		for db, ids := range acked {
			have := map[string]bool{}
			for _, id := range w.ids(t, db, "c") {
				have[id] = true
			}
			for id := range ids {
				if !have[id] {
					t.Fatalf("round %d: acknowledged %s %s lost", round, db, id)
				}
			}
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
	total := 0
	for _, m := range acked {
		total += len(m)
	}
	if switches == 0 || total < 100 {
		t.Fatalf("%d switches and %d acknowledged writes over %d rounds: the test exercised little", switches, total, rounds)
	}
	t.Logf("%d rounds, %d completed re-encryptions, %d acknowledged writes verified", rounds, switches, total)
}
