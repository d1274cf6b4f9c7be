package cli

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/cmkdb/cmkdb/internal/controlplane"
	"github.com/cmkdb/cmkdb/internal/cpserver"
	"github.com/cmkdb/cmkdb/internal/durable"
	"github.com/cmkdb/cmkdb/internal/tlsutil"
)

// cpInfo is DIR/controlplane.json: what a script needs to use a running
// control plane.
type cpInfo struct {
	APIURL        string `json:"apiUrl"`
	KeyServiceURL string `json:"keyServiceUrl"`
	CAFile        string `json:"caFile"`
	APIPublicKey  string `json:"apiPublicKey,omitempty"`
	APIPrivateKey string `json:"apiPrivateKey,omitempty"`
	PID           int    `json:"pid"`
}

func newControlPlaneCmd(stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "controlplane",
		Short: "Run the control plane on its own, and issue node certificates",
	}
	cmd.AddCommand(newControlPlaneServeCmd(stdout), newIssueNodeCertCmd(stdout))
	return cmd
}

func newControlPlaneServeCmd(stdout io.Writer) *cobra.Command {
	var (
		dir, apiAddr, ksAddr, tlsCert, tlsKey string
		ksHosts, providerPaths                []string
		allowPrivateWebhooks                  bool
		minCheck                              time.Duration
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the admin API and the node key service (mutual TLS) from DIR",
		Long: "Opens (or creates) the control plane state in --dir and serves the Atlas-compatible admin API and the\n" +
			"key service nodes use. On first run it creates an Organization Owner API key and writes it, with the\n" +
			"listener URLs, to DIR/controlplane.json (mode 0600). Nodes join with `cmkdb node --config` and a\n" +
			"kms.controlPlane block, using a certificate from `cmkdb controlplane issue-node-cert`.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			host, _, err := net.SplitHostPort(apiAddr)
			if err != nil {
				return fmt.Errorf("--api-addr: %w", err)
			}
			var apiTLS *tls.Config
			if tlsCert != "" {
				if apiTLS, err = tlsutil.ServerConfig(tlsCert, tlsKey, ""); err != nil {
					return err
				}
			} else if !isLoopback(host) {
				return fmt.Errorf("the admin API on %s, which is not a loopback address, requires --tls-cert-file and --tls-key-file", host)
			}
			cp, err := cpserver.Start(ctx, cpserver.Config{Dir: dir, APIAddr: apiAddr, KeyServiceAddr: ksAddr,
				KeyServiceHosts: ksHosts, ProviderPaths: providerPaths, APIHandler: adminAPI, APITLS: apiTLS, MinCheckInterval: minCheck,
				AllowPrivateWebhooks: allowPrivateWebhooks})
			if err != nil {
				return err
			}
			defer cp.Close()
			info := cpInfo{APIURL: cp.APIURL, KeyServiceURL: cp.KeyServiceURL, CAFile: cp.CAFile}
			infoPath := filepath.Join(dir, "controlplane.json")
			prev := readCPInfo(infoPath)
			if sec, ok := cp.Svc.APIKeySecret(prev.APIPublicKey); ok && string(sec) == prev.APIPrivateKey {
				info.APIPublicKey, info.APIPrivateKey = prev.APIPublicKey, prev.APIPrivateKey
			} else if len(cp.Svc.APIKeys()) == 0 {
				k, err := cp.Svc.CreateAPIKey(ctx, "controlplane bootstrap", []controlplane.RoleAssignment{{RoleName: controlplane.RoleOrgOwner}})
				if err != nil {
					return err
				}
				info.APIPublicKey, info.APIPrivateKey = k.PublicKey, k.PrivateKey
			}
			info.PID = os.Getpid()
			js, _ := json.MarshalIndent(info, "", "  ")
			if err := durable.WriteFile(infoPath, append(js, '\n'), 0o600); err != nil {
				return err
			}
			cp.Svc.Start()
			fmt.Fprintf(stdout, "cmkdb control plane is up\n  admin API:   %s\n  key service: %s\n  CA:          %s\n  details:     %s\n",
				cp.APIURL, cp.KeyServiceURL, cp.CAFile, infoPath)
			<-ctx.Done()
			fmt.Fprintln(stdout, "cmkdb: shut down")
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&dir, "dir", "./cmkdb-controlplane", "control plane directory")
	fl.StringVar(&apiAddr, "api-addr", "127.0.0.1:8080", "admin API listen address")
	fl.StringVar(&ksAddr, "key-service-addr", "127.0.0.1:8443", "node key service listen address (always mutual TLS)")
	fl.StringSliceVar(&ksHosts, "key-service-host", nil, "extra DNS names or IPs for the key service certificate")
	fl.BoolVar(&allowPrivateWebhooks, "allow-private-webhooks", false, webhookFlagHelp)
	fl.StringSliceVar(&providerPaths, "allow-provider-path", nil, "directory whose files (local key files, PKCS#11 modules, KMIP and CA certificates) the admin API may configure as provider settings")
	fl.StringVar(&tlsCert, "tls-cert-file", "", "PEM certificate for the admin API (required beyond loopback)")
	fl.StringVar(&tlsKey, "tls-key-file", "", "PEM key of --tls-cert-file")
	fl.DurationVar(&minCheck, "min-check-interval", controlplane.MinCheckInterval, "the shortest validity check interval a project may set")
	return cmd
}

func readCPInfo(path string) cpInfo {
	var info cpInfo
	if b, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(b, &info)
	}
	return info
}

func newIssueNodeCertCmd(stdout io.Writer) *cobra.Command {
	var dir, group, cluster, name, out string
	cmd := &cobra.Command{
		Use:   "issue-node-cert",
		Short: "Issue a node's client certificate for the key service (its identity: project/cluster/name)",
		Long: "Writes OUT/node.pem and OUT/node-key.pem (mode 0600) and OUT/ca.pem. The certificate's common name is\n" +
			"GROUP/CLUSTER/NAME: the key service takes the node's identity from it alone. Works while the control\n" +
			"plane runs.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			id := controlplane.NodeID{GroupID: group, Cluster: cluster, Name: name}
			if _, ok := controlplane.ParseNodeID(id.String()); !ok {
				return fmt.Errorf("--group, --cluster and --name are required")
			}
			if _, err := os.Stat(filepath.Join(dir, "state")); err != nil {
				return fmt.Errorf("%s is not a control plane directory (run `cmkdb controlplane serve --dir %s` first): %w", dir, dir, err)
			}
			ca, err := cpserver.LoadCA(dir)
			if err != nil {
				return err
			}
			certFile, keyFile, err := cpserver.IssueNodeCert(ca, id, out)
			if err != nil {
				return err
			}
			caFile := filepath.Join(out, "ca.pem")
			if err := durable.WriteFile(caFile, ca.CertPEM, 0o600); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "node certificate for %s\n  cert: %s\n  key:  %s\n  CA:   %s\n", id, certFile, keyFile, caFile)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&dir, "dir", "./cmkdb-controlplane", "control plane directory")
	fl.StringVar(&group, "group", "", "project (group) id")
	fl.StringVar(&cluster, "cluster", "", "cluster name")
	fl.StringVar(&name, "name", "", "node name")
	fl.StringVar(&out, "out", ".", "directory to write the certificate, key and CA to")
	return cmd
}
