// Package cli builds the cmkdb command tree. Each command parses flags and
// calls into the packages that do the work; no behaviour lives here.
package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Version is cmkdb's release version. A release build may override it
// with -ldflags "-X github.com/cmkdb/cmkdb/internal/cli.Version=…"; the
// commit always comes from the build information Go records.
var Version = "0.1.0-dev"

// versionString is what `cmkdb version` prints: the version, the commit the
// binary was built from (vcs.revision) and whether the tree had changes
// (vcs.modified), and the Go version.
func versionString() string {
	commit, modified, goVersion := "unknown", false, runtime.Version()
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	out := fmt.Sprintf("cmkdb %s\ncommit %s", Version, commit)
	if commit == "unknown" {
		out += " (built without version control information: `go build` in a git checkout records it)"
	} else if modified {
		out += " (with uncommitted changes)"
	}
	return out + "\n" + goVersion
}

// Execute runs the command line and returns the process exit code.
func Execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, "cmkdb:", err)
		return 1
	}
	return 0
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	var logLevel string
	root := &cobra.Command{
		Use:           "cmkdb",
		Short:         "A MongoDB-compatible database encrypted under keys you hold in your own KMS",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl})))
			return nil
		},
	}
	root.PersistentFlags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.AddCommand(
		newUpCmd(stdout),
		newNodeCmd(stdout),
		newControlPlaneCmd(stdout),
		newBenchCmd(stdout),
		newDevCmd(stdout),
		newKMSCmd(stdout),
		newKeystoreCmd(stdout),
		newSnapshotCmd(stdout),
		newCtlCmd(stdout, stderr),
		&cobra.Command{
			Use:   "version",
			Short: "Print the version",
			Run:   func(*cobra.Command, []string) { fmt.Fprintln(stdout, versionString()) },
		},
	)
	return root
}
