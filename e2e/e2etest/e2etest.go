// Package e2etest runs the real cmkdb binary for end-to-end tests: it builds
// it once, starts `cmkdb up` on a data directory as a child process, reads
// the connection string from DIR/up.json, captures the process's output and
// stops it with SIGINT or SIGKILL. It also runs the real MongoDB clients
// (mongosh and Node driver scripts) installed by scripts/install-deps.sh.
//
// Every wait is bounded by a deadline; nothing asserts on elapsed time.
package e2etest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cmkdb/cmkdb/internal/testenv"
)

// Timeouts used by the helpers, before scaling by Scaled. They are generous
// because CI machines are small and loaded; they bound waits, they never
// measure anything.
const (
	StartTimeout   = 60 * time.Second
	StopTimeout    = 60 * time.Second
	CommandTimeout = 120 * time.Second
)

// Scaled returns a deadline scaled for this machine: multiplied by
// CMKDB_TEST_TIMEOUT_SCALE (default 1) and doubled under the race detector
// (see testenv.Scale). Every helper here scales its own timeouts.
func Scaled(d time.Duration) time.Duration { return testenv.Timeout(d) }

// ModuleRoot returns the repository root: the directory holding go.mod,
// found from the current directory upwards.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Build compiles ./cmd/cmkdb into dir and returns the binary's path. With
// race set the binary is built with the race detector, so end-to-end runs
// also look for data races in the server.
func Build(dir string, race bool) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "cmkdb")
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/cmkdb")
	ctx, cancel := context.WithTimeout(context.Background(), Scaled(10*time.Minute))
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin, nil
}

// SyncBuffer is testenv.SyncBuffer, named here for the e2e tests.
type SyncBuffer = testenv.SyncBuffer

// UpInfo is the part of DIR/up.json the tests use.
type UpInfo struct {
	ConnectionString string `json:"connectionString"`
	Dir              string `json:"dir"`
	PID              int    `json:"pid"`
	State            string `json:"state"`
	CMK              string `json:"cmk"`
	// The control plane cmkdb up runs.
	APIURL        string `json:"apiUrl"`
	APIPublicKey  string `json:"apiPublicKey"`
	APIPrivateKey string `json:"apiPrivateKey"`
	GroupID       string `json:"groupId"`
	Cluster       string `json:"cluster"`
}

// Server is one running `cmkdb up` process.
type Server struct {
	Bin  string
	Dir  string
	Args []string
	Info UpInfo
	// URI is the connection string from up.json.
	URI string
	// Output is the process's stdout and stderr, interleaved.
	Output *SyncBuffer

	cmd    *exec.Cmd
	done   chan struct{}
	err    error // the process's exit, valid once done is closed
	logDir string
}

// Start runs `cmkdb up --dir dir --port 0 args...` and waits until the
// process has written its up.json. It registers a cleanup that stops the
// process if the test has not. Every run's output is kept in Output and,
// when the test fails, logged.
func Start(t testing.TB, bin, dir string, args ...string) *Server {
	t.Helper()
	s, err := StartErr(bin, dir, args...)
	if err != nil {
		t.Fatalf("start cmkdb: %v", err)
	}
	t.Cleanup(func() {
		if s.Running() {
			s.Kill(t)
		}
		if t.Failed() {
			t.Logf("cmkdb up --dir %s output:\n%s", dir, s.Output.String())
		}
	})
	return s
}

// StartErr is Start without a testing.TB; the caller must Stop or Kill it.
func StartErr(bin, dir string, args ...string) (*Server, error) {
	return StartCommandErr(bin, dir, append([]string{"up", "--dir", dir, "--port", "0", "--bind", "127.0.0.1"}, args...)...)
}

// StartCommand runs any serving command of the binary (`node --config F`,
// ...) whose data directory is dir, and waits for its up.json, like Start.
func StartCommand(t testing.TB, bin, dir string, full ...string) *Server {
	t.Helper()
	s, err := StartCommandErr(bin, dir, full...)
	if err != nil {
		t.Fatalf("start cmkdb: %v", err)
	}
	t.Cleanup(func() {
		if s.Running() {
			s.Kill(t)
		}
		if t.Failed() {
			t.Logf("cmkdb %s output:\n%s", strings.Join(full, " "), s.Output.String())
		}
	})
	return s
}

// StartCommandErr is StartCommand without a testing.TB.
func StartCommandErr(bin, dir string, full ...string) (*Server, error) {
	s := &Server{Bin: bin, Dir: dir, Args: full, Output: &SyncBuffer{}, done: make(chan struct{})}
	s.cmd = exec.Command(bin, full...)
	s.cmd.Stdout = s.Output
	s.cmd.Stderr = s.Output
	s.cmd.Env = append(os.Environ(), "GOTRACEBACK=all")
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	startTimeout := Scaled(StartTimeout)
	deadline := time.Now().Add(startTimeout)
	upFile := filepath.Join(dir, "up.json")
	for {
		if js, err := os.ReadFile(upFile); err == nil {
			var info UpInfo
			if json.Unmarshal(js, &info) == nil && info.PID == s.cmd.Process.Pid && info.ConnectionString != "" {
				s.Info, s.URI = info, info.ConnectionString
				return s, nil
			}
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("cmkdb %s exited before writing up.json: %v\n%s", strings.Join(full, " "), s.err, s.Output.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = s.cmd.Process.Kill()
			<-s.done
			return nil, fmt.Errorf("cmkdb %s wrote no up.json within %s\n%s", strings.Join(full, " "), startTimeout, s.Output.String())
		}
	}
}

// Running reports whether the process has not exited yet.
func (s *Server) Running() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// Exited returns a channel closed when the process exits.
func (s *Server) Exited() <-chan struct{} { return s.done }

// Stop sends SIGINT and waits for a clean exit (status 0).
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if err := s.StopErr(); err != nil {
		t.Fatalf("stop cmkdb: %v\n%s", err, s.Output.String())
	}
}

// StopErr sends SIGINT and waits for the process to exit; it kills it if it
// does not exit within StopTimeout.
func (s *Server) StopErr() error {
	if !s.Running() {
		return fmt.Errorf("cmkdb had already exited: %v", s.err)
	}
	if err := s.cmd.Process.Signal(syscall.SIGINT); err != nil {
		return err
	}
	select {
	case <-s.done:
		return s.err
	case <-time.After(Scaled(StopTimeout)):
		_ = s.cmd.Process.Kill()
		<-s.done
		return fmt.Errorf("cmkdb did not exit within %s of SIGINT", Scaled(StopTimeout))
	}
}

// Kill sends SIGKILL (kill -9) and waits for the process to be gone.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	if !s.Running() {
		return
	}
	if err := s.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("kill -9 cmkdb: %v", err)
	}
	select {
	case <-s.done:
	case <-time.After(Scaled(StopTimeout)):
		t.Fatalf("cmkdb still running %s after SIGKILL", Scaled(StopTimeout))
	}
}

// CLI runs the cmkdb binary with args (for example `kms local disable --dir
// D`) and returns its combined output; it fails the test on a non-zero exit.
func CLI(t testing.TB, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Scaled(CommandTimeout))
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("cmkdb %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Eventually calls f until it returns nil, and fails the test with f's
// last error if that does not happen within Scaled(timeout). It polls
// often at first, then a few times a second.
func Eventually(t testing.TB, timeout time.Duration, what string, f func() error) {
	t.Helper()
	testenv.Eventually(t, timeout, what, f)
}

// NodeDir is e2e/node: the npm project with mongosh and the Node driver.
func NodeDir() (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "e2e", "node"), nil
}

// RequireNodeModule fails the test unless the Node script directory can
// load module name (an npm package of e2e/node/package.json).
func RequireNodeModule(t testing.TB, name string) {
	t.Helper()
	dir := RequireNodeClients(t)
	cmd := exec.Command("node", "-e", "require.resolve(process.argv[1])", name)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("node module %s is missing: run scripts/install-deps.sh (it installs e2e/node/package.json): %v\n%s", name, err, out)
	}
}

// RequireNodeClients fails the test unless scripts/install-deps.sh has
// installed mongosh and the Node driver.
func RequireNodeClients(t testing.TB) string {
	t.Helper()
	dir, err := NodeDir()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"node_modules/.bin/mongosh", "node_modules/mongodb/package.json"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Fatalf("%s is missing: run scripts/install-deps.sh (it installs mongosh and the Node driver from npm)", p)
		}
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is not on PATH (Node 20 or newer is needed for mongosh and the Node driver)")
	}
	return dir
}

// clientEnv keeps mongosh and node away from the user's home and from any
// network but the server under test: no telemetry, no update checks.
func clientEnv(home string) []string {
	env := []string{}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "HOME=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"HOME="+home,
		"MONGOSH_FORCE_DISABLE_TELEMETRY_FOR_TESTING=1",
		"DO_NOT_TRACK=1",
		"CI=1",
		"NO_COLOR=1",
	)
}

// Mongosh runs `mongosh URI --quiet --eval JS` and returns its stdout. A
// non-zero exit fails the test with stderr and stdout.
func Mongosh(t testing.TB, uri, js string) string {
	t.Helper()
	out, err := MongoshErr(t, uri, js)
	if err != nil {
		t.Fatalf("mongosh: %v", err)
	}
	return out
}

// MongoshErr is Mongosh returning the failure instead of failing the test.
func MongoshErr(t testing.TB, uri, js string) (string, error) {
	t.Helper()
	dir := RequireNodeClients(t)
	ctx, cancel := context.WithTimeout(context.Background(), Scaled(CommandTimeout))
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(dir, "node_modules", ".bin", "mongosh"), uri, "--quiet", "--norc", "--eval", js)
	cmd.Env = clientEnv(t.TempDir())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%v\nstderr:\n%s\nstdout:\n%s", err, stderr.String(), stdout.String())
	}
	return stdout.String(), nil
}

// Node runs `node e2e/node/SCRIPT args...` and returns its stdout; a
// non-zero exit fails the test.
func Node(t testing.TB, script string, args ...string) string {
	t.Helper()
	dir := RequireNodeClients(t)
	ctx, cancel := context.WithTimeout(context.Background(), Scaled(CommandTimeout))
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", append([]string{filepath.Join(dir, script)}, args...)...)
	cmd.Dir = dir
	cmd.Env = clientEnv(t.TempDir())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node %s: %v\nstderr:\n%s\nstdout:\n%s", script, err, stderr.String(), stdout.String())
	}
	return stdout.String()
}

// FindInTree reads every byte of every regular file under dir and returns
// the files containing needle. It fails on unreadable files: a file the
// scan could not read is a file it could not vouch for. Files removed while
// the scan runs (a live server's temporary files) are skipped.
func FindInTree(dir string, needle []byte) (hits []string, files int, bytesRead int64, err error) {
	err = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed while the scan ran (a live server's temporary file)
		}
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		f, err := os.Open(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		defer f.Close()
		n, found, err := containsStream(f, needle)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		files++
		bytesRead += n
		if found {
			hits = append(hits, path)
		}
		return nil
	})
	return hits, files, bytesRead, err
}

// containsStream reads r to the end looking for needle, across chunk
// boundaries.
func containsStream(r io.Reader, needle []byte) (int64, bool, error) {
	buf := make([]byte, 1<<20)
	keep := 0
	var total int64
	found := false
	for {
		n, err := r.Read(buf[keep:])
		total += int64(n)
		if !found && bytes.Contains(buf[:keep+n], needle) {
			found = true
		}
		// Keep the tail that could start a match completed by the next read.
		tail := len(needle) - 1
		if end := keep + n; end > tail {
			copy(buf, buf[end-tail:end])
			keep = tail
		} else {
			keep = end
		}
		if err == io.EOF {
			return total, found, nil
		}
		if err != nil {
			return total, found, err
		}
	}
}
