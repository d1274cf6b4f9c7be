package transport

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

var (
	m1 = Identity{Project: "p", Cluster: "c", Member: "m1"}
	m2 = Identity{Project: "p", Cluster: "c", Member: "m2"}
)

func TestIdentity(t *testing.T) {
	if got := m1.CommonName(); got != "cmkdb-member/p/c/m1" {
		t.Fatalf("common name %q", got)
	}
	if id, err := ParseIdentity(m1.CommonName()); err != nil || id != m1 {
		t.Fatalf("round trip: %+v, %v", id, err)
	}
	for _, bad := range []string{
		"", "cmkdb-member", "cmkdb-member/p/c", "cmkdb-member/p/c/m/x", "cmkdb-member/p/c/m/",
		"cmkdb-member//c/m", "cmkdb-member/p//m", "cmkdb-member/p/c/", "/cmkdb-member/p/c/m",
		"cmkdb-client/p/c/m", "CMKDB-MEMBER/p/c/m", "g/c/n", "alice",
	} {
		if id, err := ParseIdentity(bad); err == nil {
			t.Errorf("ParseIdentity(%q) = %+v", bad, id)
		}
	}
}

// accepted collects what a layer's Accept returns, in the background.
type acceptResult struct {
	c   net.Conn
	err error
}

func acceptAll(l *StreamLayer) <-chan acceptResult {
	ch := make(chan acceptResult, 16)
	go func() {
		for {
			c, err := l.Accept()
			ch <- acceptResult{c, err}
			if err != nil {
				return
			}
		}
	}()
	return ch
}

func TestHandshakeBetweenMembers(t *testing.T) {
	ca := newCA(t)
	a, _ := newLayer(t, ca, m1)
	b, _ := newLayer(t, ca, m2)
	acc := acceptAll(a)

	c, err := b.Dial(raft.ServerAddress(a.Addr().String()), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var s net.Conn
	select {
	case r := <-acc:
		if r.err != nil {
			t.Fatal(r.err)
		}
		s = r.c
	case <-time.After(20 * time.Second):
		t.Fatal("Accept delivered nothing")
	}
	defer s.Close()

	if id, err := PeerIdentity(c); err != nil || id != m1 {
		t.Fatalf("dialer sees %+v, %v", id, err)
	}
	if id, err := PeerIdentity(s); err != nil || id != m2 {
		t.Fatalf("acceptor sees %+v, %v", id, err)
	}
	cs := c.(interface{ ConnectionState() tls.ConnectionState }).ConnectionState()
	if cs.Version != tls.VersionTLS13 || cs.NegotiatedProtocol != ALPN {
		t.Fatalf("version %x, protocol %q", cs.Version, cs.NegotiatedProtocol)
	}

	// Bytes flow both ways, starting with the dialer (as raft does).
	c.SetDeadline(time.Now().Add(10 * time.Second))
	s.SetDeadline(time.Now().Add(10 * time.Second))
	go c.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("acceptor read %q, %v", buf, err)
	}
	go s.Write([]byte("pong"))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("dialer read %q, %v", buf, err)
	}

	if _, err := PeerIdentity(&net.TCPConn{}); err == nil {
		t.Fatal("PeerIdentity of a plain connection")
	}
}

func TestConfigChecked(t *testing.T) {
	ca := newCA(t)
	cert := memberCert(t, ca, m1.CommonName())
	for name, cfg := range map[string]Config{
		"certificate of another member": {TLS: cert, CA: pool(ca), Self: m2},
		"no CA":                         {TLS: cert, Self: m1},
		"no certificate":                {CA: pool(ca), Self: m1},
		"empty member":                  {TLS: cert, CA: pool(ca), Self: Identity{Project: "p", Cluster: "c"}},
		"slash in cluster":              {TLS: cert, CA: pool(ca), Self: Identity{Project: "p", Cluster: "c/d", Member: "m1"}},
	} {
		if l, err := Listen("127.0.0.1:0", cfg); err == nil {
			l.Close()
			t.Errorf("%s: accepted", name)
		}
	}
}

// rawDial connects with cfg as a TLS client and reports whether the
// layer accepted it (sent its acceptance byte).
func rawDial(addr string, cfg *tls.Config) error {
	raw, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(20 * time.Second))
	c := tls.Client(raw, cfg)
	if err := c.Handshake(); err != nil {
		return err
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return err
	}
	if b[0] != accepted {
		return errors.New("not the acceptance byte")
	}
	return nil
}

// TestRefused: a peer that is not a member of this project's cluster, or
// does not speak the protocol, is refused both when it dials (the layer
// logs it and Accept goes on to the next connection) and when it is
// dialed (Dial says why).
func TestRefused(t *testing.T) {
	ca := newCA(t)
	otherCA := newCA(t)
	good := memberCert(t, ca, m2.CommonName())
	a, logs := newLayer(t, ca, m1)
	acc := acceptAll(a)

	clientCfg := func(certs ...tls.Certificate) *tls.Config {
		return &tls.Config{Certificates: certs, InsecureSkipVerify: true, NextProtos: []string{ALPN}, MinVersion: tls.VersionTLS13}
	}
	cases := []struct {
		name   string
		cert   *tls.Certificate // as a peer's certificate; nil: none
		mod    func(*tls.Config)
		reason string // in Dial's error when the layer dials such a peer
	}{
		{name: "other cluster", cert: ptr(memberCert(t, ca, "cmkdb-member/p/c2/m1")), reason: `cluster "c2"`},
		{name: "other project", cert: ptr(memberCert(t, ca, "cmkdb-member/p2/c/m1")), reason: `project "p2"`},
		{name: "client-only certificate", cert: ptr(clientCert(t, ca, "cmkdb-member/p/c/m3")), reason: "not a member certificate"},
		{name: "non-member name", cert: ptr(memberCert(t, ca, "g/c/n")), reason: "not a member"},
		{name: "plain client name", cert: ptr(clientCert(t, ca, "alice")), reason: "not a member certificate"},
		{name: "other CA", cert: ptr(memberCert(t, otherCA, m2.CommonName())), reason: "unknown authority"},
		{name: "no certificate"},
		{name: "wrong ALPN", cert: &good, mod: func(c *tls.Config) { c.NextProtos = []string{"h2"} }, reason: "protocol"},
		{name: "no ALPN", cert: &good, mod: func(c *tls.Config) { c.NextProtos = nil }, reason: "did not negotiate"},
		{name: "TLS 1.2", cert: &good, mod: func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS12, tls.VersionTLS12 }, reason: "version"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// The peer dials the layer.
			cfg := clientCfg()
			if tc.cert != nil {
				cfg = clientCfg(*tc.cert)
			}
			if tc.mod != nil {
				tc.mod(cfg)
			}
			if err := rawDial(a.Addr().String(), cfg); err == nil {
				t.Fatal("the layer accepted the peer")
			} else {
				t.Logf("dialing the layer: %v", err)
			}
			if tc.cert == nil {
				return // a layer always presents its certificate
			}
			// The layer dials the peer.
			scfg := &tls.Config{Certificates: []tls.Certificate{*tc.cert}, NextProtos: []string{ALPN}, ClientAuth: tls.RequireAnyClientCert}
			if tc.mod != nil {
				tc.mod(scfg)
			}
			ln, err := tls.Listen("tcp", "127.0.0.1:0", scfg)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func() {
						defer c.Close()
						c.SetDeadline(time.Now().Add(20 * time.Second))
						if c.(*tls.Conn).Handshake() == nil {
							c.Write([]byte{accepted}) // as if it had accepted the layer
						}
					}()
				}
			}()
			c, err := a.Dial(raft.ServerAddress(ln.Addr().String()), 10*time.Second)
			if err == nil {
				c.Close()
				t.Fatal("the layer accepted the peer it dialed")
			}
			t.Logf("the layer dialing: %v", err)
			if !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("Dial's error %q does not say %q", err, tc.reason)
			}
		})
	}

	// Accept delivered none of them and still delivers a member.
	select {
	case r := <-acc:
		t.Fatalf("Accept returned %v, %v for a refused peer", r.c, r.err)
	default:
	}
	if err := rawDial(a.Addr().String(), clientCfg(good)); err != nil {
		t.Fatalf("a member is refused after the others: %v", err)
	}
	select {
	case r := <-acc:
		if r.err != nil {
			t.Fatal(r.err)
		}
		if id, _ := PeerIdentity(r.c); id != m2 {
			t.Fatalf("delivered %+v", id)
		}
		r.c.Close()
	case <-time.After(20 * time.Second):
		t.Fatal("Accept did not deliver the member")
	}
	waitFor(t, 10*time.Second, "the refusals to be logged", func() bool {
		return strings.Count(logs.String(), "refused a raft connection") >= len(cases)
	})
	for _, why := range []string{`cluster \"c2\"`, `project \"p2\"`, "incompatible key usage", "unknown authority", "not a member name", "did not negotiate"} {
		if !strings.Contains(logs.String(), why) {
			t.Errorf("no refusal logged saying %s", why)
		}
	}
	if s := logs.String(); strings.Contains(s, "PRIVATE KEY") {
		t.Fatal("a key reached the log")
	}
}

func ptr[T any](v T) *T { return &v }

// TestSilentPeerBlocksNoOne: a peer that connects and says nothing holds
// up neither a member connecting after it nor Close, and is dropped after
// the handshake timeout.
func TestSilentPeerBlocksNoOne(t *testing.T) {
	ca := newCA(t)
	a, _ := newLayer(t, ca, m1, func(c *Config) { c.HandshakeTimeout = time.Minute })
	b, _ := newLayer(t, ca, m2)
	acc := acceptAll(a)

	silent, err := net.Dial("tcp", a.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	c, err := b.Dial(raft.ServerAddress(a.Addr().String()), 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case r := <-acc:
		if r.err != nil {
			t.Fatal(r.err)
		}
		r.c.Close()
	case <-time.After(20 * time.Second):
		t.Fatal("the member's connection waited behind the silent peer")
	}

	start := time.Now()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("Close waited %v for the silent peer", took)
	}
	silent.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := silent.Read(make([]byte, 1)); err == nil {
		t.Fatal("the silent peer's connection survived Close")
	}
}

func TestHandshakeTimeout(t *testing.T) {
	ca := newCA(t)
	a, logs := newLayer(t, ca, m1, func(c *Config) { c.HandshakeTimeout = 200 * time.Millisecond })
	acc := acceptAll(a)
	silent, err := net.Dial("tcp", a.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	silent.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadAll(silent); err != nil {
		t.Fatalf("the silent peer was not hung up on: %v", err)
	}
	waitFor(t, 10*time.Second, "the refusal to be logged", func() bool {
		return strings.Contains(logs.String(), "refused a raft connection")
	})
	select {
	case r := <-acc:
		t.Fatalf("Accept returned %v, %v", r.c, r.err)
	default:
	}
}

func TestCloseUnblocksAccept(t *testing.T) {
	ca := newCA(t)
	a, _ := newLayer(t, ca, m1)
	acc := acceptAll(a)
	time.Sleep(50 * time.Millisecond) // let Accept block (not required for correctness)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-acc:
		if !errors.Is(r.err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v, %v", r.c, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not unblock Accept")
	}
	if _, err := a.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept on a closed layer: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := net.DialTimeout("tcp", a.Addr().String(), time.Second); err == nil {
		t.Fatal("still listening after Close")
	}
}

func TestAdvertise(t *testing.T) {
	ca := newCA(t)
	adv := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 7), Port: 7000}
	a, _ := newLayer(t, ca, m1, func(c *Config) { c.Advertise = adv })
	if a.Addr().String() != "10.0.0.7:7000" {
		t.Fatalf("Addr %v", a.Addr())
	}
}
