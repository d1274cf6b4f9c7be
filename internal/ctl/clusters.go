package ctl

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Clusters lists the project's clusters: provider, whether they may use
// their keys (AVAILABLE or DISABLED), why and since when, how to connect.
func (a *App) Clusters(ctx context.Context) error {
	path, err := a.groupPath(ctx, "/clusters")
	if err != nil {
		return err
	}
	raws, err := a.c.List(ctx, path, nil, 0)
	if err != nil {
		return err
	}
	return a.printClusters(raws)
}

func (a *App) printClusters(raws []json.RawMessage) error {
	if a.json {
		return a.printResources(raws)
	}
	cs, err := decodeAll[Cluster](raws)
	if err != nil {
		return err
	}
	rows := make([][]string, len(cs))
	for i, c := range cs {
		s := c.EncryptionAtRestStatus
		members := strconv.Itoa(max(c.ReplicationFactor, 1))
		if p := c.MembershipChange.progress(); p != "" {
			members += " (" + p + ")"
		}
		rows[i] = []string{c.Name, c.EncryptionAtRestProvider, s.State, s.Reason, when(s.Since), members, c.ConnectionStrings.Standard}
	}
	return a.table([]string{"NAME", "PROVIDER", "STATE", "REASON", "SINCE", "MEMBERS", "CONNECTION"}, rows)
}

// printCluster prints one cluster the way Clusters prints a list.
func (a *App) printCluster(raw json.RawMessage) error {
	if a.json {
		return a.printResource(raw)
	}
	return a.printClusters([]json.RawMessage{raw})
}

// ClusterCreate creates a cluster; provider "" leaves the API's default
// (NONE: the control plane's internal key).
func (a *App) ClusterCreate(ctx context.Context, name, provider string) error {
	path, err := a.groupPath(ctx, "/clusters")
	if err != nil {
		return err
	}
	body := map[string]any{"name": name}
	if provider != "" {
		body["encryptionAtRestProvider"] = strings.ToUpper(provider)
	}
	var raw json.RawMessage
	if err := a.c.Do(ctx, http.MethodPost, path, nil, body, &raw); err != nil {
		return err
	}
	return a.printCluster(raw)
}

// ClusterSetProvider sets a cluster's encryptionAtRestProvider.
func (a *App) ClusterSetProvider(ctx context.Context, name, provider string) error {
	path, err := a.groupPath(ctx, "/clusters/"+seg(name))
	if err != nil {
		return err
	}
	var raw json.RawMessage
	body := map[string]any{"encryptionAtRestProvider": strings.ToUpper(provider)}
	if err := a.c.Do(ctx, http.MethodPatch, path, nil, body, &raw); err != nil {
		return err
	}
	return a.printCluster(raw)
}

// ClusterDelete deletes a cluster; its nodes stop and their data goes.
func (a *App) ClusterDelete(ctx context.Context, name string) error {
	path, err := a.groupPath(ctx, "/clusters/"+seg(name))
	if err != nil {
		return err
	}
	if err := a.c.Do(ctx, http.MethodDelete, path, nil, nil, nil); err != nil {
		return err
	}
	if a.json {
		return a.printJSON(map[string]any{"name": name, "deleted": true})
	}
	_, err = fmt.Fprintf(a.out, "cluster %s deleted\n", name)
	return err
}

// Nodes lists a cluster's nodes and their master keys.
func (a *App) Nodes(ctx context.Context, cluster string) error {
	ns, printed, err := listProject[Node](ctx, a, "/clusters/"+seg(cluster)+"/nodes", nil, 0)
	if err != nil || printed {
		return err
	}
	rows := make([][]string, len(ns))
	for i, n := range ns {
		rows[i] = []string{n.Name, n.State, n.Reason, strconv.FormatUint(uint64(n.MasterKeyVersion), 10),
			when(n.MasterKeyCreatedAt), n.CMK.String(), when(n.LastSeen)}
	}
	return a.table([]string{"NAME", "STATE", "REASON", "MASTER KEY", "CREATED", "CMK", "LAST SEEN"}, rows)
}

// Rotate asks for a rolling rotation of the cluster's node master keys:
// the nodes rotate one at a time, each re-wrapping its database keys.
func (a *App) Rotate(ctx context.Context, cluster string) error {
	path, err := a.groupPath(ctx, "/clusters/"+seg(cluster)+"/encryptionAtRest/rotateMasterKey")
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := a.c.Do(ctx, http.MethodPost, path, nil, nil, &raw); err != nil {
		return err
	}
	if a.json {
		return a.printResource(raw)
	}
	var c Cluster
	if err := json.Unmarshal(raw, &c); err != nil {
		return fmt.Errorf("decoding the cluster: %w", err)
	}
	_, err = fmt.Fprintf(a.out, "master key rotation of cluster %s requested at %s; nodes rotate one at a time (watch: cmkdb ctl nodes %s)\n",
		c.Name, when(c.RotationRequestedAt), c.Name)
	return err
}
