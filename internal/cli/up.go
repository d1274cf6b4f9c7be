package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/cmkdb/cmkdb/internal/durable"
	"github.com/cmkdb/cmkdb/internal/handlers"
	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/node"
	"github.com/cmkdb/cmkdb/internal/wire"
)

const defaultDir = "./cmkdb-data"

// upInfo is DIR/up.json: what a script needs to use the running node.
type upInfo struct {
	ConnectionString string    `json:"connectionString"`
	Dir              string    `json:"dir"`
	PID              int       `json:"pid"`
	StartedAt        time.Time `json:"startedAt"`
	NodeID           string    `json:"nodeId,omitempty"`
	CMK              string    `json:"cmk,omitempty"`
	State            string    `json:"state"`
	// Set with --auth / --tls.
	Auth              bool   `json:"auth,omitempty"`
	AdminUser         string `json:"adminUser,omitempty"`
	AdminPasswordFile string `json:"adminPasswordFile,omitempty"`
	TLS               bool   `json:"tls,omitempty"`
	TLSCAFile         string `json:"tlsCAFile,omitempty"`
}

// serveFlags are the flags shared by `up` and `node`.
type serveFlags struct {
	dir           string
	bind          string
	port          int
	checkInterval time.Duration
	plaintext     bool
	security      securityFlags
}

func (f *serveFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.dir, "dir", defaultDir, "data directory")
	cmd.Flags().StringVar(&f.bind, "bind", "127.0.0.1", "address to listen on")
	cmd.Flags().IntVar(&f.port, "port", 27017, "port for the MongoDB wire protocol (0 picks a free one)")
	cmd.Flags().DurationVar(&f.checkInterval, "key-check-interval", 15*time.Minute, "how often the node checks its CMK")
	cmd.Flags().BoolVar(&f.plaintext, "insecure-no-encryption", false, "store data unencrypted (only to measure what encryption costs)")
	f.security.register(cmd)
}

func newUpCmd(stdout io.Writer) *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run cmkdb on an embedded default: a local CMK, a node keystore, encrypted storage, the MongoDB wire protocol",
		Long: "Creates DIR (default ./cmkdb-data) with a local CMK and a node keystore on first run, " +
			"reopens the same data on later runs, serves the MongoDB wire protocol, and writes what a " +
			"script needs to connect to DIR/up.json.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l := node.Layout{Dir: f.dir}
			cmk, created, err := node.EnsureLocalKey(l)
			if err != nil {
				return err
			}
			if created {
				slog.Info("created local CMK", "path", l.LocalKeyPath())
			}
			return serve(cmd.Context(), stdout, f, l, cmk)
		},
	}
	f.register(cmd)
	return cmd
}

// serve opens the node, serves the wire protocol and checks the CMK on an
// interval until SIGINT/SIGTERM.
func serve(ctx context.Context, stdout io.Writer, f serveFlags, l node.Layout, provider kms.Provider) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := f.checkExposure(); err != nil {
		return err
	}
	n, err := node.Open(ctx, l, provider, node.Options{Plaintext: f.plaintext})
	if err != nil {
		return err
	}
	defer n.Close()
	tlsConfig, caFile, err := f.security.serverTLS(l, f.bind)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(f.bind, strconv.Itoa(f.port)))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	var srv *wire.Server
	h := handlers.New(n, handlers.Options{CmdLine: os.Args, AuthRequired: f.security.auth, ConnCount: func() int { return srv.NumConns() }})
	defer h.Close()
	srv, err = wire.NewServer(wire.Config{Handler: h, Logger: slog.Default(), TLS: tlsConfig})
	if err != nil {
		return err
	}
	addr := ln.Addr().(*net.TCPAddr)
	admin, err := f.security.ensureAdmin(ctx, h, l, func(a adminCredentials) string {
		return connectionString(f.bind, addr.Port, a, tlsConfig != nil, caFile)
	})
	if err != nil {
		_ = ln.Close()
		return err
	}
	info := upInfo{
		ConnectionString: connectionString(f.bind, addr.Port, admin, tlsConfig != nil, caFile),
		Dir:              l.Dir, PID: os.Getpid(), StartedAt: time.Now().UTC(), State: n.State().String(),
		Auth: f.security.auth, AdminUser: admin.user, AdminPasswordFile: admin.passwordFile,
		TLS: tlsConfig != nil, TLSCAFile: caFile,
	}
	if _, ks, release, err := n.Acquire(); err == nil {
		info.NodeID, info.CMK = ks.NodeID(), ks.Master().CMK.String()
		release()
	}
	js, _ := json.MarshalIndent(info, "", "  ")
	if err := durable.WriteFile(l.UpFile(), append(js, '\n'), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "cmkdb is up\n  connect:   mongosh %s\n  data:      %s\n  state:     %s\n  CMK:       %s\n  details:   %s\n",
		redactedConnectionString(info.ConnectionString), l.Dir, info.State, info.CMK, l.UpFile())
	go n.RunChecks(ctx, f.checkInterval)
	err = srv.Serve(ctx, ln)
	fmt.Fprintln(stdout, "cmkdb: shut down")
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// checkExposure refuses to serve beyond loopback without both TLS and
// authentication: a listener other machines can reach never carries
// plaintext traffic or answers anonymous clients.
func (f serveFlags) checkExposure() error {
	if isLoopback(f.bind) {
		return nil
	}
	tlsOn := f.security.tls || f.security.tlsCertFile != ""
	if !tlsOn || !f.security.auth {
		return fmt.Errorf("listening on %s, which is not a loopback address, requires TLS and authentication (--tls and --auth, or tls and auth in the configuration)", f.bind)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
