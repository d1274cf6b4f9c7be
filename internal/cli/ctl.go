package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/cmkdb/cmkdb/internal/ctl"
)

// newCtlCmd is `cmkdb ctl`: flags and arguments only; package ctl does the
// work and formats failures as "error: CODE: detail".
func newCtlCmd(stdout, stderr io.Writer) *cobra.Command {
	o := &ctl.Options{Stdout: stdout, Stderr: stderr}
	cmd := &cobra.Command{
		Use:   "ctl",
		Short: "Operate a running control plane through its admin API (projects, encryption at rest, clusters, alerts)",
		Long: "Talks to the admin API as any client would, with HTTP Digest and an API key. By default it uses\n" +
			"the API URL, API key and project that `cmkdb up` wrote to DIR/up.json; --api-url with\n" +
			"--public-key and --private-key-file (the secret is read from a file, never given as a flag)\n" +
			"names another control plane or key. --json prints the API's resources instead of tables.",
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&o.Dir, "dir", defaultDir, "data directory of cmkdb up, whose up.json names the API, API key and project")
	pf.StringVar(&o.APIURL, "api-url", "", "admin API URL, instead of up.json's (needs --public-key and --private-key-file)")
	pf.StringVar(&o.PublicKey, "public-key", "", "API key public key")
	pf.StringVar(&o.PrivateKeyFile, "private-key-file", "", "file holding the API key's private key")
	pf.StringVar(&o.CAFile, "ca-file", "", "CA certificate to trust for an https API URL (default: up.json's tlsCAFile)")
	pf.StringVar(&o.Group, "group", "", "project id or name (default: up.json's project, else the only project)")
	pf.BoolVar(&o.JSON, "json", false, "print the API's resources as JSON")

	cmd.AddCommand(
		&cobra.Command{Use: "projects", Short: "List projects: id, name, clusters", Args: cobra.NoArgs,
			RunE: ctlRun(o, func(ctx context.Context, a *ctl.App, _ []string) error { return a.Projects(ctx) })},
		newCtlEARCmd(o),
		newCtlClustersCmd(o),
		&cobra.Command{Use: "nodes CLUSTER", Short: "List a cluster's nodes: state, master key version, CMK", Args: cobra.ExactArgs(1),
			RunE: ctlRun(o, func(ctx context.Context, a *ctl.App, args []string) error { return a.Nodes(ctx, args[0]) })},
		newCtlSnapshotsCmd(o),
		&cobra.Command{Use: "rotate CLUSTER", Short: "Rotate a cluster's node master keys now, one node at a time", Args: cobra.ExactArgs(1),
			RunE: ctlRun(o, func(ctx context.Context, a *ctl.App, args []string) error { return a.Rotate(ctx, args[0]) })},
		newCtlAlertsCmd(o),
		&cobra.Command{Use: "alert-configs", Short: "List alert configurations", Args: cobra.NoArgs,
			RunE: ctlRun(o, func(ctx context.Context, a *ctl.App, _ []string) error { return a.AlertConfigs(ctx) })},
		newCtlEventsCmd(o),
		newCtlMaintenanceCmd(o),
	)
	return cmd
}

// ctlRun connects with the options as parsed and runs f; any failure comes
// back as ctl formats it.
func ctlRun(o *ctl.Options, f func(context.Context, *ctl.App, []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		a, err := ctl.Connect(*o)
		if err != nil {
			return ctl.Report(err)
		}
		return ctl.Report(f(cmd.Context(), a, args))
	}
}

func newCtlEARCmd(o *ctl.Options) *cobra.Command {
	show := func(ctx context.Context, a *ctl.App, _ []string) error { return a.EARShow(ctx) }
	cmd := &cobra.Command{Use: "ear", Short: "Show or change the project's encryption at rest (customer master key)", Args: cobra.NoArgs,
		RunE: ctlRun(o, show)}

	var sets, secretFiles []string
	set := &cobra.Command{
		Use:   "set PROVIDER-OBJECT --set NAME=VALUE ... [--secret-file NAME=PATH ...]",
		Short: "Configure the provider (awsKms, azureKeyVault, googleCloudKms, kmip, vaultTransit, pkcs11, local)",
		Long: "Configures the provider object; the control plane validates the key before it stores anything.\n" +
			"Credentials (secretAccessKey, secret, serviceAccountKey, token, pin) are read from files with\n" +
			"--secret-file, never given with --set. Example:\n" +
			"  cmkdb ctl ear set awsKms --set customerMasterKeyID=KEY --set region=US_EAST_1 \\\n" +
			"    --set accessKeyID=AKIA... --secret-file secretAccessKey=/path/to/secret",
		Args: cobra.ExactArgs(1),
		RunE: ctlRun(o, func(ctx context.Context, a *ctl.App, args []string) error {
			return a.EARSet(ctx, args[0], sets, secretFiles)
		}),
	}
	// StringArray, not StringSlice: a value may hold commas.
	set.Flags().StringArrayVar(&sets, "set", nil, "attribute NAME=VALUE (repeatable)")
	set.Flags().StringArrayVar(&secretFiles, "secret-file", nil, "credential NAME=PATH, the value read from PATH (repeatable)")

	var interval time.Duration
	var days int
	settings := &cobra.Command{Use: "settings", Short: "Set the key check interval and the node master key rotation period", Args: cobra.NoArgs}
	settings.Flags().DurationVar(&interval, "check-interval", 0, "how often the control plane checks the key, e.g. 30s, 15m")
	settings.Flags().IntVar(&days, "rotation-days", 0, "longest a node master key lives, in days (1-365)")
	settings.RunE = ctlRun(o, func(ctx context.Context, a *ctl.App, _ []string) error {
		var ip *time.Duration
		var dp *int
		if settings.Flags().Changed("check-interval") {
			ip = &interval
		}
		if settings.Flags().Changed("rotation-days") {
			dp = &days
		}
		return a.EARSettings(ctx, ip, dp)
	})

	cmd.AddCommand(
		&cobra.Command{Use: "show", Short: "Show the provider, the key's validity and the settings (checks the key now)", Args: cobra.NoArgs,
			RunE: ctlRun(o, show)},
		set,
		&cobra.Command{Use: "disable", Short: "Turn customer key management off (refused while clusters use it)", Args: cobra.NoArgs,
			RunE: ctlRun(o, func(ctx context.Context, a *ctl.App, _ []string) error { return a.EARDisable(ctx) })},
		settings,
		&cobra.Command{Use: "validate", Short: "Check the key now (\"try again\"); exits non-zero while it is not valid", Args: cobra.NoArgs,
			RunE: ctlRun(o, func(ctx context.Context, a *ctl.App, _ []string) error { return a.EARValidate(ctx) })},
	)
	return cmd
}

func newCtlClustersCmd(o *ctl.Options) *cobra.Command {
	cmd := &cobra.Command{Use: "clusters", Short: "List clusters: provider, AVAILABLE/DISABLED and why, connection string", Args: cobra.NoArgs,
		RunE: ctlRun(o, func(ctx context.Context, a *ctl.App, _ []string) error { return a.Clusters(ctx) })}
	var provider string
	create := &cobra.Command{Use: "create NAME", Short: "Create a cluster", Args: cobra.ExactArgs(1),
		RunE: ctlRun(o, func(ctx context.Context, a *ctl.App, args []string) error {
			return a.ClusterCreate(ctx, args[0], provider)
		})}
	create.Flags().StringVar(&provider, "provider", "", "encryption at rest provider: NONE (default), AWS, AZURE, GCP, KMIP, VAULT, PKCS11, LOCAL")
	cmd.AddCommand(create,
		&cobra.Command{Use: "set-provider NAME PROVIDER", Short: "Set a cluster's encryption at rest provider (NONE to stop using the CMK)", Args: cobra.ExactArgs(2),
			RunE: ctlRun(o, func(ctx context.Context, a *ctl.App, args []string) error {
				return a.ClusterSetProvider(ctx, args[0], args[1])
			})},
		&cobra.Command{Use: "delete NAME", Short: "Delete a cluster: its nodes stop and their data is destroyed", Args: cobra.ExactArgs(1),
			RunE: ctlRun(o, func(ctx context.Context, a *ctl.App, args []string) error { return a.ClusterDelete(ctx, args[0]) })},
	)
	var wait bool
	setMembers := &cobra.Command{Use: "set-members NAME N", Short: "Change a replica set's member count (3, 5 or 7): members are added (initial sync) or removed one at a time",
		Args: cobra.ExactArgs(2),
		RunE: ctlRun(o, func(ctx context.Context, a *ctl.App, args []string) error {
			n, err := strconv.Atoi(args[1])
			if err != nil {
				return fmt.Errorf("member count %q: %w", args[1], err)
			}
			return a.ClusterSetMembers(ctx, args[0], n, wait)
		})}
	setMembers.Flags().BoolVar(&wait, "wait", false, "print the change's progress (initial sync bytes, documents, estimated time left) until it completes")
	cmd.AddCommand(setMembers)
	return cmd
}

func newCtlAlertsCmd(o *ctl.Options) *cobra.Command {
	var status string
	cmd := &cobra.Command{Use: "alerts", Short: "List alerts, newest first", Args: cobra.NoArgs,
		RunE: ctlRun(o, func(ctx context.Context, a *ctl.App, _ []string) error { return a.Alerts(ctx, status) })}
	cmd.Flags().StringVar(&status, "status", "", "only alerts in this status: OPEN or CLOSED")
	return cmd
}

func newCtlEventsCmd(o *ctl.Options) *cobra.Command {
	var eventType string
	var limit int
	cmd := &cobra.Command{Use: "events", Short: "List events and audit entries, newest first", Args: cobra.NoArgs,
		RunE: ctlRun(o, func(ctx context.Context, a *ctl.App, _ []string) error { return a.Events(ctx, eventType, limit) })}
	cmd.Flags().StringVar(&eventType, "type", "", "only events of this type, e.g. LOCAL_ENCRYPTION_KEY_INVALID")
	cmd.Flags().IntVar(&limit, "limit", ctl.DefaultEventLimit, "at most this many events (0: all)")
	return cmd
}

func newCtlMaintenanceCmd(o *ctl.Options) *cobra.Command {
	show := func(ctx context.Context, a *ctl.App, _ []string) error { return a.MaintenanceShow(ctx) }
	cmd := &cobra.Command{Use: "maintenance", Short: "Show or set the maintenance window scheduled key rotations run in", Args: cobra.NoArgs,
		RunE: ctlRun(o, show)}
	var day, hour int
	set := &cobra.Command{Use: "set", Short: "Set the window's day and hour", Args: cobra.NoArgs}
	set.Flags().IntVar(&day, "day", 0, "day of week: 1 (Sunday) to 7 (Saturday)")
	set.Flags().IntVar(&hour, "hour", 0, "hour of day: 0 to 23")
	set.RunE = ctlRun(o, func(ctx context.Context, a *ctl.App, _ []string) error {
		var dp, hp *int
		if set.Flags().Changed("day") {
			dp = &day
		}
		if set.Flags().Changed("hour") {
			hp = &hour
		}
		return a.MaintenanceSet(ctx, dp, hp)
	})
	cmd.AddCommand(
		&cobra.Command{Use: "show", Short: "Show the maintenance window", Args: cobra.NoArgs, RunE: ctlRun(o, show)},
		set,
		&cobra.Command{Use: "defer", Short: "Postpone due master key rotations by a week", Args: cobra.NoArgs,
			RunE: ctlRun(o, func(ctx context.Context, a *ctl.App, _ []string) error { return a.MaintenanceDefer(ctx) })},
	)
	return cmd
}

func newCtlSnapshotsCmd(o *ctl.Options) *cobra.Command {
	var key string
	cmd := &cobra.Command{Use: "snapshots CLUSTER", Short: "List a cluster's backup snapshots and the CMK version protecting each; take and restore them",
		Long: "With --key provider:keyId[@version], only the snapshots that key protects: the ones that disabling or\n" +
			"deleting it would make unopenable (restores included).",
		Args: cobra.ExactArgs(1),
		RunE: ctlRun(o, func(ctx context.Context, a *ctl.App, args []string) error { return a.Snapshots(ctx, args[0], key) })}
	cmd.Flags().StringVar(&key, "key", "", "only the snapshots this CMK (version) protects")
	var days int
	var desc string
	var wait bool
	take := &cobra.Command{Use: "take CLUSTER", Short: "Take an on-demand snapshot", Args: cobra.ExactArgs(1),
		RunE: ctlRun(o, func(ctx context.Context, a *ctl.App, args []string) error {
			return a.TakeSnapshot(ctx, args[0], days, desc, wait)
		})}
	take.Flags().IntVar(&days, "retention-days", 7, "days to keep it")
	take.Flags().StringVar(&desc, "description", "", "what it is for")
	take.Flags().BoolVar(&wait, "wait", false, "wait until it is completed")
	var target string
	var waitRestore bool
	restore := &cobra.Command{Use: "restore CLUSTER SNAPSHOT-ID", Short: "Restore a snapshot into its cluster (or --target-cluster), online", Args: cobra.ExactArgs(2),
		RunE: ctlRun(o, func(ctx context.Context, a *ctl.App, args []string) error {
			return a.Restore(ctx, args[0], args[1], target, waitRestore)
		})}
	restore.Flags().StringVar(&target, "target-cluster", "", "restore into this cluster of the project (same provider) instead")
	restore.Flags().BoolVar(&waitRestore, "wait", false, "draw the restore's progress until it finishes")
	cmd.AddCommand(take, restore)
	return cmd
}
