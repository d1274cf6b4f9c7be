package ctl

import (
	"context"
	"strconv"
)

func (a *App) projects(ctx context.Context) ([]Group, error) {
	raws, err := a.c.List(ctx, "/groups", nil, 0)
	if err != nil {
		return nil, err
	}
	return decodeAll[Group](raws)
}

// Projects lists the projects the key can read: id, name, clusters.
func (a *App) Projects(ctx context.Context) error {
	raws, err := a.c.List(ctx, "/groups", nil, 0)
	if err != nil {
		return err
	}
	if a.json {
		return a.printResources(raws)
	}
	gs, err := decodeAll[Group](raws)
	if err != nil {
		return err
	}
	rows := make([][]string, len(gs))
	for i, g := range gs {
		rows[i] = []string{g.ID, g.Name, strconv.Itoa(g.ClusterCount)}
	}
	return a.table([]string{"ID", "NAME", "CLUSTERS"}, rows)
}
