package cli

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cmkdb/cmkdb/internal/config"
	"github.com/cmkdb/cmkdb/internal/durable"
	"github.com/cmkdb/cmkdb/internal/handlers"
	"github.com/cmkdb/cmkdb/internal/oplog"
	"github.com/cmkdb/cmkdb/internal/repl"
	"github.com/cmkdb/cmkdb/internal/repl/transport"
	"github.com/cmkdb/cmkdb/internal/tlsutil"
)

// newReplMember builds this node's replica set membership from its
// configuration: the member list, and raft over mutual TLS with the
// member certificate the control plane's CA issued.
func newReplMember(c *config.Replication, configFile string, logger *slog.Logger) (*repl.Member, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("replication certFile/keyFile: %w", err)
	}
	pool, err := tlsutil.LoadCertPool(c.CAFile)
	if err != nil {
		return nil, fmt.Errorf("replication caFile: %w", err)
	}
	self := transport.Identity{Project: c.Project, Cluster: c.SetName, Member: c.Me}
	cfg := replConfig(c, logger)
	if configFile != "" {
		cfg.SaveOplogLimits = func(l oplog.Limits) error { return saveOplogLimits(configFile, l) }
	}
	bind := cfgMember(c).RaftAddr
	if c.RaftBind != "" {
		bind = c.RaftBind
	}
	advertise, err := net.ResolveTCPAddr("tcp", cfgMember(c).RaftAddr)
	if err != nil {
		return nil, fmt.Errorf("replication: raftAddr: %w", err)
	}
	cfg.NewTransport = func() (raft.Transport, error) {
		layer, err := transport.Listen(bind, transport.Config{TLS: cert, CA: pool, Self: self, Advertise: advertise, Logger: logger})
		if err != nil {
			return nil, err
		}
		return transport.NewTransport(layer, raft.NetworkTransportConfig{Timeout: 10 * time.Second}), nil
	}
	return repl.New(cfg)
}

// replConfig is what the member's configuration file says of its
// replica set, without the transport.
func replConfig(c *config.Replication, logger *slog.Logger) repl.Config {
	cfg := repl.Config{SetName: c.SetName, Me: c.Me, Logger: logger, Join: c.Join,
		SnapshotThreshold: c.SnapshotThreshold, SnapshotInterval: c.SnapshotInterval.Duration, TrailingLogs: c.TrailingLogs}
	cfg.Oplog.MaxBytes, cfg.Oplog.Retention = c.OplogLimits()
	for _, m := range c.Members {
		cfg.Members = append(cfg.Members, repl.MemberConfig{Name: m.Name, Host: m.Host, RaftAddr: m.RaftAddr})
	}
	return cfg
}

// saveOplogLimits records a member's new oplog limits in its node.json
// (replSetResizeOplog), so that they hold after a restart.
func saveOplogLimits(path string, l oplog.Limits) error {
	c, err := config.Load(path)
	if err != nil {
		return err
	}
	if c.Replication == nil {
		return fmt.Errorf("%s has no replication block", path)
	}
	c.Replication.OplogSizeMB = float64(l.MaxBytes) / (1 << 20)
	c.Replication.OplogRetentionHours = l.Retention.Hours()
	if err := config.CheckOplogLimits(c.Replication.OplogSizeMB, c.Replication.OplogRetentionHours); err != nil {
		return err
	}
	js, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return durable.WriteFile(path, append(js, '\n'), 0o600)
}

func cfgMember(c *config.Replication) config.ReplMember {
	for _, m := range c.Members {
		if m.Name == c.Me {
			return m
		}
	}
	return config.ReplMember{}
}

// replConnectionString names every member and the set (drivers discover
// the primary from it and follow failovers; retryable writes are on, as
// drivers default).
func replConnectionString(c *config.Replication, auth, tlsOn bool, caFile string) string {
	hosts := make([]string, len(c.Members))
	for i, m := range c.Members {
		hosts[i] = m.Host
	}
	q := []string{"replicaSet=" + c.SetName}
	single := connectionString("127.0.0.1", 1, auth, tlsOn, caFile)
	if _, rest, ok := strings.Cut(single, "?"); ok && rest != "" {
		q = append(q, rest)
	}
	return "mongodb://" + strings.Join(hosts, ",") + "/?" + strings.Join(q, "&")
}

// ensureReplicatedAdmin creates the administrator once this member is
// primary and no user exists; on every other member it only waits for the
// primary's to arrive through the log.
func ensureReplicatedAdmin(ctx context.Context, h *handlers.Handler, rm *repl.Member, user, password string) {
	for {
		if exists, err := h.HasUsers(ctx); err == nil && exists {
			return
		}
		if rm.CheckWritable() == nil {
			err := h.CreateUser(ctx, "admin", user, password, []handlers.Role{{Role: "root", DB: "admin"}})
			if err == nil {
				slog.Info("created the administrator through the replica set", "user", user)
				return
			}
			slog.Warn("creating the administrator", "err", err)
		}
		if !sleepCtx(ctx, 500*time.Millisecond) {
			return
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
