package wire

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ErrServerStarted is returned by a second call to Serve.
var ErrServerStarted = errors.New("wire: server already started")

// Config configures a Server. Only Handler is required.
type Config struct {
	// Handler executes every well-formed command.
	Handler Handler
	// TLS, when set, makes every accepted connection a TLS server
	// connection; the handshake runs on the connection's goroutine so a
	// slow client cannot stall Accept.
	TLS *tls.Config
	// MaxConns caps concurrently open connections; connections beyond it
	// are closed on accept, as mongod does. <= 0 means no limit.
	MaxConns int
	// MaxMessageSize caps incoming messages; <= 0 means MaxMessageSizeBytes.
	MaxMessageSize int
	// Logger receives connection events and, at debug level, one line per
	// command (bodies of auth commands are always redacted). nil discards.
	Logger *slog.Logger
	// HandshakeTimeout bounds the TLS handshake; <= 0 means 10s.
	HandshakeTimeout time.Duration
	// ShutdownTimeout is how long Serve waits, once its context is done,
	// for in-flight commands to finish before cancelling their contexts
	// and closing the connections; <= 0 means 10s.
	ShutdownTimeout time.Duration
}

// Server accepts client connections and serves each on its own goroutine.
type Server struct {
	cfg Config
	log *slog.Logger

	started   atomic.Bool
	closing   atomic.Bool // set once: connections stop reading new requests
	connIDs   atomic.Int64
	requestID atomic.Int32 // ids of server-sent messages

	mu    sync.Mutex
	conns map[*conn]struct{}

	// Traffic since the server started (serverStatus's network section).
	bytesIn, bytesOut, requests atomic.Int64
}

// NetStats is a server's traffic since it started.
type NetStats struct {
	BytesIn, BytesOut, NumRequests int64
	// TotalCreated counts the connections ever accepted.
	TotalCreated int64
}

// Stats returns the server's traffic so far.
func (s *Server) Stats() NetStats {
	return NetStats{BytesIn: s.bytesIn.Load(), BytesOut: s.bytesOut.Load(), NumRequests: s.requests.Load(), TotalCreated: s.connIDs.Load()}
}

// NewServer validates cfg and returns a Server ready for Serve.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Handler == nil {
		return nil, errors.New("wire: Config.Handler is required")
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = MaxMessageSizeBytes
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, log: log.With("component", "wire"), conns: map[*conn]struct{}{}}, nil
}

// Serve accepts connections on ln until ctx is done or Accept fails, then
// shuts down gracefully: it stops accepting, lets every in-flight command
// finish and reply (idle connections close at once), and after
// ShutdownTimeout cancels the commands' contexts and closes what is left.
// It returns once every connection goroutine has exited: nil after a
// shutdown through ctx, otherwise the Accept error. Serve closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if !s.started.CompareAndSwap(false, true) {
		return ErrServerStarted
	}
	// Command contexts keep ctx's values but not its cancellation: a
	// graceful shutdown lets running commands finish.
	cmdCtx, hardStop := context.WithCancel(context.WithoutCancel(ctx))
	defer hardStop()

	stopWatch := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			_ = ln.Close()
		case <-stopWatch:
		}
	}()

	var wg sync.WaitGroup
	acceptErr := s.acceptLoop(ctx, ln, func(c *conn) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.serve(cmdCtx)
		}()
	})
	close(stopWatch)
	_ = ln.Close()

	s.beginShutdown()
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(s.cfg.ShutdownTimeout):
		s.log.Warn("shutdown timeout: closing busy connections", "timeout", s.cfg.ShutdownTimeout)
		hardStop()
		s.closeAll()
		<-done
	}
	return acceptErr
}

// acceptLoop accepts until ctx is done (returning nil) or Accept fails.
func (s *Server) acceptLoop(ctx context.Context, ln net.Listener, start func(*conn)) error {
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Transient (e.g. EMFILE surfaced as timeout): back off
				// rather than spin or give up.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "err", err, "delay", delay)
				select {
				case <-time.After(delay):
					continue
				case <-ctx.Done():
					return nil
				}
			}
			return fmt.Errorf("wire: accept: %w", err)
		}
		delay = 0
		c := &conn{srv: s, nc: nc, id: s.connIDs.Add(1)}
		if !s.admit(c) {
			s.log.Info("connection refused: too many open connections", "remote", nc.RemoteAddr().String(), "max", s.cfg.MaxConns)
			_ = nc.Close()
			continue
		}
		start(c)
	}
}

// admit registers c unless the server is full or shutting down.
func (s *Server) admit(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() || (s.cfg.MaxConns > 0 && len(s.conns) >= s.cfg.MaxConns) {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) remove(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
}

// beginShutdown makes every connection stop after its current command.
// Connections check closing before each read; the past read deadline
// unblocks those already waiting for a request (writes are unaffected, so
// in-flight replies still go out).
func (s *Server) beginShutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing.Store(true)
	for c := range s.conns {
		_ = c.nc.SetReadDeadline(time.Now())
	}
}

func (s *Server) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		_ = c.nc.Close()
	}
}

// NumConns returns the number of open connections.
func (s *Server) NumConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Conns returns the state of every open connection that finished its
// handshake (for currentOp and similar).
func (s *Server) Conns() []*ConnState {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*ConnState, 0, len(s.conns))
	for c := range s.conns {
		if st := c.state.Load(); st != nil {
			out = append(out, st)
		}
	}
	return out
}

// nextRequestID numbers server-sent messages.
func (s *Server) nextRequestID() int32 { return s.requestID.Add(1) }
