package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/cmkdb/cmkdb/internal/controlplane"
	"github.com/cmkdb/cmkdb/internal/cpserver"
	"github.com/cmkdb/cmkdb/internal/kms/local"
	"github.com/cmkdb/cmkdb/internal/node"
	"github.com/cmkdb/cmkdb/internal/snapshot"
)

// webhookFlagHelp describes --allow-private-webhooks.
const webhookFlagHelp = "let alert webhooks target loopback and private addresses (127.0.0.0/8, 10/8, 172.16/12, 192.168/16, fc00::/7, localhost); link-local and cloud metadata addresses are refused regardless"

// The names cmkdb up gives what it creates on first run.
const (
	upProject = "Project0"
	upCluster = "Cluster0"
	upNode    = "node0"
)

func newUpCmd(stdout io.Writer) *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run cmkdb on an embedded default: a control plane, a local CMK and one cluster it manages",
		Long: "Creates DIR (default ./cmkdb-data) on first run with a local CMK (DIR/kms/local-cmk.json), a control\n" +
			"plane (DIR/controlplane) holding project \"Project0\" whose encryption at rest uses that CMK, and\n" +
			"cluster \"Cluster0\" whose node serves the MongoDB wire protocol. The node reaches its CMK only\n" +
			"through the control plane's key service (mutual TLS). Later runs reopen the same data. DIR/up.json\n" +
			"(mode 0600) holds the connection string, the admin API URL and an Organization Owner API key.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f.oplog.seen(cmd.Flags())
			return up(cmd.Context(), stdout, f)
		},
	}
	f.register(cmd)
	cmd.Flags().IntVar(&f.nodes, "nodes", 1, "members of Cluster0: 1 runs one node in this process; 3 (or 5, 7) runs a replica set, each member its own node process under DIR/members")
	f.oplog.register(cmd.Flags())
	cmd.Flags().IntVar(&f.apiPort, "api-port", 0, "port for the admin API (0: the one kept in DIR/ports.json, or a free one that is then kept; see up.json)")
	cmd.Flags().BoolVar(&f.allowPrivateWebhooks, "allow-private-webhooks", false, webhookFlagHelp)
	cmd.Flags().StringVar(&f.snapshotDir, "snapshot-dir", "", "snapshot store of the clusters' backups (default DIR/snapshots; put it on another disk for backups that survive this one)")
	cmd.Flags().StringSliceVar(&f.providerPaths, "allow-provider-path", nil, "directory whose files (key files, PKCS#11 modules, KMIP certificates) the admin API may configure as provider settings; DIR/kms always is")
	return cmd
}

func up(ctx context.Context, stdout io.Writer, f serveFlags) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := f.checkExposure(); err != nil {
		return err
	}
	unlock, err := lockDir(f.dir)
	if err != nil {
		return err
	}
	defer unlock()
	if f.nodes < 1 || f.nodes > 7 {
		return fmt.Errorf("--nodes %d: a cluster has 1 to 7 members", f.nodes)
	}
	if err := f.oplog.check(f.nodes); err != nil {
		return err
	}
	if err := checkLayoutFor(f.dir, f.nodes); err != nil {
		return err
	}
	l := node.Layout{Dir: f.dir}
	_, created, err := local.Ensure(l.LocalKeyPath())
	if err != nil {
		return err
	}
	if created {
		slog.Info("created local CMK", "path", l.LocalKeyPath())
	}
	cmk, err := filepath.Abs(l.LocalKeyPath())
	if err != nil {
		return err
	}
	apiTLS, _, err := f.security.serverTLS(l, f.bind)
	if err != nil {
		return err
	}
	apiLn, err := listenKept(f.dir, f.bind, f.apiPort, "apiPort")
	if err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	// Provider paths inside the data directory are stored relative to it
	// (BaseDir): a copied data directory runs on its own key file.
	cp, err := cpserver.Start(ctx, cpserver.Config{Dir: filepath.Join(f.dir, "controlplane"), BaseDir: f.dir,
		APIListener: apiLn, KeyServiceAddr: "127.0.0.1:0",
		APIHandler: adminAPI, APITLS: apiTLS, MinCheckInterval: min(f.checkInterval, controlplane.MinCheckInterval),
		ProviderPaths: append([]string{filepath.Dir(cmk)}, f.providerPaths...), AllowPrivateWebhooks: f.allowPrivateWebhooks})
	if err != nil {
		return err
	}
	defer cp.Close()
	prev := readUpInfo(l)
	rel, err := filepath.Rel(f.dir, l.LocalKeyPath())
	if err != nil {
		return err
	}
	boot, err := bootstrap(ctx, cp.Svc, rel, f.checkInterval, prev, f.nodes)
	if err != nil {
		return err
	}
	// The local CMK the project really uses (a previous release stored an
	// absolute path, which a copied data directory still points at).
	inUse, hasLocal := cp.Svc.ProviderFile(boot.groupID, "keyFile")
	if hasLocal && inUse != cmk {
		slog.Warn("the project's local CMK is not this data directory's key file: `cmkdb kms local` acts on the one in use (see up.json localKeyFile)",
			"inUse", inUse, "dataDirKey", cmk)
	}
	snapDir := f.snapshotDir
	if snapDir == "" {
		snapDir = filepath.Join(f.dir, "snapshots")
	}
	if snapDir, err = filepath.Abs(snapDir); err != nil {
		return err
	}
	prov := &upProvisioner{ctx: ctx, f: f, cp: cp, nodes: map[string]*runningNode{}, snapDir: snapDir}
	cp.Svc.SetProvisioner(prov)
	if err := cp.Svc.SetSnapshotStore(snapshot.Store{Dir: snapDir}); err != nil {
		return err
	}
	if err := prov.provisionAll(ctx); err != nil {
		return err
	}
	cp.Svc.Start()
	first, ok := prov.node(boot.groupID, upCluster)
	if !ok {
		return fmt.Errorf("cluster %s of project %s does not exist: delete %s to start afresh", upCluster, upProject, f.dir)
	}
	info := first.info
	info.APIURL, info.APIPublicKey, info.APIPrivateKey = cp.APIURL, boot.key.PublicKey, boot.key.PrivateKey
	info.GroupID, info.Cluster, info.KeyServiceURL = boot.groupID, upCluster, cp.KeyServiceURL
	if hasLocal {
		info.LocalKeyFile = relativeTo(f.dir, inUse)
	}
	if err := writeUpInfo(l, info); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "cmkdb is up\n  connect:   mongosh %s\n  admin API: %s (API key in %s)\n  project:   %s (%s), cluster %s\n  data:      %s\n  state:     %s\n  CMK:       %s\n  details:   %s\n",
		info.ConnectionString, cp.APIURL, l.UpFile(), upProject, boot.groupID, upCluster,
		l.Dir, info.State, info.CMK, l.UpFile())
	select {
	case <-ctx.Done():
	case err = <-first.done:
	}
	prov.stopAll()
	fmt.Fprintln(stdout, "cmkdb: shut down")
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// relativeTo returns path relative to dir when it lies inside dir, else
// path unchanged (absolute).
func relativeTo(dir, path string) string {
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return path
	}
	rel, err := filepath.Rel(absDir, path)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return path
	}
	return rel
}

func readUpInfo(l node.Layout) upInfo {
	var info upInfo
	if b, err := os.ReadFile(l.UpFile()); err == nil {
		_ = json.Unmarshal(b, &info)
	}
	return info
}

type bootInfo struct {
	groupID string
	key     controlplane.APIKey
}

// bootstrap creates, on first run, the project with the local CMK as its
// encryption at rest provider and the cluster; it sets the check interval
// and returns the API key of up.json (a new one when that file lost it).
func bootstrap(ctx context.Context, svc *controlplane.Service, cmkPath string, interval time.Duration, prev upInfo, members int) (bootInfo, error) {
	// Only the first run configures: later runs keep what the operator
	// changed through the API (another provider, other clusters).
	g, err := svc.GroupByName(upProject)
	if err != nil {
		if g, err = svc.CreateGroup(ctx, "cmkdb-up", upProject, ""); err != nil {
			return bootInfo{}, err
		}
		p, err := controlplane.ParseEARPatch([]byte(fmt.Sprintf(`{"local":{"enabled":true,"keyFile":%q}}`, cmkPath)))
		if err != nil {
			return bootInfo{}, err
		}
		if _, err := svc.PatchEncryptionAtRest(ctx, "cmkdb-up", g.ID, p); err != nil {
			return bootInfo{}, fmt.Errorf("configuring the local CMK for %s: %w", upProject, err)
		}
		if _, err := svc.CreateCluster(ctx, "cmkdb-up", g.ID, controlplane.Cluster{Name: upCluster, EncryptionAtRestProvider: controlplane.ProviderLocal, ReplicationFactor: members}); err != nil {
			return bootInfo{}, err
		}
	}
	if err := svc.SetCheckInterval(g.ID, interval); err != nil {
		return bootInfo{}, err
	}
	boot := bootInfo{groupID: g.ID}
	if secret, ok := svc.APIKeySecret(prev.APIPublicKey); ok && string(secret) == prev.APIPrivateKey {
		boot.key = controlplane.APIKey{PublicKey: prev.APIPublicKey, PrivateKey: prev.APIPrivateKey}
		return boot, nil
	}
	boot.key, err = svc.CreateAPIKey(ctx, "cmkdb up", []controlplane.RoleAssignment{{RoleName: controlplane.RoleOrgOwner}})
	return boot, err
}

// upProvisioner runs every cluster's node in this process: Cluster0 of
// Project0 in DIR on --port, others under DIR/clusters on free ports. Each
// node talks to the control plane only through the key service.
type upProvisioner struct {
	ctx context.Context
	f   serveFlags
	cp  *cpserver.Server

	mu    sync.Mutex
	nodes map[string]*runningNode // by group/cluster
	// snapDir is the snapshot store; replica set members may write
	// checkpoints into it (their node.json snapshotDir).
	snapDir string
}

func (p *upProvisioner) node(gid, cluster string) (*runningNode, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n, ok := p.nodes[gid+"/"+cluster]
	return n, ok
}

func (p *upProvisioner) provisionAll(ctx context.Context) error {
	for _, g := range p.cp.Svc.Groups() {
		cs, err := p.cp.Svc.Clusters(g.ID)
		if err != nil {
			return err
		}
		for _, c := range cs {
			if _, err := p.Provision(ctx, g.ID, c.Name); err != nil {
				return fmt.Errorf("starting cluster %s: %w", c.Name, err)
			}
		}
	}
	return nil
}

func (p *upProvisioner) layout(gid, cluster string) (node.Layout, serveFlags) {
	f := p.f
	g, _ := p.cp.Svc.GetGroup(gid)
	if g.Name == upProject && cluster == upCluster {
		return node.Layout{Dir: f.dir}, f
	}
	f.port = 0
	return node.Layout{Dir: filepath.Join(f.dir, "clusters", gid, cluster)}, f
}

// Provision implements controlplane.Provisioner.
func (p *upProvisioner) Provision(ctx context.Context, gid, cluster string) (string, error) {
	if n, ok := p.node(gid, cluster); ok {
		return n.info.ConnectionString, nil
	}
	client, err := p.cp.NodeClient(controlplane.NodeID{GroupID: gid, Cluster: cluster, Name: upNode})
	if err != nil {
		return "", err
	}
	l, f := p.layout(gid, cluster)
	if err := os.MkdirAll(l.Dir, 0o700); err != nil {
		return "", err
	}
	members := 1
	if l.Dir == p.f.dir {
		members = p.f.nodes // Cluster0 runs as --nodes says (checkLayoutFor)
	} else if c, err := p.cp.Svc.GetCluster(gid, cluster); err == nil {
		members = c.ReplicationFactor
		// The members on disk, if a member count change was interrupted
		// (it resumes when the count is set again: up_membership.go).
		if n := membersOnDisk(filepath.Join(l.Dir, "members")); n > 1 {
			members = n
		}
	}
	var rn *runningNode
	if members > 1 {
		rn, err = p.startMembers(p.ctx, gid, cluster, members, filepath.Join(l.Dir, "members"), l.Dir == p.f.dir)
	} else {
		rn, err = startNode(p.ctx, f, l, client, client)
	}
	if err != nil {
		return "", err
	}
	p.mu.Lock()
	p.nodes[gid+"/"+cluster] = rn
	p.mu.Unlock()
	return rn.info.ConnectionString, nil
}

// Deprovision implements controlplane.Provisioner: the node stops and its
// directory (keystore first) is removed.
func (p *upProvisioner) Deprovision(_ context.Context, gid, cluster string) error {
	p.mu.Lock()
	rn, ok := p.nodes[gid+"/"+cluster]
	delete(p.nodes, gid+"/"+cluster)
	p.mu.Unlock()
	l, _ := p.layout(gid, cluster)
	if ok {
		rn.stop()
	}
	if l.Dir == p.f.dir {
		return errors.New("the first cluster's directory is the data directory; stop cmkdb and delete it instead")
	}
	// Keys first: once they are gone, the files are unreadable.
	keystores, _ := filepath.Glob(filepath.Join(l.Dir, "members", "m*", "node", "keystore*"))
	for _, ks := range append(keystores, l.KeystoreDir()) {
		if err := os.RemoveAll(ks); err != nil {
			return err
		}
	}
	return os.RemoveAll(l.Dir)
}

func (p *upProvisioner) stopAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, rn := range p.nodes {
		rn.stop()
	}
}
