package atlasapi

import (
	"encoding/json"
	"sort"
	"strings"
	"testing"
)

// TestOpenAPIMatchesRoutes proves the embedded document describes exactly
// what the router serves: every route is an operation, every operation a
// route, public routes need no security and every path parameter is
// declared.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc struct {
		OpenAPI    string                                `json:"openapi"`
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			Parameters map[string]struct {
				Name string `json:"name"`
				In   string `json:"in"`
			} `json:"parameters"`
			SecuritySchemes map[string]struct {
				Type, Scheme string
			} `json:"securitySchemes"`
		} `json:"components"`
	}
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatalf("openapi.yaml is not in YAML's JSON subset: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.0") {
		t.Fatalf("openapi %q", doc.OpenAPI)
	}
	if s := doc.Components.SecuritySchemes["DigestAuth"]; s.Type != "http" || s.Scheme != "digest" {
		t.Fatalf("security scheme %+v", s)
	}

	served := map[string]bool{}
	for _, r := range (&handler{}).table() {
		key := strings.ToLower(r.method) + " " + r.pattern
		served[key] = true
		raw, ok := doc.Paths[r.pattern][strings.ToLower(r.method)]
		if !ok {
			t.Errorf("route %s is not in openapi.yaml", key)
			continue
		}
		var op struct {
			Security   *[]any `json:"security"`
			Parameters []struct {
				Ref  string `json:"$ref"`
				Name string `json:"name"`
			} `json:"parameters"`
			Responses map[string]json.RawMessage `json:"responses"`
		}
		if err := json.Unmarshal(raw, &op); err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		if r.public != (op.Security != nil && len(*op.Security) == 0) {
			t.Errorf("%s: public=%v but security %v", key, r.public, op.Security)
		}
		declared := map[string]bool{}
		for _, p := range op.Parameters {
			name := p.Name
			if p.Ref != "" {
				c := doc.Components.Parameters[strings.TrimPrefix(p.Ref, "#/components/parameters/")]
				name = c.Name
			}
			declared[name] = true
		}
		for _, seg := range r.segs {
			if strings.HasPrefix(seg, "{") && !declared[strings.Trim(seg, "{}")] {
				t.Errorf("%s: path parameter %s not declared", key, seg)
			}
		}
		if !r.public {
			for _, code := range []string{"401"} {
				if _, ok := op.Responses[code]; !ok {
					t.Errorf("%s: no %s response", key, code)
				}
			}
		}
	}
	var extra []string
	for p, ops := range doc.Paths {
		for m := range ops {
			if !served[m+" "+p] {
				extra = append(extra, m+" "+p)
			}
		}
	}
	sort.Strings(extra)
	if len(extra) > 0 {
		t.Errorf("openapi.yaml documents routes that are not served: %v", extra)
	}
}
