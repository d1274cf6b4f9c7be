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
	q := url.Values{}
	if status != "" {
		q.Set("status", strings.ToUpper(status))
	}
	as, printed, err := listProject[Alert](ctx, a, "/alerts", q, 0)
	if err != nil || printed {
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
	cs, printed, err := listProject[AlertConfig](ctx, a, "/alertConfigs", nil, 0)
	if err != nil || printed {
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
	q := url.Values{}
	if eventType != "" {
		q.Set("eventType", eventType)
	}
	es, printed, err := listProject[Event](ctx, a, "/events", q, limit)
	if err != nil || printed {
		return err
	}
	rows := make([][]string, len(es))
	for i, e := range es {
		rows[i] = []string{when(e.Created), e.EventTypeName, e.ClusterName, e.PublicKey, e.Detail}
	}
	return a.table([]string{"CREATED", "TYPE", "CLUSTER", "API KEY", "DETAIL"}, rows)
}
