package cli

import (
	"io"

	"github.com/spf13/cobra"

	"github.com/cmkdb/cmkdb/internal/config"
	"github.com/cmkdb/cmkdb/internal/kms/providers"
	"github.com/cmkdb/cmkdb/internal/node"
)

func newNodeCmd(stdout io.Writer) *cobra.Command {
	var path string
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
			provider, err := providers.Open(cmd.Context(), c.KMS)
			if err != nil {
				return err
			}
			f := serveFlags{dir: c.Dir, bind: c.Bind, port: c.Port, checkInterval: c.KeyCheckInterval.Duration}
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
			return serve(cmd.Context(), stdout, f, node.Layout{Dir: c.Dir}, provider)
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "configuration file (JSON)")
	cmd.MarkFlagRequired("config")
	return cmd
}
