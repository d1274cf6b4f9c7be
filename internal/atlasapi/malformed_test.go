package atlasapi_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
)

// TestMalformedPayloads sends bodies that must be refused with 400 and
// Atlas's envelope, leaving the state as it was and never echoing a secret.
func TestMalformedPayloads(t *testing.T) {
	e := newEnv(t, nil)
	gid := e.project("malformed")
	g := "/groups/" + gid
	keyFile := localKey(t)
	e.must(e.root, 200, http.MethodPatch, g+"/encryptionAtRest", map[string]any{"local": map[string]any{"keyFile": keyFile}})
	const secret = "s3cr3t-value-that-must-not-echo"
	huge := `{"local":{"keyFile":"` + strings.Repeat("a", 2<<20) + `"}}`

	cases := []struct {
		name, method, path, body, code string
	}{
		{"truncated JSON", http.MethodPatch, g + "/encryptionAtRest", `{"local":{"keyFile":`, "INVALID_JSON"},
		{"not an object", http.MethodPatch, g + "/encryptionAtRest", `["local"]`, "INVALID_JSON"},
		{"null body", http.MethodPatch, g + "/encryptionAtRest", `null`, "INVALID_JSON"},
		{"empty body", http.MethodPatch, g + "/encryptionAtRest", ``, "INVALID_JSON"},
		{"trailing garbage", http.MethodPatch, g + "/encryptionAtRest", `{} {}`, "INVALID_JSON"},
		{"huge body", http.MethodPatch, g + "/encryptionAtRest", huge, "INVALID_JSON"},
		{"provider not an object", http.MethodPatch, g + "/encryptionAtRest", `{"awsKms":"yes"}`, "INVALID_ATTRIBUTE"},
		{"wrong type", http.MethodPatch, g + "/encryptionAtRest", `{"local":{"keyFile":42}}`, "INVALID_ATTRIBUTE"},
		{"enabled not a boolean", http.MethodPatch, g + "/encryptionAtRest", `{"local":{"enabled":"false"}}`, "INVALID_ATTRIBUTE"},
		{"unknown provider", http.MethodPatch, g + "/encryptionAtRest", `{"oracleKms":{"enabled":true}}`, "INVALID_ATTRIBUTE"},
		{"unknown attribute", http.MethodPatch, g + "/encryptionAtRest", `{"awsKms":{"secretAccessKey":"` + secret + `","bogus":"x"}}`, "INVALID_ATTRIBUTE"},
		{"bad settings", http.MethodPatch, g + "/encryptionAtRest", `{"settings":{"validityCheckIntervalSeconds":"often"}}`, "INVALID_ATTRIBUTE"},
		{"incomplete credentials with a secret", http.MethodPatch, g + "/encryptionAtRest",
			`{"awsKms":{"enabled":true,"secretAccessKey":"` + secret + `"}}`, "MISSING_ATTRIBUTE"},
		{"group: unknown attribute", http.MethodPost, "/groups", `{"name":"x","color":"blue"}`, "INVALID_ATTRIBUTE"},
		{"group: wrong type", http.MethodPost, "/groups", `{"name":7}`, "INVALID_ATTRIBUTE"},
		{"cluster: wrong type", http.MethodPost, g + "/clusters", `{"name":"c","diskSizeGB":"big"}`, "INVALID_ATTRIBUTE"},
		{"cluster: bad JSON", http.MethodPost, g + "/clusters", `{"name":`, "INVALID_JSON"},
		{"cluster: missing name", http.MethodPost, g + "/clusters", `{"backupEnabled":true}`, "MISSING_ATTRIBUTE"},
		{"cluster patch: wrong type", http.MethodPatch, g + "/clusters/none", `{"paused":"no"}`, "INVALID_ATTRIBUTE"},
		{"alert config: wrong type", http.MethodPost, g + "/alertConfigs", `{"eventTypeName":1}`, "INVALID_ATTRIBUTE"},
		{"alert config: no notifications", http.MethodPost, g + "/alertConfigs", `{"eventTypeName":"X"}`, "MISSING_ATTRIBUTE"},
		{"alert toggle: extra attribute", http.MethodPatch, g + "/alertConfigs/000000000000000000000000", `{"enabled":true,"x":1}`, "INVALID_ATTRIBUTE"},
		{"maintenance: unknown attribute", http.MethodPatch, g + "/maintenanceWindow", `{"dayOfWeek":1,"minute":3}`, "INVALID_ATTRIBUTE"},
		{"api key: roles not a list", http.MethodPost, g + "/apiKeys", `{"desc":"d","roles":"GROUP_OWNER"}`, "INVALID_ATTRIBUTE"},
	}
	snapshot := func() string {
		var b strings.Builder
		for _, p := range []string{"/groups", g + "/clusters", g + "/alertConfigs", g + "/maintenanceWindow"} {
			b.Write(e.must(e.root, 200, http.MethodGet, p, nil).body)
		}
		ear := e.must(e.root, 200, http.MethodGet, g+"/encryptionAtRest", nil).json(t)
		b.WriteString(ear["local"].(map[string]any)["keyFile"].(string))
		return b.String()
	}
	before := snapshot()
	for _, c := range cases {
		r := e.call(e.root, c.method, c.path, c.body)
		if r.status != http.StatusBadRequest {
			t.Fatalf("%s: status %d: %s", c.name, r.status, r.body)
		}
		if code := r.errorCode(t); code != c.code {
			t.Fatalf("%s: errorCode %s, want %s: %s", c.name, code, c.code, r.body)
		}
		if bytes.Contains(r.body, []byte(secret)) {
			t.Fatalf("%s: the error echoes a secret: %s", c.name, r.body)
		}
	}
	if after := snapshot(); after != before {
		t.Fatalf("refused payloads changed state:\n%s\n%s", before, after)
	}
}

// TestRouting covers the envelope of unknown routes and methods, media
// types on both versions, and pagination.
func TestRouting(t *testing.T) {
	e := newEnv(t, nil)
	for i := range 3 {
		e.project("p" + string(rune('a'+i)))
	}
	if r := e.call(e.root, http.MethodGet, "/nowhere", nil); r.status != 404 || r.errorCode(t) != "RESOURCE_NOT_FOUND" {
		t.Fatalf("unknown route: %d %s", r.status, r.body)
	}
	r := e.call(e.root, http.MethodPut, "/groups", nil)
	if r.status != 405 || r.errorCode(t) != "METHOD_NOT_ALLOWED" || !strings.Contains(r.header.Get("Allow"), "GET") {
		t.Fatalf("wrong method: %d %v %s", r.status, r.header, r.body)
	}
	if r.header.Get("Content-Type") != "application/vnd.atlas.2023-01-01+json" {
		t.Fatalf("v2 error Content-Type %q", r.header.Get("Content-Type"))
	}
	if r := e.call(e.root, http.MethodPost, "/groups", "name=x"); r.status != 400 {
		t.Fatalf("form body: %d", r.status)
	}

	// Pagination: 3 projects, 2 per page.
	p1 := e.must(e.root, 200, http.MethodGet, "/groups?itemsPerPage=2", nil).json(t)
	p2 := e.must(e.root, 200, http.MethodGet, "/groups?itemsPerPage=2&pageNum=2", nil).json(t)
	if len(p1["results"].([]any)) != 2 || len(p2["results"].([]any)) != 1 || p1["totalCount"].(float64) != 3 {
		t.Fatalf("pages %v / %v", p1, p2)
	}
	rels := map[string]bool{}
	for _, l := range p1["links"].([]any) {
		rels[l.(map[string]any)["rel"].(string)] = true
	}
	if !rels["self"] || !rels["next"] {
		t.Fatalf("links %v", p1["links"])
	}
	if r := e.call(e.root, http.MethodGet, "/groups?itemsPerPage=0", nil); r.status != 400 || r.errorCode(t) != "INVALID_QUERY_PARAMETER" {
		t.Fatalf("itemsPerPage=0: %d %s", r.status, r.body)
	}

	// Media types: v2 echoes the requested version, v1.0 answers JSON.
	for _, c := range []struct{ path, accept, want string }{
		{"/api/atlas/v2/groups", "application/vnd.atlas.2024-08-05+json", "application/vnd.atlas.2024-08-05+json"},
		{"/api/atlas/v2/groups", "application/json", "application/json"},
		{"/api/atlas/v2/groups", "", "application/vnd.atlas.2023-01-01+json"},
		{"/api/atlas/v1.0/groups", "application/json", "application/json"},
	} {
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+c.path, nil)
		if c.accept != "" {
			req.Header.Set("Accept", c.accept)
		}
		res, err := (&http.Client{Transport: digestTransport(e.root)}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 || res.Header.Get("Content-Type") != c.want {
			t.Fatalf("%s Accept %q: %d %q", c.path, c.accept, res.StatusCode, res.Header.Get("Content-Type"))
		}
	}
	req, _ := http.NewRequest(http.MethodPost, e.api+"/groups", strings.NewReader("name=x"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := (&http.Client{Transport: digestTransport(e.root)}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("form Content-Type: %d", res.StatusCode)
	}
	res, err = http.Get(e.srv.URL + "/api/atlas/v2/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("openapi.yaml without auth: %d", res.StatusCode)
	}
}
