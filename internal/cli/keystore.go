package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cmkdb/cmkdb/internal/keys"
)

func newKeystoreCmd(stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "keystore", Short: "Inspect and maintain a node keystore"}
	inspect := &cobra.Command{
		Use:   "inspect DIR",
		Short: "Show key ids, versions, dates and providers (never key bytes)",
		Long: "DIR is a node keystore directory, or a cmkdb data directory (its node/ keystore is used).\n" +
			"The file's structure and checksum are verified; its MAC needs the CMK and is verified when the node opens it.",
		Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			dir := args[0]
			if _, err := os.Stat(keys.Path(dir)); err != nil {
				if _, err2 := os.Stat(keys.Path(filepath.Join(dir, "node"))); err2 == nil {
					dir = filepath.Join(dir, "node")
				}
			}
			r, err := keys.Inspect(dir)
			if err != nil {
				return err
			}
			printReport(stdout, r)
			printQuarantine(stdout, filepath.Join(dir, "quarantine"))
			return nil
		},
	}
	cmd.AddCommand(inspect)
	return cmd
}

func printReport(w io.Writer, r *keys.Report) {
	ts := func(t time.Time) string { return t.Format(time.RFC3339) }
	fmt.Fprintf(w, "keystore:    %s\n", r.Path)
	fmt.Fprintf(w, "node id:     %s\n", r.NodeID)
	fmt.Fprintf(w, "generation:  %d (updated %s)\n", r.Generation, ts(r.UpdatedAt))
	fmt.Fprintf(w, "master key:  v%d, created %s\n", r.Master.Version, ts(r.Master.CreatedAt))
	fmt.Fprintf(w, "wrapped by:  %s (provider %s, key %s, version %s) at %s\n",
		r.Master.CMK, r.Master.CMK.Provider, r.Master.CMK.KeyID, orDash(r.Master.CMK.KeyVersion), ts(r.Master.WrappedAt))
	fmt.Fprintf(w, "databases:   %d\n", len(r.Databases))
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	if len(r.Databases) > 0 {
		fmt.Fprintln(tw, "  NAME\tID\tCURRENT\tVERSIONS\tCREATED")
		for _, d := range r.Databases {
			vs := ""
			for i, v := range d.Versions {
				if i > 0 {
					vs += ","
				}
				vs += fmt.Sprintf("v%d", v.Version)
			}
			fmt.Fprintf(tw, "  %s\t%s\tv%d\t%s\t%s\n", d.Name, d.ID, d.CurrentVersion, vs, ts(d.CreatedAt))
		}
	}
	tw.Flush()
	if len(r.Events) > 0 {
		fmt.Fprintln(w, "history:")
		for _, e := range r.Events {
			fmt.Fprintf(w, "  %s  %-20s %s\n", ts(e.At), e.Event, e.Detail)
		}
	}
}

// printQuarantine lists database directories the node set aside because no
// key in its keystore names them (node.Layout.QuarantineDir).
func printQuarantine(w io.Writer, dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) == 0 {
		return
	}
	fmt.Fprintf(w, "quarantined: %d database directories no key names (an older keystore put back?) in %s\n", len(entries), dir)
	for _, e := range entries {
		fmt.Fprintf(w, "  %s\n", e.Name())
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
