// Package transport is raft's network transport over mutual TLS: replica-set
// members authenticate each other with certificates issued by the control
// plane's CA, and a member's identity (its certificate's common name,
// cmkdb-member/<project>/<cluster>/<member>) is bound to its project and
// cluster, so a member only ever talks to members of its own cluster.
//
// Both ends require TLS 1.3, the ALPN protocol "cmkdb-raft/1", and a peer
// certificate that chains to the CA, is valid for both server and client
// authentication and names a member of the same project and cluster. The
// accepting end handshakes each connection in its own goroutine under a
// deadline and hands raft only verified connections, so a silent or hostile
// peer never blocks another's; it then confirms with one byte, so a dialer
// whose certificate was refused learns it from Dial rather than from its
// first RPC.
package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// ALPN is the application protocol both ends must negotiate.
const ALPN = "cmkdb-raft/1"

// DefaultHandshakeTimeout bounds a handshake when Config leaves it zero.
const DefaultHandshakeTimeout = 10 * time.Second

// accepted is the byte the accepting end writes once it has verified the
// dialer, before any raft traffic.
const accepted byte = 0x01

// Config configures a StreamLayer.
type Config struct {
	// TLS is this member's certificate and key; its common name must be
	// Self.CommonName().
	TLS tls.Certificate
	// CA holds the certificates peers must chain to.
	CA *x509.CertPool
	// Self is this member's identity; peers must share its project and
	// cluster.
	Self Identity
	// Advertise is the address other members reach this one at (Addr);
	// the listener's own address when nil.
	Advertise net.Addr
	// HandshakeTimeout bounds a TLS handshake, accepting or dialing
	// (DefaultHandshakeTimeout when zero).
	HandshakeTimeout time.Duration
	// Logger receives refused connections (slog.Default() when nil).
	Logger *slog.Logger
}

// StreamLayer is a raft.StreamLayer over mutual TLS.
type StreamLayer struct {
	ln        net.Listener
	self      Identity
	advertise net.Addr
	timeout   time.Duration
	log       *slog.Logger
	server    *tls.Config
	client    *tls.Config

	conns chan net.Conn // verified inbound connections
	done  chan struct{} // closed by Close
	// failed is closed when the listener fails for good; err says why.
	failed chan struct{}
	err    error

	closeOnce sync.Once
	wg        sync.WaitGroup
	mu        sync.Mutex
	pending   map[net.Conn]struct{} // inbound connections mid-handshake
}

var _ raft.StreamLayer = (*StreamLayer)(nil)

// Listen listens on bind (host:port, TCP) and returns a StreamLayer on it.
func Listen(bind string, cfg Config) (*StreamLayer, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("transport: %w", err)
	}
	l, err := NewStreamLayer(ln, cfg)
	if err != nil {
		ln.Close()
		return nil, err
	}
	return l, nil
}

// NewStreamLayer serves raft connections on ln, which it owns from now on
// (Close closes it).
func NewStreamLayer(ln net.Listener, cfg Config) (*StreamLayer, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	timeout := cfg.HandshakeTimeout
	if timeout <= 0 {
		timeout = DefaultHandshakeTimeout
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	l := &StreamLayer{
		ln:        ln,
		self:      cfg.Self,
		advertise: cfg.Advertise,
		timeout:   timeout,
		log:       logger.With("component", "raft-transport", "self", cfg.Self.CommonName()),
		conns:     make(chan net.Conn),
		done:      make(chan struct{}),
		failed:    make(chan struct{}),
		pending:   make(map[net.Conn]struct{}),
	}
	l.server = &tls.Config{
		Certificates: []tls.Certificate{cfg.TLS},
		MinVersion:   tls.VersionTLS13,
		NextProtos:   []string{ALPN},
		// The certificate is required here and verified in
		// VerifyConnection: against the CA, for both usages, and for the
		// identity.
		ClientAuth:       tls.RequireAnyClientCert,
		ClientCAs:        cfg.CA,
		VerifyConnection: l.verifier(cfg.CA),
		// Every connection is a full handshake with a fresh verification.
		SessionTicketsDisabled: true,
	}
	l.client = &tls.Config{
		Certificates: []tls.Certificate{cfg.TLS},
		MinVersion:   tls.VersionTLS13,
		NextProtos:   []string{ALPN},
		// Members are identified by their certificate's common name, not
		// by the address dialed (which may be a proxy or a NAT address):
		// the standard host name check is replaced by VerifyConnection,
		// which verifies the chain itself.
		InsecureSkipVerify: true,
		VerifyConnection:   l.verifier(cfg.CA),
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l, nil
}

func (cfg *Config) check() error {
	if err := cfg.Self.validate(); err != nil {
		return err
	}
	if cfg.CA == nil {
		return errors.New("transport: no CA to verify members against")
	}
	if len(cfg.TLS.Certificate) == 0 || cfg.TLS.PrivateKey == nil {
		return errors.New("transport: no member certificate and key")
	}
	leaf := cfg.TLS.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(cfg.TLS.Certificate[0]); err != nil {
			return fmt.Errorf("transport: member certificate: %w", err)
		}
	}
	if leaf.Subject.CommonName != cfg.Self.CommonName() {
		return fmt.Errorf("transport: member certificate names %q, not %q", leaf.Subject.CommonName, cfg.Self.CommonName())
	}
	return nil
}

// verifier checks a peer: TLS 1.3, the ALPN protocol, a certificate chain
// to ca valid for server and client authentication, and a member name in
// this member's project and cluster.
func (l *StreamLayer) verifier(ca *x509.CertPool) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		_, err := l.verifyPeer(ca, cs)
		return err
	}
}

func (l *StreamLayer) verifyPeer(ca *x509.CertPool, cs tls.ConnectionState) (Identity, error) {
	if cs.Version < tls.VersionTLS13 {
		return Identity{}, errors.New("transport: peer did not use TLS 1.3")
	}
	if cs.NegotiatedProtocol != ALPN {
		return Identity{}, fmt.Errorf("transport: peer did not negotiate the %s protocol", ALPN)
	}
	if len(cs.PeerCertificates) == 0 {
		return Identity{}, errors.New("transport: peer presented no certificate")
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	// KeyUsages means "any of": check each usage on its own, since a member
	// must be both (a client-only certificate is not a member's).
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
			return Identity{}, fmt.Errorf("transport: peer certificate %q is not a member certificate of this CA: %w", leaf.Subject.CommonName, err)
		}
	}
	id, err := ParseIdentity(leaf.Subject.CommonName)
	if err != nil {
		return Identity{}, fmt.Errorf("transport: peer is not a member: %w", err)
	}
	if id.Project != l.self.Project {
		return Identity{}, fmt.Errorf("transport: peer %s belongs to project %q, not %q", id, id.Project, l.self.Project)
	}
	if id.Cluster != l.self.Cluster {
		return Identity{}, fmt.Errorf("transport: peer %s belongs to cluster %q, not %q", id, id.Cluster, l.self.Cluster)
	}
	return id, nil
}

// acceptLoop accepts TCP connections and hands each to its own handshake.
func (l *StreamLayer) acceptLoop() {
	defer l.wg.Done()
	var delay time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if l.closed() {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// Out of file descriptors and the like: back off and retry.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				l.log.Warn("accepting a connection failed; retrying", "error", err, "after", delay)
				select {
				case <-time.After(delay):
					continue
				case <-l.done:
					return
				}
			}
			l.err = fmt.Errorf("transport: listener failed: %w", err)
			l.log.Error("listener failed", "error", err)
			close(l.failed)
			return
		}
		delay = 0
		if !l.track(c) {
			c.Close()
			return
		}
		l.wg.Add(1)
		go l.handshake(c)
	}
}

func isTemporary(err error) bool {
	t, ok := err.(interface{ Temporary() bool })
	return ok && t.Temporary()
}

// track records c as mid-handshake, unless the layer is closed.
func (l *StreamLayer) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed() {
		return false
	}
	l.pending[c] = struct{}{}
	return true
}

func (l *StreamLayer) untrack(c net.Conn) {
	l.mu.Lock()
	delete(l.pending, c)
	l.mu.Unlock()
}

// handshake verifies one inbound connection under the handshake deadline,
// confirms it to the dialer and delivers it to Accept; a refused peer is
// logged and closed.
func (l *StreamLayer) handshake(raw net.Conn) {
	defer l.wg.Done()
	defer l.untrack(raw)
	remote := raw.RemoteAddr().String()
	deadline := time.Now().Add(l.timeout)
	raw.SetDeadline(deadline)
	tc := tls.Server(raw, l.server)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	err := tc.HandshakeContext(ctx)
	cancel()
	var peer Identity
	if err == nil {
		// Verified in VerifyConnection already; this only extracts it.
		peer, err = ParseIdentity(tc.ConnectionState().PeerCertificates[0].Subject.CommonName)
	}
	if err == nil {
		_, err = tc.Write([]byte{accepted})
	}
	if err == nil {
		err = raw.SetDeadline(time.Time{})
	}
	if err != nil {
		if !l.closed() {
			// TLS and verification errors name certificates and
			// protocols, never key material.
			l.log.Warn("refused a raft connection", "remote", remote, "error", err)
		}
		tc.Close()
		return
	}
	select {
	case l.conns <- &conn{Conn: tc, peer: peer}:
	case <-l.done:
		tc.Close()
	}
}

// Accept returns the next verified inbound connection. It never fails for
// one bad peer (those are logged and dropped); it fails once the layer is
// closed (an error wrapping net.ErrClosed) or its listener has failed.
func (l *StreamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, fmt.Errorf("transport: stream layer closed: %w", net.ErrClosed)
	case <-l.failed:
		return nil, l.err
	}
}

// Close stops listening, aborts handshakes in progress and unblocks
// Accept. Connections already returned stay open. It waits for the layer's
// goroutines to end.
func (l *StreamLayer) Close() error {
	var err error
	l.closeOnce.Do(func() {
		l.mu.Lock()
		close(l.done)
		for c := range l.pending {
			c.Close()
		}
		l.mu.Unlock()
		err = l.ln.Close()
		l.wg.Wait()
	})
	return err
}

func (l *StreamLayer) closed() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// Addr is the address other members reach this one at: Config.Advertise,
// or the listener's address.
func (l *StreamLayer) Addr() net.Addr {
	if l.advertise != nil {
		return l.advertise
	}
	return l.ln.Addr()
}

// Dial connects to the member at address, verifies it and waits for it to
// accept this member, all within timeout (HandshakeTimeout when zero).
func (l *StreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if timeout <= 0 {
		timeout = l.timeout
	}
	deadline := time.Now().Add(timeout)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	d := net.Dialer{}
	raw, err := d.DialContext(ctx, "tcp", string(address))
	if err != nil {
		return nil, fmt.Errorf("transport: dialing %s: %w", address, err)
	}
	raw.SetDeadline(deadline)
	tc := tls.Client(raw, l.client)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("transport: handshake with %s: %w", address, err)
	}
	peer, err := ParseIdentity(tc.ConnectionState().PeerCertificates[0].Subject.CommonName)
	if err != nil {
		raw.Close()
		return nil, fmt.Errorf("transport: %s: %w", address, err)
	}
	// In TLS 1.3 the client's handshake completes before the server has
	// checked the client's certificate: wait for its verdict.
	var b [1]byte
	if _, err := io.ReadFull(tc, b[:]); err != nil {
		raw.Close()
		return nil, fmt.Errorf("transport: %s (%s) did not accept this member: %w", address, peer, err)
	}
	if b[0] != accepted {
		raw.Close()
		return nil, fmt.Errorf("transport: %s (%s) answered %#x, not the acceptance byte", address, peer, b[0])
	}
	if err := raw.SetDeadline(time.Time{}); err != nil {
		raw.Close()
		return nil, fmt.Errorf("transport: %s: %w", address, err)
	}
	return &conn{Conn: tc, peer: peer}, nil
}

// conn is a verified connection and the identity of its peer.
type conn struct {
	*tls.Conn
	peer Identity
}

// PeerIdentity is the verified identity of the member at the other end of
// c, a connection returned by a StreamLayer's Accept or Dial.
func PeerIdentity(c net.Conn) (Identity, error) {
	mc, ok := c.(*conn)
	if !ok {
		return Identity{}, errNotMember
	}
	return mc.peer, nil
}

// NewTransport makes raft's network transport over layer. Zero MaxPool and
// Timeout become 3 connections per peer and 10 seconds; a nil Logger logs
// to the layer's slog logger.
func NewTransport(layer *StreamLayer, cfg raft.NetworkTransportConfig) *raft.NetworkTransport {
	cfg.Stream = layer
	if cfg.MaxPool == 0 {
		cfg.MaxPool = 3
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = NewHCLogger(layer.log).Named("raft-net")
	}
	return raft.NewNetworkTransportWithConfig(&cfg)
}
