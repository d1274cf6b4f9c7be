package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/cmkdb/cmkdb/internal/devkms"
	"github.com/cmkdb/cmkdb/internal/durable"
)

func newDevCmd(stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "dev", Short: "Development tools"}
	var provider, admin, infoFile string
	server := &cobra.Command{
		Use:   "kms-server --provider aws|vault|gcp|azure",
		Short: "Run a faithful KMS server on loopback, with an admin API to change key states and inject faults",
		Long: "Runs cmkdb's faithful test server for a KMS (AWS KMS: JSON 1.1 with SigV4 verified; Vault Transit:\n" +
			"the Vault HTTP API; Google Cloud KMS: gRPC over TLS with service account JWTs verified; Azure Key\n" +
			"Vault: HTTPS with the Azure AD bearer challenge) on a loopback port, with one key and test credentials,\n" +
			"and prints what a node configuration needs (gcp: endpoint, keyName, credentialsFile, caFile; azure:\n" +
			"vaultUrl, keyName, tenantId, clientId, clientSecretFile, caFile and how to route Azure's host names).\n" +
			"The admin API (POST, on --admin) changes what the SDKs see:\n" +
			"  aws:   /key/state?value=Enabled|Disabled|PendingDeletion  /key/rotate  /deny?action=kms:Decrypt&on=true\n" +
			"  vault: /key/rotate  /key/delete  /key/restore  /key/min-decryption-version?value=N  /token/revoke\n" +
			"         /seal?on=true|false\n" +
			"  gcp:   /key/state?value=ENABLED|DISABLED|DESTROY_SCHEDULED|DESTROYED|PENDING_GENERATION[&version=N]\n" +
			"         /key/rotate  /key/purpose?value=ASYMMETRIC_SIGN|ENCRYPT_DECRYPT  /key/hide?on=true|false\n" +
			"         /deny?permission=cloudkms.cryptoKeyVersions.useToDecrypt|...|all&on=true  /credentials/disable?on=true\n" +
			"         /unavailable?on=true|false  /corrupt?n=N (damage the next N response checksums)\n" +
			"  azure: /key/state?value=enabled|disabled|deleted|expired|not-yet-active  /key/rotate\n" +
			"         /deny?permission=get|wrapKey|unwrapKey&on=true  /credentials/revoke?on=true|false\n" +
			"  all:   /throttle?on=true|false  /fail5xx?on=true|false  /stall?on=true|false",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			svc, err := devkms.Start(provider, admin)
			if err != nil {
				return err
			}
			defer svc.Close()
			js, _ := json.MarshalIndent(svc.Info, "", "  ")
			if infoFile != "" {
				if err := durable.WriteFile(infoFile, append(js, '\n'), 0o600); err != nil {
					return err
				}
			}
			fmt.Fprintf(stdout, "%s\n", js)
			<-ctx.Done()
			return nil
		},
	}
	server.Flags().StringVar(&provider, "provider", "", "aws, vault, gcp or azure")
	server.Flags().StringVar(&admin, "admin", "127.0.0.1:0", "loopback address of the admin API")
	server.Flags().StringVar(&infoFile, "info-file", "", "also write the connection details to this file (0600)")
	server.MarkFlagRequired("provider")
	cmd.AddCommand(server)
	return cmd
}
