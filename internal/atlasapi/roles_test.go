package atlasapi_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/cmkdb/cmkdb/internal/controlplane"
)

// TestRoles checks who may do what, and that a refused request changes
// nothing.
func TestRoles(t *testing.T) {
	e := newEnv(t, nil)
	gid := e.project("roles")
	other := e.project("other")
	keyFile := localKey(t)
	ear := "/groups/" + gid + "/encryptionAtRest"
	e.must(e.root, 200, http.MethodPatch, ear, map[string]any{"local": map[string]any{"keyFile": keyFile}})

	readOnly := e.keyWith(controlplane.RoleAssignment{RoleName: controlplane.RoleGroupReadOnly, GroupID: gid})
	manager := e.keyWith(controlplane.RoleAssignment{RoleName: controlplane.RoleGroupClusterManager, GroupID: gid})
	otherOwner := e.keyWith(controlplane.RoleAssignment{RoleName: controlplane.RoleGroupOwner, GroupID: other})
	owner := e.keyWith(controlplane.RoleAssignment{RoleName: controlplane.RoleGroupOwner, GroupID: gid})

	disable := map[string]any{"local": map[string]any{"enabled": false}}
	cases := []struct {
		name   string
		k      key
		method string
		path   string
		body   any
		status int
	}{
		{"read-only GET encryptionAtRest", readOnly, http.MethodGet, ear, nil, 200},
		{"read-only GET project", readOnly, http.MethodGet, "/groups/" + gid, nil, 200},
		{"read-only PATCH encryptionAtRest", readOnly, http.MethodPatch, ear, disable, 403},
		{"read-only validate", readOnly, http.MethodPost, ear + "/validate", nil, 403},
		{"read-only creates a cluster", readOnly, http.MethodPost, "/groups/" + gid + "/clusters", map[string]any{"name": "ro"}, 403},
		{"read-only alert config", readOnly, http.MethodPost, "/groups/" + gid + "/alertConfigs",
			map[string]any{"eventTypeName": "ENCRYPTION_AT_REST_CONFIG_NO_LONGER_VALID", "notifications": []any{map[string]any{"typeName": "GROUP"}}}, 403},
		{"read-only maintenance window", readOnly, http.MethodPatch, "/groups/" + gid + "/maintenanceWindow", map[string]any{"dayOfWeek": 2}, 403},
		{"manager creates a NONE cluster", manager, http.MethodPost, "/groups/" + gid + "/clusters", map[string]any{"name": "plain"}, 201},
		{"manager creates a LOCAL cluster", manager, http.MethodPost, "/groups/" + gid + "/clusters",
			map[string]any{"name": "enc", "encryptionAtRestProvider": "LOCAL"}, 403},
		{"manager enables EAR on a cluster", manager, http.MethodPatch, "/groups/" + gid + "/clusters/plain",
			map[string]any{"encryptionAtRestProvider": "LOCAL"}, 403},
		{"manager resizes a cluster", manager, http.MethodPatch, "/groups/" + gid + "/clusters/plain", map[string]any{"diskSizeGB": 20}, 200},
		{"manager PATCH encryptionAtRest", manager, http.MethodPatch, ear, disable, 403},
		{"manager creates a project", manager, http.MethodPost, "/groups", map[string]any{"name": "nope"}, 403},
		{"other project's owner reads", otherOwner, http.MethodGet, ear, nil, 403},
		{"other project's owner patches", otherOwner, http.MethodPatch, ear, disable, 403},
		{"owner mints an org key through a project", owner, http.MethodPost, "/groups/" + gid + "/apiKeys",
			map[string]any{"desc": "escalate", "roles": []string{"ORG_OWNER"}}, 400},
		{"owner creates an org key", owner, http.MethodPost, "/orgs/" + e.svc.Org().ID + "/apiKeys",
			map[string]any{"desc": "escalate", "roles": []string{"ORG_OWNER"}}, 403},
		{"owner enables EAR on a cluster", owner, http.MethodPatch, "/groups/" + gid + "/clusters/plain",
			map[string]any{"encryptionAtRestProvider": "LOCAL"}, 200},
		{"owner deletes the project", owner, http.MethodDelete, "/groups/" + other, nil, 403},
	}
	for _, c := range cases {
		before := e.must(e.root, 200, http.MethodGet, ear, nil).body
		clustersBefore := e.must(e.root, 200, http.MethodGet, "/groups/"+gid+"/clusters", nil).body
		r := e.call(c.k, c.method, c.path, c.body)
		if r.status != c.status {
			t.Fatalf("%s: status %d, want %d: %s", c.name, r.status, c.status, r.body)
		}
		if r.status == 403 {
			if code := r.errorCode(t); code != "USER_UNAUTHORIZED" {
				t.Fatalf("%s: errorCode %s", c.name, code)
			}
		}
		if r.status >= 400 {
			after := e.must(e.root, 200, http.MethodGet, ear, nil).body
			clustersAfter := e.must(e.root, 200, http.MethodGet, "/groups/"+gid+"/clusters", nil).body
			if !sameIgnoringTimes(before, after) || !bytes.Equal(clustersBefore, clustersAfter) {
				t.Fatalf("%s: refused request changed state:\n%s\n%s", c.name, before, after)
			}
		}
	}

	// The read-only key lists only its project.
	list := e.must(readOnly, 200, http.MethodGet, "/groups", nil).json(t)
	if list["totalCount"].(float64) != 1 || list["results"].([]any)[0].(map[string]any)["id"] != gid {
		t.Fatalf("read-only key lists %v", list)
	}
	e.must(readOnly, 403, http.MethodGet, "/groups/byName/other", nil)
	e.must(readOnly, 200, http.MethodGet, "/groups/byName/roles", nil)
}

// sameIgnoringTimes compares two encryptionAtRest renderings apart from
// the check timestamp, which every GET refreshes.
func sameIgnoringTimes(a, b []byte) bool {
	strip := func(s []byte) string {
		out := string(s)
		if i := strings.Index(out, `"checkedAt":"`); i >= 0 {
			j := strings.Index(out[i+13:], `"`)
			out = out[:i] + out[i+13+j+1:]
		}
		return out
	}
	return strip(a) == strip(b)
}

// TestAuthentication checks the 401s: no credentials, a wrong private key,
// an unknown public key.
func TestAuthentication(t *testing.T) {
	e := newEnv(t, nil)
	for _, c := range []struct {
		name string
		k    key
	}{
		{"no credentials", key{}},
		{"wrong private key", key{e.root.pub, "00000000-0000-0000-0000-000000000000"}},
		{"unknown public key", key{"nobody", e.root.priv}},
	} {
		r := e.call(c.k, http.MethodGet, "/groups", nil)
		if r.status != http.StatusUnauthorized {
			t.Fatalf("%s: status %d: %s", c.name, r.status, r.body)
		}
		if h := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(h, "Digest ") || !strings.Contains(h, `realm="MMS Public API"`) {
			t.Fatalf("%s: challenge %q", c.name, h)
		}
		if code := r.errorCode(t); code != "UNAUTHORIZED" {
			t.Fatalf("%s: errorCode %s", c.name, code)
		}
		if bytes.Contains(r.body, []byte(e.root.priv)) {
			t.Fatalf("%s: the answer echoes a private key", c.name)
		}
	}
	// A deleted key stops working at once.
	k := e.keyWith(controlplane.RoleAssignment{RoleName: controlplane.RoleOrgReadOnly})
	e.must(k, 200, http.MethodGet, "/groups", nil)
	var id string
	for _, ak := range e.svc.APIKeys() {
		if ak.PublicKey == k.pub {
			id = ak.ID
		}
	}
	e.must(e.root, 204, http.MethodDelete, "/orgs/"+e.svc.Org().ID+"/apiKeys/"+id, nil)
	e.must(k, 401, http.MethodGet, "/groups", nil)
}

// TestAPIKeys creates keys through the API: the private key is shown once,
// roles are scoped, and the new key works.
func TestAPIKeys(t *testing.T) {
	e := newEnv(t, nil)
	gid := e.project("keys")
	orgID := e.svc.Org().ID
	created := e.must(e.root, 200, http.MethodPost, "/groups/"+gid+"/apiKeys",
		map[string]any{"desc": "ci", "roles": []string{"GROUP_READ_ONLY"}}).json(t)
	priv, _ := created["privateKey"].(string)
	pub, _ := created["publicKey"].(string)
	roles := created["roles"].([]any)
	if priv == "" || pub == "" || len(roles) != 1 || roles[0].(map[string]any)["groupId"] != gid ||
		roles[0].(map[string]any)["roleName"] != "GROUP_READ_ONLY" {
		t.Fatalf("created key %v", created)
	}
	k := key{pub, priv}
	e.must(k, 200, http.MethodGet, "/groups/"+gid+"/encryptionAtRest", nil)
	e.must(k, 403, http.MethodPatch, "/groups/"+gid+"/maintenanceWindow", map[string]any{"hourOfDay": 3})

	orgKey := e.must(e.root, 200, http.MethodPost, "/orgs/"+orgID+"/apiKeys",
		map[string]any{"desc": "admin", "roles": []string{"ORG_OWNER"}}).json(t)
	if orgKey["roles"].([]any)[0].(map[string]any)["orgId"] != orgID {
		t.Fatalf("org key %v", orgKey)
	}
	list := e.must(e.root, 200, http.MethodGet, "/orgs/"+orgID+"/apiKeys", nil)
	if bytes.Contains(list.body, []byte(priv)) {
		t.Fatalf("listing shows a private key: %s", list.body)
	}
	if code := e.must(e.root, 400, http.MethodPost, "/orgs/"+orgID+"/apiKeys",
		map[string]any{"desc": "bad", "roles": []string{"GROUP_OWNER"}}).errorCode(t); code != "INVALID_ROLE" {
		t.Fatalf("group role on an org key: %s", code)
	}
	e.must(e.root, 404, http.MethodGet, "/orgs/000000000000000000000000/apiKeys", nil)
	orgs := e.must(k, 200, http.MethodGet, "/orgs", nil).json(t)
	if orgs["results"].([]any)[0].(map[string]any)["id"] != orgID {
		t.Fatalf("orgs %v", orgs)
	}
}
