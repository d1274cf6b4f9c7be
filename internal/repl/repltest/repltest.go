// Package repltest runs a real replica set in one test process: every
// member an encrypted node with its own local CMK and keystore, its
// command handlers and wire server on a loopback port, and raft between
// members over mutual TLS with certificates from one test CA.
package repltest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cmkdb/cmkdb/internal/handlers"
	"github.com/cmkdb/cmkdb/internal/kms/local"
	"github.com/cmkdb/cmkdb/internal/node"
	"github.com/cmkdb/cmkdb/internal/repl"
	"github.com/cmkdb/cmkdb/internal/repl/faultproxy"
	"github.com/cmkdb/cmkdb/internal/repl/transport"
	"github.com/cmkdb/cmkdb/internal/tlsutil"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// Member is one running member.
type Member struct {
	Name    string
	Dir     string
	Node    *node.Node
	Handler *handlers.Handler
	Repl    *repl.Member
	// Host is the member's MongoDB address.
	Host string

	stop func()
}

// Set is a running replica set.
type Set struct {
	Name    string
	Members []*Member
	// links[i][j] carries member i's raft traffic to member j (WithLinks).
	links [][]*faultproxy.Proxy
	// ca and base make further members (Join).
	ca   *tlsutil.CA
	pool *x509.CertPool
	base repl.Config
}

// WithLinks puts a fault-injecting proxy on every link between two
// members (Isolate, Heal).
func WithLinks(c *repl.Config) { c.PeerAddrs = map[string]string{} }

// Isolate cuts member i off from the others, both ways: sever closes the
// connections (the peers see errors at once), otherwise the links drop
// every byte (a black hole: only timeouts notice).
func (s *Set) Isolate(i int, sever bool) {
	for j := range s.Members {
		if j == i {
			continue
		}
		for _, p := range []*faultproxy.Proxy{s.links[i][j], s.links[j][i]} {
			if sever {
				p.Sever()
			} else {
				p.Drop()
			}
		}
	}
}

// Heal restores every link.
func (s *Set) Heal() {
	for i := range s.links {
		for _, p := range s.links[i] {
			if p != nil {
				p.Heal()
			}
		}
	}
}

// URI is a connection string for the whole set.
func (s *Set) URI() string {
	hosts := ""
	for i, m := range s.Members {
		if i > 0 {
			hosts += ","
		}
		hosts += m.Host
	}
	return fmt.Sprintf("mongodb://%s/?replicaSet=%s&serverSelectionTimeoutMS=60000", hosts, s.Name)
}

// Stop stops member i (its wire server, raft and node), as a crash of
// the process would, minus the lost page cache.
func (s *Set) Stop(i int) { s.Members[i].stop() }

// Start runs an n-member set until the test ends; configure adjusts
// every member's configuration.
func Start(t testing.TB, n int, configure ...func(*repl.Config)) *Set {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	ca, err := tlsutil.NewCA("repltest CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)

	set := &Set{Name: "rs0", ca: ca, pool: pool}
	var cfg repl.Config
	cfg.SetName = set.Name
	wireLns := make([]net.Listener, n)
	raftAddrs := make([]string, n)
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		wireLns[i] = ln
		// A free port for raft, reopened by the member itself.
		rl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		raftAddrs[i] = rl.Addr().String()
		rl.Close()
		cfg.Members = append(cfg.Members, repl.MemberConfig{Name: fmt.Sprintf("m%d", i), Host: ln.Addr().String(), RaftAddr: raftAddrs[i]})
	}
	set.base = cfg
	for i := 0; i < n; i++ {
		name := cfg.Members[i].Name
		id := transport.Identity{Project: "p", Cluster: set.Name, Member: name}
		certPEM, keyPEM, err := ca.MemberCertificate(id.CommonName(), []string{"127.0.0.1"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		mcfg := cfg
		mcfg.Me = name
		mcfg.Logger = quiet
		mcfg.HeartbeatTimeout = 500 * time.Millisecond
		mcfg.ElectionTimeout = 500 * time.Millisecond
		for _, f := range configure {
			f(&mcfg)
		}
		if mcfg.PeerAddrs != nil {
			if set.links == nil {
				set.links = make([][]*faultproxy.Proxy, n)
			}
			set.links[i] = make([]*faultproxy.Proxy, n)
			peers := map[string]string{}
			for j := 0; j < n; j++ {
				if j == i {
					continue
				}
				p, err := faultproxy.New("127.0.0.1:0", raftAddrs[j])
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { p.Close() })
				set.links[i][j] = p
				peers[cfg.Members[j].Name] = p.Addr()
			}
			mcfg.PeerAddrs = peers
		}
		addr := raftAddrs[i]
		mcfg.NewTransport = func() (raft.Transport, error) {
			layer, err := transport.Listen(addr, transport.Config{TLS: cert, CA: pool, Self: id, Logger: quiet})
			if err != nil {
				return nil, err
			}
			return transport.NewTransport(layer, raft.NetworkTransportConfig{Timeout: 5 * time.Second}), nil
		}
		set.Members = append(set.Members, startMember(t, mcfg, wireLns[i], quiet))
	}
	return set
}

func startMember(t testing.TB, cfg repl.Config, ln net.Listener, quiet *slog.Logger) *Member {
	dir := t.TempDir()
	l := node.Layout{Dir: dir}
	cmk, _, err := local.Ensure(l.LocalKeyPath())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n, err := node.Open(ctx, l, cmk, node.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	rm, err := repl.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := handlers.New(n, handlers.Options{Logger: quiet, Repl: rm})
	srv, err := wire.NewServer(wire.Config{Handler: h, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = rm.Run(ctx, n, h) }()
	go func() { defer wg.Done(); _ = srv.Serve(ctx, ln) }()
	m := &Member{Name: cfg.Me, Dir: dir, Node: n, Handler: h, Repl: rm, Host: ln.Addr().String()}
	m.stop = sync.OnceFunc(func() {
		cancel()
		wg.Wait()
		h.Close()
		_ = n.Close()
	})
	t.Cleanup(m.stop)
	return m
}

// Primary waits for a writable primary and returns its index.
func (s *Set) Primary(t testing.TB, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for i, m := range s.Members {
			if m.Repl.CheckWritable() == nil {
				return i
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no primary within %s", timeout)
	return -1
}
