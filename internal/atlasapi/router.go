// Package atlasapi is the HTTP layer of the control plane: an admin API
// compatible with the MongoDB Atlas Administration API for projects,
// clusters, encryption at rest, alerts, events, API keys and maintenance
// windows, served under both /api/atlas/v2 and /api/atlas/v1.0 so that
// Atlas clients (the official Go client, Terraform, the Atlas CLI) work
// unchanged. Every request is authenticated with HTTP Digest API keys and
// authorized with controlplane.Allowed; every refusal is Atlas's error
// envelope. The package holds no state of its own beyond the handler: all
// state lives in the controlplane.Service.
package atlasapi

import (
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/cmkdb/cmkdb/internal/apiauth"
	"github.com/cmkdb/cmkdb/internal/controlplane"
)

// Version prefixes: v2 is the current Atlas API, v1.0 the one the
// go.mongodb.org/atlas client still speaks. Both serve the same routes.
const (
	prefixV2 = "/api/atlas/v2"
	prefixV1 = "/api/atlas/v1.0"
)

// Options configure the handler.
type Options struct {
	// Logger receives server-side failures; nil means the service's
	// logger, which scrubs credentials.
	Logger *slog.Logger
}

// handler serves the API. It is immutable once built.
type handler struct {
	svc    *controlplane.Service
	log    *slog.Logger
	auth   *apiauth.Authenticator
	routes []route
}

// route is one method and path pattern, relative to a version prefix.
type route struct {
	method  string
	pattern string   // "/groups/{groupId}/clusters"
	segs    []string // pattern split on "/"
	// need is the role the caller must hold on the route's {groupId} (or
	// on the org when the route has none); "" means any valid API key.
	need string
	// public routes skip authentication (the OpenAPI document only).
	public bool
	fn     func(*call) (int, any, error)
}

// New returns the admin API handler for svc. Options are optional so that
// tests can write New(svc).
func New(svc *controlplane.Service, opts ...Options) http.Handler {
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.Logger == nil {
		o.Logger = svc.Logger()
	}
	h := &handler{svc: svc, log: o.Logger}
	h.auth = apiauth.New(apiauth.Realm, h.lookupSecret)
	h.routes = h.table()
	return h
}

// table lists every route. Order matters only where a literal segment
// competes with a parameter (/groups/byName/… before /groups/{groupId}/…).
func (h *handler) table() []route {
	const (
		ro      = controlplane.RoleGroupReadOnly
		owner   = controlplane.RoleGroupOwner
		manager = controlplane.RoleGroupClusterManager
		orgOwn  = controlplane.RoleOrgOwner
		orgRead = controlplane.RoleOrgReadOnly
	)
	rs := []route{
		{method: http.MethodGet, pattern: "/openapi.yaml", public: true, fn: h.openAPI},
		// The token is the credential: a one-time download link.
		{method: http.MethodGet, pattern: "/backup/downloads/{token}", public: true, fn: h.download},

		{method: http.MethodGet, pattern: "/orgs", fn: h.listOrgs},
		{method: http.MethodGet, pattern: "/orgs/{orgId}", fn: h.getOrg},
		{method: http.MethodGet, pattern: "/orgs/{orgId}/apiKeys", need: orgRead, fn: h.listAPIKeys},
		{method: http.MethodPost, pattern: "/orgs/{orgId}/apiKeys", need: orgOwn, fn: h.createOrgAPIKey},
		{method: http.MethodDelete, pattern: "/orgs/{orgId}/apiKeys/{apiUserId}", need: orgOwn, fn: h.deleteAPIKey},

		{method: http.MethodGet, pattern: "/groups/byName/{groupName}", fn: h.getGroupByName},
		{method: http.MethodGet, pattern: "/groups", fn: h.listGroups},
		{method: http.MethodPost, pattern: "/groups", need: orgOwn, fn: h.createGroup},
		{method: http.MethodGet, pattern: "/groups/{groupId}", need: ro, fn: h.getGroup},
		{method: http.MethodDelete, pattern: "/groups/{groupId}", need: orgOwn, fn: h.deleteGroup},
		{method: http.MethodPost, pattern: "/groups/{groupId}/apiKeys", need: owner, fn: h.createGroupAPIKey},

		{method: http.MethodGet, pattern: "/groups/{groupId}/encryptionAtRest", need: ro, fn: h.getEAR},
		{method: http.MethodPatch, pattern: "/groups/{groupId}/encryptionAtRest", need: owner, fn: h.patchEAR},
		{method: http.MethodPost, pattern: "/groups/{groupId}/encryptionAtRest/validate", need: owner, fn: h.validateEAR},

		{method: http.MethodGet, pattern: "/groups/{groupId}/clusters", need: ro, fn: h.listClusters},
		// Cluster writes check GROUP_OWNER themselves when they touch
		// encryptionAtRestProvider.
		{method: http.MethodPost, pattern: "/groups/{groupId}/clusters", need: manager, fn: h.createCluster},
		{method: http.MethodGet, pattern: "/groups/{groupId}/clusters/{clusterName}", need: ro, fn: h.getCluster},
		{method: http.MethodPatch, pattern: "/groups/{groupId}/clusters/{clusterName}", need: manager, fn: h.updateCluster},
		{method: http.MethodDelete, pattern: "/groups/{groupId}/clusters/{clusterName}", need: manager, fn: h.deleteCluster},
		{method: http.MethodPost, pattern: "/groups/{groupId}/clusters/{clusterName}/encryptionAtRest/rotateMasterKey", need: owner, fn: h.rotateMasterKey},
		{method: http.MethodGet, pattern: "/groups/{groupId}/clusters/{clusterName}/nodes", need: ro, fn: h.listNodes},
		{method: http.MethodGet, pattern: "/groups/{groupId}/clusters/{clusterName}/backup/snapshots", need: ro, fn: h.listSnapshots},
		{method: http.MethodPost, pattern: "/groups/{groupId}/clusters/{clusterName}/backup/snapshots", need: owner, fn: h.takeSnapshot},
		{method: http.MethodGet, pattern: "/groups/{groupId}/clusters/{clusterName}/backup/snapshots/{snapshotId}", need: ro, fn: h.getSnapshot},
		{method: http.MethodDelete, pattern: "/groups/{groupId}/clusters/{clusterName}/backup/snapshots/{snapshotId}", need: owner, fn: h.deleteSnapshot},
		{method: http.MethodGet, pattern: "/groups/{groupId}/clusters/{clusterName}/backup/schedule", need: ro, fn: h.getBackupSchedule},
		{method: http.MethodPatch, pattern: "/groups/{groupId}/clusters/{clusterName}/backup/schedule", need: owner, fn: h.updateBackupSchedule},
		{method: http.MethodDelete, pattern: "/groups/{groupId}/clusters/{clusterName}/backup/schedule", need: owner, fn: h.deleteBackupSchedule},
		{method: http.MethodGet, pattern: "/groups/{groupId}/clusters/{clusterName}/backup/restoreJobs", need: ro, fn: h.listRestoreJobs},
		{method: http.MethodPost, pattern: "/groups/{groupId}/clusters/{clusterName}/backup/restoreJobs", need: owner, fn: h.createRestoreJob},
		{method: http.MethodGet, pattern: "/groups/{groupId}/clusters/{clusterName}/backup/restoreJobs/{jobId}", need: ro, fn: h.getRestoreJob},

		{method: http.MethodGet, pattern: "/groups/{groupId}/alertConfigs", need: ro, fn: h.listAlertConfigs},
		{method: http.MethodPost, pattern: "/groups/{groupId}/alertConfigs", need: owner, fn: h.createAlertConfig},
		{method: http.MethodGet, pattern: "/groups/{groupId}/alertConfigs/{alertConfigId}", need: ro, fn: h.getAlertConfig},
		{method: http.MethodPut, pattern: "/groups/{groupId}/alertConfigs/{alertConfigId}", need: owner, fn: h.replaceAlertConfig},
		{method: http.MethodPatch, pattern: "/groups/{groupId}/alertConfigs/{alertConfigId}", need: owner, fn: h.toggleAlertConfig},
		{method: http.MethodDelete, pattern: "/groups/{groupId}/alertConfigs/{alertConfigId}", need: owner, fn: h.deleteAlertConfig},
		{method: http.MethodGet, pattern: "/groups/{groupId}/alerts", need: ro, fn: h.listAlerts},
		{method: http.MethodGet, pattern: "/groups/{groupId}/alerts/{alertId}", need: ro, fn: h.getAlert},

		{method: http.MethodGet, pattern: "/groups/{groupId}/events", need: ro, fn: h.listEvents},
		{method: http.MethodGet, pattern: "/groups/{groupId}/events/{eventId}", need: ro, fn: h.getEvent},

		{method: http.MethodGet, pattern: "/groups/{groupId}/maintenanceWindow", need: ro, fn: h.getMaintenanceWindow},
		{method: http.MethodPatch, pattern: "/groups/{groupId}/maintenanceWindow", need: owner, fn: h.patchMaintenanceWindow},
		{method: http.MethodPost, pattern: "/groups/{groupId}/maintenanceWindow/defer", need: owner, fn: h.deferMaintenance},
	}
	for i := range rs {
		rs[i].segs = strings.Split(strings.Trim(rs[i].pattern, "/"), "/")
	}
	return rs
}

// match finds the route for method and path segments. pathOK reports
// whether some route has the path (so a miss is 405, not 404), and allow
// lists the methods it has.
func (h *handler) match(method string, segs []string) (rt *route, params map[string]string, pathOK bool, allow []string) {
	for i := range h.routes {
		r := &h.routes[i]
		p, ok := matchSegs(r.segs, segs)
		if !ok {
			continue
		}
		if r.method == method {
			return r, p, true, nil
		}
		pathOK = true
		allow = append(allow, r.method)
	}
	return nil, nil, pathOK, allow
}

func matchSegs(pattern, segs []string) (map[string]string, bool) {
	if len(pattern) != len(segs) {
		return nil, false
	}
	params := map[string]string{}
	for i, p := range pattern {
		if strings.HasPrefix(p, "{") {
			if segs[i] == "" {
				return nil, false
			}
			params[strings.Trim(p, "{}")] = segs[i]
			continue
		}
		if p != segs[i] {
			return nil, false
		}
	}
	return params, true
}

// splitPath strips the version prefix and splits the rest into unescaped
// segments; ok is false for paths outside the API.
func splitPath(escaped string) (prefix string, segs []string, ok bool) {
	for _, p := range []string{prefixV2, prefixV1} {
		if escaped == p || strings.HasPrefix(escaped, p+"/") {
			prefix = p
			break
		}
	}
	if prefix == "" {
		return "", nil, false
	}
	rest := strings.TrimSuffix(strings.TrimPrefix(escaped, prefix), "/")
	if rest == "" {
		return prefix, []string{}, true
	}
	for _, s := range strings.Split(strings.TrimPrefix(rest, "/"), "/") {
		u, err := url.PathUnescape(s)
		if err != nil {
			return "", nil, false
		}
		segs = append(segs, u)
	}
	return prefix, segs, true
}

// ServeHTTP routes, authenticates, authorizes and runs one request.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := &call{h: h, w: w, r: r, media: responseMedia(r)}
	defer func() {
		// A bug in a handler must not take the connection down without an
		// answer; the client gets a 500 that reveals nothing.
		if v := recover(); v != nil {
			h.log.Error("admin API handler panic", "method", r.Method, "path", loggedPath(r.URL.Path), "panic", v)
			c.fail(&controlplane.APIError{Status: http.StatusInternalServerError, Code: "UNEXPECTED_ERROR", Detail: "Unexpected error."})
		}
	}()
	prefix, segs, ok := splitPath(r.URL.EscapedPath())
	if !ok {
		c.fail(errNotFound(r.URL.Path))
		return
	}
	c.prefix = prefix
	rt, params, pathOK, allow := h.match(r.Method, segs)
	if rt == nil {
		if pathOK {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			c.fail(errMethodNotAllowed(r.Method, r.URL.Path))
			return
		}
		c.fail(errNotFound(r.URL.Path))
		return
	}
	c.params = params
	if !rt.public {
		if !h.authenticate(c) {
			return
		}
		if err := c.require(rt.need); err != nil {
			c.fail(err)
			return
		}
	}
	if err := checkContentType(r); err != nil {
		c.fail(err)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	status, body, err := rt.fn(c)
	if err != nil {
		c.fail(err)
		return
	}
	c.reply(status, body)
}
