package cli

import (
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/cmkdb/cmkdb/internal/kms/local"
	"github.com/cmkdb/cmkdb/internal/node"
)

func newKMSCmd(stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "kms", Short: "Work with KMS providers"}
	var keyPath, dir string
	localCmd := &cobra.Command{
		Use:   "local",
		Short: "Manage the local key file (the embedded development KMS)",
		Long: "Manage the local CMK: change its state to try the key lifecycle on a laptop.\n" +
			"A running node sees the change at its next key check.",
	}
	localCmd.PersistentFlags().StringVar(&keyPath, "key", "", "key file (default: the one DIR's cluster uses, DIR/up.json localKeyFile, else DIR/kms/local-cmk.json)")
	localCmd.PersistentFlags().StringVar(&dir, "dir", defaultDir, "cmkdb data directory (used when --key is not given)")
	path := func() string {
		if keyPath != "" {
			return keyPath
		}
		return localKeyInUse(dir)
	}
	op := func(use, short string, fn func(string) (local.Info, error)) *cobra.Command {
		return &cobra.Command{
			Use: use, Short: short, Args: cobra.NoArgs,
			RunE: func(*cobra.Command, []string) error {
				info, err := fn(path())
				if err != nil {
					return err
				}
				printKeyInfo(stdout, info)
				return nil
			},
		}
	}
	var notBefore, expires string
	validity := &cobra.Command{
		Use: "set-validity", Short: "Set the key's activation and expiry dates (RFC 3339; empty clears)", Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			nb, err := parseTime(notBefore)
			if err != nil {
				return fmt.Errorf("--not-before: %w", err)
			}
			ex, err := parseTime(expires)
			if err != nil {
				return fmt.Errorf("--expires: %w", err)
			}
			info, err := local.SetValidity(path(), nb, ex)
			if err != nil {
				return err
			}
			printKeyInfo(stdout, info)
			return nil
		},
	}
	validity.Flags().StringVar(&notBefore, "not-before", "", "activation date")
	validity.Flags().StringVar(&expires, "expires", "", "expiry date")
	localCmd.AddCommand(
		op("create", "Create a new key file (mode 0600)", local.Create),
		op("show", "Show the key's id, state and versions (never its bytes)", local.Inspect),
		op("disable", "Disable the key: checks report INVALID (KEY_DISABLED)", local.Disable),
		op("enable", "Enable a disabled key", local.Enable),
		op("delete", "Soft-delete the key: INVALID (KEY_DELETED) until restored", local.Delete),
		op("schedule-deletion", "Schedule the key for deletion: INVALID (KEY_PENDING_DELETION)", local.ScheduleDeletion),
		op("restore", "Restore a deleted or pending-deletion key", local.Restore),
		op("rotate", "Add a new key version; older versions keep unwrapping", local.Rotate),
		validity,
	)
	cmd.AddCommand(localCmd)
	return cmd
}

// localKeyInUse is the local CMK file the cluster in dir uses: the one
// `cmkdb up` recorded in up.json (relative to dir when inside it), else
// dir/kms/local-cmk.json. A key-state change must reach the key the
// running cluster reads, not a copy beside it.
func localKeyInUse(dir string) string {
	l := node.Layout{Dir: dir}
	if info := readUpInfo(l); info.LocalKeyFile != "" {
		if filepath.IsAbs(info.LocalKeyFile) {
			return info.LocalKeyFile
		}
		return filepath.Join(dir, info.LocalKeyFile)
	}
	return l.LocalKeyPath()
}

func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	return time.Parse(time.RFC3339, s)
}

func printKeyInfo(w io.Writer, in local.Info) {
	fmt.Fprintf(w, "key file:   %s\n", in.Path)
	fmt.Fprintf(w, "key:        %s\n", in.Key)
	fmt.Fprintf(w, "state:      %s\n", in.State)
	if !in.NotBefore.IsZero() {
		fmt.Fprintf(w, "not before: %s\n", in.NotBefore.Format(time.RFC3339))
	}
	if !in.ExpiresAt.IsZero() {
		fmt.Fprintf(w, "expires:    %s\n", in.ExpiresAt.Format(time.RFC3339))
	}
	for _, v := range in.Versions {
		fmt.Fprintf(w, "version %d:  created %s\n", v.Version, v.CreatedAt.Format(time.RFC3339))
	}
}
