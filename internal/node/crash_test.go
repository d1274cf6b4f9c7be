package node

import (
	"bufio"
	"context"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/cmkdb/cmkdb/internal/kms/local"
	"github.com/cmkdb/cmkdb/internal/testenv"
)

// The crash test re-executes this test binary as a child that writes and
// rotates keys, kills it with SIGKILL at a random instant, and checks that
// every write the child acknowledged (after a synced commit) survived and
// that every database opens and reads cleanly.
const crashChildEnv = "CMKDB_CRASH_CHILD_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		os.Exit(0)
	}
	if dir := os.Getenv(reencryptChildEnv); dir != "" {
		reencryptChild(dir)
		os.Exit(0)
	}
	if dir := os.Getenv(restoreChildEnv); dir != "" {
		restoreChild(dir)
		os.Exit(0)
	}
	if dir := os.Getenv(snapshotChildEnv); dir != "" {
		snapshotChild(dir)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashChild runs until killed. Every line it prints on stdout is a promise:
// "ack DB KEY" means the write of KEY to DB was committed with Sync.
func crashChild(dir string) {
	ctx := context.Background()
	l := Layout{Dir: dir}
	cmk, _, err := local.Ensure(l.LocalKeyPath())
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	n, err := Open(ctx, l, cmk, Options{CacheSize: 4 << 20})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	eng, ks, _, err := n.Acquire()
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	out := bufio.NewWriter(os.Stdout)
	r := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), uint64(os.Getpid())))
	dbs := []string{"alpha", "beta", "gamma"}
	seq := time.Now().UnixNano()
	for {
		name := dbs[r.IntN(len(dbs))]
		db, err := eng.Database(name)
		if err != nil {
			if db, err = eng.CreateDatabase(name); err != nil {
				fmt.Fprintln(os.Stderr, "child: create:", err)
				os.Exit(2)
			}
		}
		switch x := r.IntN(100); {
		case x < 3:
			if err := ks.RotateMasterKey(ctx); err != nil {
				fmt.Fprintln(os.Stderr, "child: rotate master:", err)
				os.Exit(2)
			}
		case x < 6:
			if _, err := eng.RotateDatabaseKey(name); err != nil {
				fmt.Fprintln(os.Stderr, "child: rotate db key:", err)
				os.Exit(2)
			}
		case x < 8:
			_ = db.Flush()
		default:
			b := db.NewBatch()
			var keys []string
			for i := 0; i < 1+r.IntN(20); i++ {
				seq++
				k := "k" + strconv.FormatInt(seq, 10)
				b.Set([]byte(k), []byte(strings.Repeat("v", r.IntN(2000))+k), nil)
				keys = append(keys, k)
			}
			if err := b.Commit(pebble.Sync); err != nil {
				fmt.Fprintln(os.Stderr, "child: commit:", err)
				os.Exit(2)
			}
			for _, k := range keys {
				fmt.Fprintf(out, "ack %s %s\n", name, k)
			}
			out.Flush()
		}
	}
}

func TestCrashKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test runs child processes")
	}
	dir := t.TempDir()
	acked := map[string]map[string]bool{}
	r := mrand.New(mrand.NewPCG(7, 8))
	const rounds = 50
	for round := 0; round < rounds; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
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
		// The kill comes at a random instant after the child's first
		// acknowledged write, not after a fixed time from its start: a
		// race-instrumented child on a loaded machine can take longer than
		// any fixed instant to open the node, and every round then tested
		// nothing. One round in five is still killed at a random instant
		// from its start, to crash it while opening and creating keys.
		killAfter := time.Duration(20+r.IntN(400)) * time.Millisecond
		var deadline <-chan time.Time
		firstAck := time.After(testenv.Timeout(time.Minute))
		if r.IntN(5) == 0 {
			deadline, firstAck = time.After(killAfter), nil
		}
	collect:
		for {
			select {
			case line, ok := <-lines:
				if !ok {
					break collect
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
			record(acked, line)
		}
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("round %d: child exited on its own (%v): %s", round, err, stderr.String())
		}
		verifyAfterCrash(t, dir, acked, round)
	}
	total := 0
	for _, m := range acked {
		total += len(m)
	}
	if total < 100 {
		t.Fatalf("only %d acknowledged writes over %d rounds: the test did not exercise much", total, rounds)
	}
	t.Logf("%d rounds, %d acknowledged writes verified", rounds, total)
}

func record(acked map[string]map[string]bool, line string) {
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "ack" {
		return
	}
	if acked[f[1]] == nil {
		acked[f[1]] = map[string]bool{}
	}
	acked[f[1]][f[2]] = true
}

func verifyAfterCrash(t *testing.T, dir string, acked map[string]map[string]bool, round int) {
	t.Helper()
	l := Layout{Dir: dir}
	cmk, _, err := local.Ensure(l.LocalKeyPath())
	if err != nil {
		t.Fatalf("round %d: %v", round, err)
	}
	n, err := Open(context.Background(), l, cmk, Options{CacheSize: 4 << 20})
	if err != nil {
		t.Fatalf("round %d: node does not open after kill -9: %v", round, err)
	}
	defer n.Close()
	eng, _, release, err := n.Acquire()
	if err != nil {
		t.Fatalf("round %d: node is not available after kill -9: %v", round, err)
	}
	defer release()
	for _, name := range eng.Databases() {
		db, err := eng.Database(name)
		if err != nil {
			t.Fatalf("round %d: database %s does not open: %v", round, name, err)
		}
		it, err := db.NewIter(nil)
		if err != nil {
			t.Fatal(err)
		}
		for it.First(); it.Valid(); it.Next() {
			_ = it.Value()
		}
		if err := it.Close(); err != nil {
			t.Fatalf("round %d: database %s does not read: %v", round, name, err)
		}
	}
	for name, keys := range acked {
		db, err := eng.Database(name)
		if err != nil {
			t.Fatalf("round %d: database %s with acknowledged writes is missing: %v", round, name, err)
		}
		for k := range keys {
			v, closer, err := db.Get([]byte(k))
			if err != nil {
				t.Fatalf("round %d: acknowledged write %s/%s lost: %v", round, name, k, err)
			}
			if !strings.HasSuffix(string(v), k) {
				t.Fatalf("round %d: %s/%s has the wrong value", round, name, k)
			}
			closer.Close()
		}
	}
}
