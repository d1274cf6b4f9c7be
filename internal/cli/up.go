package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/cmkdb/cmkdb/internal/durable"
	"github.com/cmkdb/cmkdb/internal/node"
)

const defaultDir = "./cmkdb-data"

// upInfo is DIR/up.json: what a script needs to use the running node.
type upInfo struct {
	Dir       string    `json:"dir"`
	PID       int       `json:"pid"`
	StartedAt time.Time `json:"startedAt"`
	NodeID    string    `json:"nodeId"`
	CMK       string    `json:"cmk"`
	Keystore  string    `json:"keystore"`
}

func newUpCmd(stdout io.Writer) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run cmkdb on an embedded default: a local CMK, a node keystore and encrypted storage",
		Long: "Creates DIR (default ./cmkdb-data) with a local CMK and a node keystore on first run, " +
			"reopens the same data on later runs, and serves until interrupted.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			l := node.Layout{Dir: dir}
			cmk, created, err := node.EnsureLocalKey(l)
			if err != nil {
				return err
			}
			if created {
				slog.Info("created local CMK", "path", l.LocalKeyPath())
			}
			n, err := node.Open(ctx, l, cmk, node.Options{})
			if err != nil {
				return err
			}
			defer n.Close()
			eng, ks, release, err := n.Acquire()
			if err != nil {
				return err
			}
			m := ks.Master()
			info := upInfo{Dir: dir, PID: pidOf(), StartedAt: time.Now().UTC(), NodeID: ks.NodeID(),
				CMK: m.CMK.String(), Keystore: l.KeystoreDir()}
			ndb := len(eng.Databases())
			release()
			js, _ := json.MarshalIndent(info, "", "  ")
			if err := durable.WriteFile(l.UpFile(), append(js, '\n'), 0o600); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "cmkdb is up\n  data:      %s\n  node:      %s\n  CMK:       %s\n  databases: %d\n  details:   %s\n",
				dir, info.NodeID, info.CMK, ndb, l.UpFile())
			<-ctx.Done()
			fmt.Fprintln(stdout, "cmkdb: shutting down")
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", defaultDir, "data directory")
	return cmd
}
