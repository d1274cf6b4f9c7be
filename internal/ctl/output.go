package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"
)

// printJSON writes v indented, one document per command.
func (a *App) printJSON(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding JSON output: %w", err)
	}
	_, err = a.out.Write(append(b, '\n'))
	return err
}

// resourceJSON is an API resource as --json prints it: as the server wrote
// it, less the hypermedia links that only matter to a crawler.
func resourceJSON(raw json.RawMessage) (json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("decoding a resource: %w", err)
	}
	delete(m, "links")
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encoding a resource: %w", err)
	}
	return b, nil
}

// printResources prints a list with --json: a JSON array of resources.
func (a *App) printResources(raws []json.RawMessage) error {
	out := make([]json.RawMessage, 0, len(raws))
	for _, r := range raws {
		c, err := resourceJSON(r)
		if err != nil {
			return err
		}
		out = append(out, c)
	}
	return a.printJSON(out)
}

// printResource prints one resource with --json.
func (a *App) printResource(raw json.RawMessage) error {
	c, err := resourceJSON(raw)
	if err != nil {
		return err
	}
	return a.printJSON(c)
}

// decodeAll decodes each raw resource into a T.
func decodeAll[T any](raws []json.RawMessage) ([]T, error) {
	out := make([]T, 0, len(raws))
	for _, r := range raws {
		var v T
		if err := json.Unmarshal(r, &v); err != nil {
			return nil, fmt.Errorf("decoding a resource: %w", err)
		}
		out = append(out, v)
	}
	return out, nil
}

// table prints rows under a header, columns aligned. The whole table is
// built first so a write error is reported once.
func (a *App) table(header []string, rows [][]string) error {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, c := range r {
			cells[i] = cell(c)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := a.out.Write(buf.Bytes())
	return err
}

// fields prints "name: value" pairs, values aligned.
func (a *App) fields(pairs [][2]string) error {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 4, 1, ' ', 0)
	for _, p := range pairs {
		fmt.Fprintf(tw, "%s:\t%s\n", p[0], cell(p[1]))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := a.out.Write(buf.Bytes())
	return err
}

// cell makes text safe for one table cell: a KMS error detail can hold
// tabs and newlines that would break the columns.
func cell(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, strings.TrimSpace(s))
	if s == "" {
		return "-"
	}
	return s
}

// when formats a timestamp in UTC to the second; zero is "".
func when(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func yesNo(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// listProject fetches every page of a project resource (sub is its path
// under the project). With --json it prints the resources and returns
// printed = true; otherwise it decodes them for a table.
func listProject[T any](ctx context.Context, a *App, sub string, q url.Values, limit int) (items []T, printed bool, err error) {
	path, err := a.groupPath(ctx, sub)
	if err != nil {
		return nil, false, err
	}
	raws, err := a.c.List(ctx, path, q, limit)
	if err != nil {
		return nil, false, err
	}
	if a.json {
		return nil, true, a.printResources(raws)
	}
	items, err = decodeAll[T](raws)
	return items, false, err
}
