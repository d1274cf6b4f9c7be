package ctl

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
)

// App runs ctl commands against one admin API. It is not safe for
// concurrent use: a command line runs one command.
type App struct {
	c      *Client
	conn   conn
	out    io.Writer
	errw   io.Writer
	json   bool
	group  string // --group as given
	cached *Group // the project once resolved
}

// Connect resolves the connection from o. It sends nothing: the first
// command's request is the first contact.
func Connect(o Options) (*App, error) {
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Stderr == nil {
		o.Stderr = io.Discard
	}
	cn, err := resolve(o)
	if err != nil {
		return nil, err
	}
	base, err := baseTransport(o, cn.caFile)
	if err != nil {
		return nil, err
	}
	c, err := NewClient(cn.apiURL, cn.publicKey, cn.privateKey, base)
	if err != nil {
		return nil, err
	}
	return &App{c: c, conn: cn, out: o.Stdout, errw: o.Stderr, json: o.JSON, group: o.Group}, nil
}

// Client returns the API client, for commands this package does not have.
func (a *App) Client() *Client { return a.c }

// project resolves --group (an id or a name), else up.json's project, else
// the only project the key can read.
func (a *App) project(ctx context.Context) (Group, error) {
	if a.cached != nil {
		return *a.cached, nil
	}
	g, err := a.findProject(ctx)
	if err != nil {
		return Group{}, err
	}
	a.cached = &g
	return g, nil
}

func (a *App) findProject(ctx context.Context) (Group, error) {
	var g Group
	switch {
	case a.group != "":
		if looksLikeID(a.group) {
			err := a.c.Do(ctx, http.MethodGet, "/groups/"+seg(a.group), nil, nil, &g)
			var ae *APIError
			if err == nil || !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
				return g, err
			}
			// Not an id after all: a project may be named like one.
		}
		err := a.c.Do(ctx, http.MethodGet, "/groups/byName/"+seg(a.group), nil, nil, &g)
		return g, err
	case a.conn.defaultGroup != "":
		err := a.c.Do(ctx, http.MethodGet, "/groups/"+seg(a.conn.defaultGroup), nil, nil, &g)
		return g, err
	}
	gs, err := a.projects(ctx)
	if err != nil {
		return Group{}, err
	}
	switch len(gs) {
	case 0:
		return Group{}, errors.New("the API key can read no project")
	case 1:
		return gs[0], nil
	}
	names := make([]string, len(gs))
	for i, g := range gs {
		names[i] = g.Name
	}
	sort.Strings(names)
	return Group{}, fmt.Errorf("the API key can read %d projects (%s): name one with --group", len(gs), strings.Join(names, ", "))
}

// looksLikeID reports whether s is shaped like an Atlas id (24 hex digits).
func looksLikeID(s string) bool {
	if len(s) != 24 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// groupPath is the path of the current project, with sub appended.
func (a *App) groupPath(ctx context.Context, sub string) (string, error) {
	g, err := a.project(ctx)
	if err != nil {
		return "", err
	}
	return "/groups/" + seg(g.ID) + sub, nil
}
