package ctl

import (
	"context"
	"fmt"
	"net/url"
	"strings"
)

// Alerts lists the project's alerts, newest first; status filters (OPEN,
// CLOSED).
func (a *App) Alerts(ctx context.Context, status string) error {
	path, err := a.groupPath(ctx, "/alerts")
	if err != nil {
		return err
	}
	q := url.Values{}
	if status != "" {
		q.Set("status", strings.ToUpper(status))
	}
	raws, err := a.c.List(ctx, path, q, 0)
	if err != nil {
		return err
	}
	if a.json {
		return a.printResources(raws)
	}
	as, err := decodeAll[Alert](raws)
	if err != nil {
		return err
	}
	rows := make([][]string, len(as))
	for i, al := range as {
		resolved := ""
		if al.Resolved != nil {
			resolved = when(*al.Resolved)
		}
		rows[i] = []string{al.ID, al.EventTypeName, al.Status, al.ClusterName, when(al.Created), resolved, al.Detail}
	}
	return a.table([]string{"ID", "TYPE", "STATUS", "CLUSTER", "CREATED", "RESOLVED", "DETAIL"}, rows)
}

// AlertConfigs lists the project's alert configurations.
func (a *App) AlertConfigs(ctx context.Context) error {
	path, err := a.groupPath(ctx, "/alertConfigs")
	if err != nil {
		return err
	}
	raws, err := a.c.List(ctx, path, nil, 0)
	if err != nil {
		return err
	}
	if a.json {
		return a.printResources(raws)
	}
	cs, err := decodeAll[AlertConfig](raws)
	if err != nil {
		return err
	}
	rows := make([][]string, len(cs))
	for i, c := range cs {
		threshold := ""
		if t := c.Threshold; t != nil {
			threshold = fmt.Sprintf("%s %d %s", operator(t.Operator), t.Threshold, t.Units)
		}
		var to []string
		for _, n := range c.Notifications {
			to = append(to, n.TypeName)
		}
		rows[i] = []string{c.ID, c.EventTypeName, yesNo(c.Enabled), threshold, strings.Join(to, ",")}
	}
	return a.table([]string{"ID", "TYPE", "ENABLED", "THRESHOLD", "NOTIFY"}, rows)
}

func operator(op string) string {
	switch op {
	case "GREATER_THAN":
		return ">"
	case "LESS_THAN":
		return "<"
	}
	return op
}

// DefaultEventLimit is how many events `ctl events` shows unless told.
const DefaultEventLimit = 50

// Events lists the newest events (limit 0: all), optionally of one type.
func (a *App) Events(ctx context.Context, eventType string, limit int) error {
	if limit < 0 {
		return fmt.Errorf("--limit %d: want 0 (all) or more", limit)
	}
	path, err := a.groupPath(ctx, "/events")
	if err != nil {
		return err
	}
	q := url.Values{}
	if eventType != "" {
		q.Set("eventType", eventType)
	}
	raws, err := a.c.List(ctx, path, q, limit)
	if err != nil {
		return err
	}
	if a.json {
		return a.printResources(raws)
	}
	es, err := decodeAll[Event](raws)
	if err != nil {
		return err
	}
	rows := make([][]string, len(es))
	for i, e := range es {
		rows[i] = []string{when(e.Created), e.EventTypeName, e.ClusterName, e.PublicKey, e.Detail}
	}
	return a.table([]string{"CREATED", "TYPE", "CLUSTER", "API KEY", "DETAIL"}, rows)
}
