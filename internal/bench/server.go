package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Server is a `cmkdb up` child process that Compare benchmarks.
type Server struct {
	Name string
	Dir  string
	URI  string

	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
	err  error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 { // keep the first MiB: enough to say why it failed
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// StartServer runs `bin up --dir dir --port 0 args...` on 127.0.0.1 and
// waits, up to timeout, for it to write dir/up.json.
func StartServer(ctx context.Context, name, bin, dir string, timeout time.Duration, args ...string) (*Server, error) {
	full := append([]string{"up", "--dir", dir, "--port", "0", "--bind", "127.0.0.1", "--log-level", "warn"}, args...)
	s := &Server{Name: name, Dir: dir, out: &lockedBuffer{}, done: make(chan struct{})}
	s.cmd = exec.Command(bin, full...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s server: %w", name, err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		var info struct {
			ConnectionString string `json:"connectionString"`
			PID              int    `json:"pid"`
		}
		if js, err := os.ReadFile(filepath.Join(dir, "up.json")); err == nil &&
			json.Unmarshal(js, &info) == nil && info.PID == s.cmd.Process.Pid && info.ConnectionString != "" {
			s.URI = info.ConnectionString
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("%s server exited before it was up: %v\n%s", name, s.err, s.out.String())
		case <-ctx.Done():
			s.kill()
			return nil, ctx.Err()
		case <-deadline.C:
			s.kill()
			return nil, fmt.Errorf("%s server not up within %s\n%s", name, timeout, s.out.String())
		case <-tick.C:
		}
	}
}

func (s *Server) kill() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

// Stop sends SIGINT and waits up to timeout, then kills the process.
func (s *Server) Stop(timeout time.Duration) error {
	select {
	case <-s.done:
		return fmt.Errorf("%s server had exited: %v\n%s", s.Name, s.err, s.out.String())
	default:
	}
	if err := s.cmd.Process.Signal(syscall.SIGINT); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-s.done:
		return s.err
	case <-time.After(timeout):
		s.kill()
		return fmt.Errorf("%s server did not stop within %s of SIGINT", s.Name, timeout)
	}
}

// Output is what the process printed (its first MiB).
func (s *Server) Output() string { return s.out.String() }
