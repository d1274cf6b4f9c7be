package providers

import (
	"testing"

	"github.com/cmkdb/cmkdb/internal/kms"
)

// TestRegistryIsConsistent: every provider is found by each of its names,
// and no surface has two settings of one name, so a name read from a node
// file or an API object means one setting only.
func TestRegistryIsConsistent(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range All() {
		for _, id := range []string{"name:" + s.Name, "object:" + s.Object, "kind:" + s.Kind} {
			if seen[id] {
				t.Errorf("%s used twice", id)
			}
			seen[id] = true
		}
		if a, ok := ByName(s.Name); !ok || a.Object != s.Object {
			t.Errorf("ByName(%q) = %v", s.Name, ok)
		}
		if a, ok := ByObject(s.Object); !ok || a.Name != s.Name {
			t.Errorf("ByObject(%q) = %v", s.Object, ok)
		}
		if a, ok := ByKind(s.Kind); !ok || a.Name != s.Name {
			t.Errorf("ByKind(%q) = %v", s.Kind, ok)
		}
		if s.Open == nil {
			t.Errorf("%s cannot be opened", s.Name)
		}
		api, node := map[string]bool{}, map[string]bool{}
		for _, f := range s.Fields {
			if f.On == 0 || f.Required&^f.On != 0 {
				t.Errorf("%s.%s: required (%b) where it cannot be written (%b)", s.Name, f.Name, f.Required, f.On)
			}
			if f.On&kms.API != 0 {
				if api[f.Name] {
					t.Errorf("%s: API setting %s twice", s.Name, f.Name)
				}
				api[f.Name] = true
			}
			if f.On&kms.NodeFile != 0 {
				if node[f.NodeName()] {
					t.Errorf("%s: node setting %s twice", s.Name, f.NodeName())
				}
				node[f.NodeName()] = true
			}
			if f.Secret && f.On&kms.API != 0 && !IsSecret(f.Name) {
				t.Errorf("%s.%s: a secret ctl would accept on its command line", s.Name, f.Name)
			}
		}
	}
}
