package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cmkdb/cmkdb/internal/config"
	"github.com/cmkdb/cmkdb/internal/cpproto"
	"github.com/cmkdb/cmkdb/internal/keys"
	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kms/providers"
	"github.com/cmkdb/cmkdb/internal/node"
	"github.com/cmkdb/cmkdb/internal/snapshot"
	"github.com/cmkdb/cmkdb/internal/storage"
)

// `cmkdb snapshot` opens a snapshot offline (a directory of the snapshot
// store): what it holds and which key opens it, without the key; with a
// KMS configuration the user supplies (never stored with the snapshot),
// that every byte authenticates.

func newSnapshotCmd(stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "snapshot", Short: "Inspect and verify a backup snapshot offline"}
	cmd.AddCommand(&cobra.Command{
		Use:   "inspect DIR|ARCHIVE.tar",
		Short: "What a snapshot holds and which customer master key opens it (no key needed)",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			dir, cleanup, err := snapshotArg(args[0])
			if err != nil {
				return err
			}
			defer cleanup()
			m, r, err := readSnapshot(dir)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(stdout, 0, 2, 2, ' ', 0)
			fmt.Fprintf(w, "snapshot\t%s\n", m.ID)
			fmt.Fprintf(w, "cluster\t%s (project %s), node %s\n", m.Cluster, m.GroupID, orDash(m.NodeName))
			fmt.Fprintf(w, "taken\t%s\n", m.CreatedAt.Format(time.RFC3339))
			fmt.Fprintf(w, "opens with\t%s (the customer master key that wrapped the node master key then)\n", r.Master.CMK)
			fmt.Fprintf(w, "node\t%s, master key v%d, keystore generation %d\n", r.NodeID, r.Master.Version, r.Generation)
			fmt.Fprintf(w, "databases\t%d (names sealed in the keystore)\n", len(m.DatabaseIDs))
			fmt.Fprintf(w, "files\t%d, %d bytes\n", len(m.Files), m.SizeBytes)
			return w.Flush()
		},
	})
	var kmsFile string
	verify := &cobra.Command{
		Use:   "verify DIR|ARCHIVE.tar",
		Short: "Check every file against the manifest; with --kms-config, open it and authenticate every byte",
		Long: "Without --kms-config: every file's size and SHA-256 against the snapshot's manifest, and no file\n" +
			"it does not list. With --kms-config FILE (a JSON object like a node file's \"kms\" block:\n" +
			"{\"provider\": \"local\", \"local\": {\"keyFile\": \"…\"}}, any provider), also: the keystore opens with that\n" +
			"key and every record of every database is read on a copy, so every chunk authenticates. The snapshot\n" +
			"itself is never written. Without access to the key it opens nothing and says why.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, cleanup, err := snapshotArg(args[0])
			if err != nil {
				return err
			}
			defer cleanup()
			m, r, err := readSnapshot(dir)
			if err != nil {
				return err
			}
			if err := snapshot.Verify(dir, m); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%d files match the manifest\n", len(m.Files))
			if kmsFile == "" {
				fmt.Fprintf(stdout, "not opened: give --kms-config with access to %s to authenticate the contents\n", r.Master.CMK)
				return nil
			}
			provider, err := snapshotProvider(cmd.Context(), kmsFile, m)
			if err != nil {
				return err
			}
			n, err := readEverything(cmd.Context(), dir, provider)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "opened with %s: %d databases, %d records read, every chunk authenticated\n", r.Master.CMK, len(m.DatabaseIDs), n)
			return nil
		},
	}
	verify.Flags().StringVar(&kmsFile, "kms-config", "", "JSON file naming the KMS provider and its settings that reach the snapshot's CMK")
	cmd.AddCommand(verify)
	cmd.AddCommand(newSnapshotServeCmd(stdout))
	return cmd
}

// newSnapshotServeCmd serves a snapshot read-only over the wire protocol,
// so mongosh and mongodump read it: the equivalent of Atlas's KMIP Proxy
// Standalone, with the credentials supplied at run time, never on disk
// beside the data.
func newSnapshotServeCmd(stdout io.Writer) *cobra.Command {
	var kmsFile string
	var port int
	cmd := &cobra.Command{
		Use:   "serve DIR|ARCHIVE.tar --kms-config FILE",
		Short: "Serve a snapshot read-only on loopback, opened with the CMK the KMS configuration reaches",
		Long: "The snapshot is checked against its manifest, its keystore opened with the key the --kms-config file\n" +
			"reaches (see `cmkdb snapshot verify`), and its databases opened read-only: nothing is written into the\n" +
			"snapshot, and write commands are refused (20 IllegalOperation). Listens on 127.0.0.1 only.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if kmsFile == "" {
				return errors.New("--kms-config is required: a snapshot opens only with its CMK")
			}
			dir, cleanup, err := snapshotArg(args[0])
			if err != nil {
				return err
			}
			defer cleanup()
			m, _, err := readSnapshot(dir)
			if err != nil {
				return err
			}
			if err := snapshot.Verify(dir, m); err != nil {
				return err
			}
			provider, err := snapshotProvider(cmd.Context(), kmsFile, m)
			if err != nil {
				return err
			}
			// A node whose keys do not unwrap would start DISABLED and
			// wait for the key; a snapshot server says why and stops.
			ks, err := keys.Open(cmd.Context(), dir, provider)
			if err != nil {
				return fmt.Errorf("the snapshot's keystore does not open with that KMS configuration: %w", err)
			}
			ks.Close()
			abs, err := filepath.Abs(dir)
			if err != nil {
				return err
			}
			// A node directory whose node/ is the snapshot: the keystore
			// and db/ are where a node looks for them.
			run, err := os.MkdirTemp("", "cmkdb-snapshot-serve-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(run)
			if err := os.Symlink(abs, filepath.Join(run, "node")); err != nil {
				return err
			}
			f := serveFlags{dir: run, bind: "127.0.0.1", port: port, checkInterval: 15 * time.Minute, readOnly: true}
			return serve(cmd.Context(), stdout, f, node.Layout{Dir: run}, provider, nil)
		},
	}
	cmd.Flags().StringVar(&kmsFile, "kms-config", "", "JSON file naming the KMS provider and its settings that reach the snapshot's CMK")
	cmd.Flags().IntVar(&port, "port", 27018, "port for the MongoDB wire protocol (0: a free one; see the output)")
	return cmd
}

// snapshotArg is a snapshot directory, or a downloaded archive extracted
// into a private temporary one (cleanup removes it).
func snapshotArg(path string) (dir string, cleanup func(), err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", nil, err
	}
	if fi.IsDir() {
		return path, func() {}, nil
	}
	tmp, err := os.MkdirTemp("", "cmkdb-snapshot-")
	if err != nil {
		return "", nil, err
	}
	cleanup = func() { os.RemoveAll(tmp) }
	if err := snapshot.ExtractArchive(path, tmp); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("%s: %w", path, err)
	}
	return tmp, cleanup, nil
}

func readSnapshot(dir string) (snapshot.Manifest, *keys.Report, error) {
	raw, err := os.ReadFile(filepath.Join(dir, snapshot.ManifestName))
	if err != nil {
		return snapshot.Manifest{}, nil, fmt.Errorf("%s is not a snapshot: %w", dir, err)
	}
	var m snapshot.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return snapshot.Manifest{}, nil, fmt.Errorf("snapshot %s: damaged manifest: %w", dir, err)
	}
	if m.Format != snapshot.ManifestFormat {
		return snapshot.Manifest{}, nil, fmt.Errorf("snapshot %s: manifest format %d is not one this cmkdb reads", dir, m.Format)
	}
	r, err := keys.Inspect(dir)
	if err != nil {
		return snapshot.Manifest{}, nil, fmt.Errorf("snapshot %s: %w", dir, err)
	}
	return m, r, nil
}

// snapshotProvider opens the provider a --kms-config file names. A managed
// node's keystore (every cluster the control plane runs) was wrapped under
// associated data bound to the node's identity; the provider repeats it.
func snapshotProvider(ctx context.Context, file string, m snapshot.Manifest) (kms.Provider, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var k config.KMS
	if err := json.Unmarshal(raw, &k); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if k.ControlPlane != nil {
		return nil, fmt.Errorf("%s: a snapshot is opened with the KMS itself, not through a control plane", file)
	}
	p, err := providers.OpenNode(ctx, k.Provider, k.Settings)
	if err != nil {
		return nil, err
	}
	if m.NodeName == "" {
		return p, nil
	}
	return boundProvider{Provider: p, id: cpproto.NodeID{GroupID: m.GroupID, Cluster: m.Cluster, Name: m.NodeName}}, nil
}

// boundProvider unwraps as the key service does for the node id.
type boundProvider struct {
	kms.Provider
	id cpproto.NodeID
}

func (b boundProvider) Unwrap(ctx context.Context, w kms.Wrapped, aad []byte) ([]byte, error) {
	return b.Provider.Unwrap(ctx, w, cpproto.BindAAD(b.id, aad))
}

// readEverything opens a copy of the snapshot with provider and reads
// every record of every database, returning how many it read.
func readEverything(ctx context.Context, dir string, provider kms.Provider) (int64, error) {
	tmp, err := os.MkdirTemp("", "cmkdb-snapshot-verify-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(tmp)
	if err := snapshot.CopyTree(ctx, dir, tmp, nil); err != nil {
		return 0, err
	}
	ks, err := keys.Open(ctx, tmp, provider)
	if err != nil {
		var ke *kms.Error
		if errors.As(err, &ke) {
			return 0, fmt.Errorf("the snapshot's key does not open: %s (%s): %w", ke.Reason, ke.Reason.Validity(), err)
		}
		return 0, fmt.Errorf("the snapshot's keystore does not open: %w", err)
	}
	defer ks.Close()
	eng, err := storage.Open(storage.Options{Dir: filepath.Join(tmp, "db"), QuarantineDir: filepath.Join(tmp, "quarantine")}, ks)
	if err != nil {
		return 0, err
	}
	defer eng.Close()
	if q := eng.Quarantined(); len(q) > 0 {
		return 0, fmt.Errorf("the snapshot holds %d database directories its keystore does not name", len(q))
	}
	var n int64
	for _, name := range eng.Databases() {
		db, err := eng.Database(name)
		if err != nil {
			return n, err
		}
		it, err := db.NewIterWithContext(ctx, nil)
		if err != nil {
			return n, err
		}
		for it.First(); it.Valid(); it.Next() {
			if _, err := it.ValueAndErr(); err != nil {
				it.Close()
				return n, fmt.Errorf("database %s: %w", name, err)
			}
			n++
		}
		if err := it.Close(); err != nil {
			return n, fmt.Errorf("database %s: %w", name, err)
		}
	}
	return n, nil
}
