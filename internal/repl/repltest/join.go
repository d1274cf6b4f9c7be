package repltest

import (
	"crypto/tls"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cmkdb/cmkdb/internal/repl"
	"github.com/cmkdb/cmkdb/internal/repl/transport"
)

// Join starts a new member, name, with its own node (local CMK, keystore,
// master key) and member certificate from the set's CA, configured to be
// added to the running set (repl.Config.Join): it waits, without raft
// state, until a primary's AddMember sends it its initial sync. It is
// appended to s.Members; the caller adds it with the returned config.
func (s *Set) Join(t testing.TB, name string, configure ...func(*repl.Config)) (*Member, repl.MemberConfig) {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	raftAddr := rl.Addr().String()
	rl.Close()
	mc := repl.MemberConfig{Name: name, Host: ln.Addr().String(), RaftAddr: raftAddr}
	id := transport.Identity{Project: "p", Cluster: s.Name, Member: name}
	certPEM, keyPEM, err := s.ca.MemberCertificate(id.CommonName(), []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.base
	cfg.Members = append(append([]repl.MemberConfig(nil), s.base.Members...), mc)
	cfg.Me, cfg.Join, cfg.Logger = name, true, quiet
	cfg.HeartbeatTimeout, cfg.ElectionTimeout = 500*time.Millisecond, 500*time.Millisecond
	for _, f := range configure {
		f(&cfg)
	}
	pool := s.pool
	cfg.NewTransport = func() (raft.Transport, error) {
		layer, err := transport.Listen(raftAddr, transport.Config{TLS: cert, CA: pool, Self: id, Logger: quiet})
		if err != nil {
			return nil, err
		}
		return transport.NewTransport(layer, raft.NetworkTransportConfig{Timeout: 5 * time.Second}), nil
	}
	m := startMember(t, cfg, ln, quiet)
	s.Members = append(s.Members, m)
	return m, mc
}
