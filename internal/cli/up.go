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

	"github.com/cmkdb/cmkdb/internal/config"
	"github.com/cmkdb/cmkdb/internal/durable"
	"github.com/cmkdb/cmkdb/internal/handlers"
	"github.com/cmkdb/cmkdb/internal/keyservice"
	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/node"
	"github.com/cmkdb/cmkdb/internal/nodeagent"
	"github.com/cmkdb/cmkdb/internal/repl"
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
	// Set with --auth / --tls. The connection string never carries
	// credentials; the administrator --auth created is here, as separate
	// fields: AdminPassword only when cmkdb drew it (this file is 0600),
	// AdminPasswordFile when the operator supplied it.
	Auth              bool   `json:"auth,omitempty"`
	AdminUser         string `json:"adminUser,omitempty"`
	AdminPassword     string `json:"adminPassword,omitempty"`
	AdminPasswordFile string `json:"adminPasswordFile,omitempty"`
	TLS               bool   `json:"tls,omitempty"`
	TLSCAFile         string `json:"tlsCAFile,omitempty"`
	// The control plane (cmkdb up): its admin API, the API key cmkdb up
	// created (Organization Owner), and the project and cluster it runs.
	APIURL        string `json:"apiUrl,omitempty"`
	APIPublicKey  string `json:"apiPublicKey,omitempty"`
	APIPrivateKey string `json:"apiPrivateKey,omitempty"`
	GroupID       string `json:"groupId,omitempty"`
	Cluster       string `json:"cluster,omitempty"`
	KeyServiceURL string `json:"keyServiceUrl,omitempty"`
	// LocalKeyFile is the local CMK the project uses, relative to the data
	// directory when inside it: what `cmkdb kms local --dir` acts on.
	LocalKeyFile string `json:"localKeyFile,omitempty"`
}

// serveFlags are the flags shared by `up` and `node`.
type serveFlags struct {
	dir           string
	bind          string
	port          int
	apiPort       int
	providerPaths []string
	// allowPrivateWebhooks lets alert webhooks target loopback and
	// private addresses.
	allowPrivateWebhooks bool
	checkInterval        time.Duration
	plaintext            bool
	security             securityFlags
	// nodes is how many members `up` runs Cluster0 with.
	nodes int
	// oplog limits the oplog of Cluster0's members (up_oplog.go).
	oplog oplogFlags
	// repl makes the node a replica set member (`cmkdb node` with a
	// replication section).
	repl *config.Replication
	// configFile is the node.json repl came from: replSetResizeOplog
	// records new oplog limits in it.
	configFile string
	// snapshotDir is the snapshot store of `up` (default DIR/snapshots).
	snapshotDir string
	// readOnly serves existing data without changing it (`cmkdb snapshot
	// serve`).
	readOnly bool
	// testCommands enables mongod's test commands (configureFailPoint),
	// for the drivers' specification tests.
	testCommands bool
}

func (f *serveFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.dir, "dir", defaultDir, "data directory")
	cmd.Flags().StringVar(&f.bind, "bind", "127.0.0.1", "address to listen on")
	cmd.Flags().IntVar(&f.port, "port", 27017, "port for the MongoDB wire protocol (0: the one kept in DIR/ports.json, or a free one that is then kept)")
	cmd.Flags().DurationVar(&f.checkInterval, "key-check-interval", 15*time.Minute, "how often the CMK is checked")
	cmd.Flags().BoolVar(&f.plaintext, "insecure-no-encryption", false, "store data unencrypted (only to measure what encryption costs)")
	cmd.Flags().BoolVar(&f.testCommands, "enable-test-commands", false, "serve mongod's test commands (configureFailPoint) for driver specification tests; never in production")
	f.security.register(cmd)
}

// runningNode is a node serving the wire protocol.
type runningNode struct {
	n    *node.Node
	h    *handlers.Handler
	info upInfo
	done chan error
	// members is a replica set's member processes (nil for one node).
	members *memberSet
	// stop ends the node's listener, agent and checks, and waits for the
	// node to close.
	stop func()
}

// startNode opens a node with provider and serves the wire protocol. With a
// key service client (a managed node) the node follows the control plane's
// directives; otherwise it checks its CMK every f.checkInterval itself.
func startNode(ctx context.Context, f serveFlags, l node.Layout, provider kms.Provider, managed *keyservice.Client) (*runningNode, error) {
	if err := f.checkExposure(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	n, err := node.Open(ctx, l, provider, node.Options{Plaintext: f.plaintext, ReadOnly: f.readOnly})
	if err != nil {
		cancel()
		return nil, err
	}
	fail := func(err error) (*runningNode, error) { n.Close(); cancel(); return nil, err }
	tlsConfig, caFile, err := f.security.serverTLS(l, f.bind)
	if err != nil {
		return fail(err)
	}
	ln, err := listenKept(l.Dir, f.bind, f.port, "port")
	if err != nil {
		return fail(err)
	}
	var rm *repl.Member
	if f.repl != nil {
		if rm, err = newReplMember(f.repl, f.configFile, slog.Default()); err != nil {
			_ = ln.Close()
			return fail(err)
		}
	}
	var srv *wire.Server
	h := handlers.New(n, handlers.Options{CmdLine: os.Args, AuthRequired: f.security.auth, TestCommands: f.testCommands, ConnCount: func() int { return srv.NumConns() },
		Conns: func() []*wire.ConnState { return srv.Conns() }, NetStats: func() wire.NetStats { return srv.Stats() }, Repl: rm,
		ReadOnly: f.readOnly, SnapshotDir: f.snapshotDir})
	srv, err = wire.NewServer(wire.Config{Handler: h, Logger: slog.Default(), TLS: tlsConfig})
	if err != nil {
		_ = ln.Close()
		h.Close()
		return fail(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	connString := connectionString(f.bind, addr.Port, f.security.auth, tlsConfig != nil, caFile)
	var admin adminCredentials
	replDone := make(chan struct{})
	if rm != nil {
		connString = replConnectionString(f.repl, f.security.auth, tlsConfig != nil, caFile)
		go func() { defer close(replDone); _ = rm.Run(ctx, n, h) }()
		if f.security.auth {
			pw, perr := readPasswordFile(f.security.adminPasswordFile)
			if perr != nil {
				err = perr
			} else {
				admin = adminCredentials{user: f.security.adminUser, passwordFile: f.security.adminPasswordFile}
				go ensureReplicatedAdmin(ctx, h, rm, f.security.adminUser, pw)
			}
		}
	} else {
		close(replDone)
		admin, err = f.security.ensureAdmin(ctx, h, l, connString)
	}
	if err != nil {
		cancel()
		<-replDone
		_ = ln.Close()
		h.Close()
		return fail(err)
	}
	served := make(chan struct{})
	rn := &runningNode{n: n, h: h, done: make(chan error, 1), stop: func() { cancel(); <-served }, info: upInfo{
		ConnectionString: connString,
		Dir:              l.Dir, PID: os.Getpid(), StartedAt: time.Now().UTC(), State: n.State().String(),
		Auth: f.security.auth, AdminUser: admin.user, AdminPassword: admin.password, AdminPasswordFile: admin.passwordFile,
		TLS: tlsConfig != nil, TLSCAFile: caFile,
	}}
	if _, ks, release, err := n.Acquire(); err == nil {
		rn.info.NodeID, rn.info.CMK = ks.NodeID(), ks.Master().CMK.String()
		release()
	}
	if managed != nil {
		agent := &nodeagent.Agent{Node: n, Client: managed, Address: net.JoinHostPort(hostOf(f.bind), strconv.Itoa(addr.Port))}
		go agent.Run(ctx)
	} else {
		go n.RunChecks(ctx, f.checkInterval)
	}
	go func() {
		err := srv.Serve(ctx, ln)
		<-replDone
		h.Close()
		n.Close()
		close(served)
		rn.done <- err
	}()
	return rn, nil
}

func hostOf(bind string) string {
	if ip := net.ParseIP(bind); bind == "" || (ip != nil && ip.IsUnspecified()) {
		return "127.0.0.1"
	}
	return bind
}

// serve runs one standalone node until SIGINT/SIGTERM (`cmkdb node`).
func serve(ctx context.Context, stdout io.Writer, f serveFlags, l node.Layout, provider kms.Provider, managed *keyservice.Client) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	unlock, err := lockDir(l.Dir)
	if err != nil {
		return err
	}
	defer unlock()
	rn, err := startNode(ctx, f, l, provider, managed)
	if err != nil {
		return err
	}
	if err := writeUpInfo(l, rn.info); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "cmkdb node is up\n  connect:   mongosh %s\n  data:      %s\n  state:     %s\n  CMK:       %s\n  details:   %s\n",
		rn.info.ConnectionString, l.Dir, rn.info.State, rn.info.CMK, l.UpFile())
	err = <-rn.done
	fmt.Fprintln(stdout, "cmkdb: shut down")
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func writeUpInfo(l node.Layout, info upInfo) error {
	js, _ := json.MarshalIndent(info, "", "  ")
	return durable.WriteFile(l.UpFile(), append(js, '\n'), 0o600)
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
