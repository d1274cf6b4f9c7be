package cli

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/cmkdb/cmkdb/internal/config"
	"github.com/cmkdb/cmkdb/internal/controlplane"
	"github.com/cmkdb/cmkdb/internal/keyservice"
	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kms/providers"
	"github.com/cmkdb/cmkdb/internal/node"
	"github.com/cmkdb/cmkdb/internal/tlsutil"
)

func newNodeCmd(stdout io.Writer) *cobra.Command {
	var path string
	var testCommands bool
	cmd := &cobra.Command{
		Use:   "node --config FILE",
		Short: "Run a node with the KMS provider, listener and data directory of a configuration file",
		Long: "Runs a standalone node: it unwraps its master key with the configured KMS provider, serves the\n" +
			"MongoDB wire protocol, and checks its CMK every keyCheckInterval. Example configuration:\n\n" +
			`  {"dir": "/var/lib/cmkdb", "port": 27017,` + "\n" +
			`   "kms": {"provider": "local", "local": {"keyFile": "/etc/cmkdb/cmk.json"}}}`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := config.Load(path)
			if err != nil {
				return err
			}
			var provider kms.Provider
			var managed *keyservice.Client
			if c.KMS.Provider == "controlplane" {
				if managed, err = managedClient(*c.KMS.ControlPlane); err != nil {
					return err
				}
				provider = managed
			} else if provider, err = providers.OpenNode(cmd.Context(), c.KMS.Provider, c.KMS.Settings); err != nil {
				return err
			}
			f := serveFlags{dir: c.Dir, bind: c.Bind, port: c.Port, checkInterval: c.KeyCheckInterval.Duration, repl: c.Replication,
				plaintext: c.InsecureNoEncryption, configFile: path, snapshotDir: c.SnapshotDir, testCommands: testCommands}
			if c.TLS != nil {
				f.security.tls = true
				f.security.tlsCertFile, f.security.tlsKeyFile, f.security.tlsCAFile = c.TLS.CertFile, c.TLS.KeyFile, c.TLS.CAFile
			}
			if c.Auth != nil && c.Auth.Enabled {
				f.security.auth = true
				f.security.adminUser = c.Auth.AdminUser
				f.security.adminPasswordFile = c.Auth.AdminPasswordFile
				if f.security.adminUser == "" {
					f.security.adminUser = "admin"
				}
			}
			return serve(cmd.Context(), stdout, f, node.Layout{Dir: c.Dir}, provider, managed)
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "configuration file (JSON)")
	cmd.Flags().BoolVar(&testCommands, "enable-test-commands", false, "serve mongod's test commands (configureFailPoint) for driver specification tests; never in production")
	cmd.MarkFlagRequired("config")
	return cmd
}

// managedClient connects a node to its control plane's key service with the
// node certificate the control plane issued (`cmkdb controlplane
// issue-node-cert`).
func managedClient(c config.ControlPlaneKMS) (*keyservice.Client, error) {
	cfg, err := tlsutil.ClientConfig(c.CAFile)
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("kms.controlPlane certFile/keyFile: %w", err)
	}
	// The key service knows the node only by its certificate; a certificate
	// for another project or cluster is a configuration mistake to name now.
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("kms.controlPlane certFile: %w", err)
	}
	id, ok := controlplane.ParseNodeID(leaf.Subject.CommonName)
	if !ok || id.GroupID != c.GroupID || id.Cluster != c.Cluster {
		return nil, fmt.Errorf("kms.controlPlane: the certificate is for node %q, not for a node of project %s cluster %s (issue one with `cmkdb controlplane issue-node-cert`)",
			leaf.Subject.CommonName, c.GroupID, c.Cluster)
	}
	cfg.Certificates = []tls.Certificate{cert}
	cfg.MinVersion = tls.VersionTLS13
	return keyservice.NewClient(c.URL, cfg)
}
