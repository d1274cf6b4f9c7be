package ctl

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/cmkdb/cmkdb/internal/kms/providers"
)

// earView is the encryptionAtRest resource as ctl shows it.
type earView struct {
	raw      json.RawMessage
	object   string         // the enabled provider object; "" when none
	config   map[string]any // its readable attributes
	valid    bool
	status   *KeyStatus
	settings EARSettings
}

// earMeta are the resource's members that are not provider objects.
func earMeta(name string) bool {
	switch name {
	case "keyStatus", "settings", "links", "enabledForSearchNodes", "groupId":
		return true
	}
	return false
}

func parseEAR(raw json.RawMessage) (earView, error) {
	v := earView{raw: raw}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return v, fmt.Errorf("decoding encryptionAtRest: %w", err)
	}
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if earMeta(name) {
			continue
		}
		var obj map[string]any
		if json.Unmarshal(m[name], &obj) != nil || obj["enabled"] != true {
			continue
		}
		v.object, v.config = name, map[string]any{}
		v.valid, _ = obj["valid"].(bool)
		for k, val := range obj {
			// Credentials never come back from the API; skipping their
			// names too keeps a server bug from printing one.
			if k != "enabled" && k != "valid" && !secretAttr(k) {
				v.config[k] = val
			}
		}
		break
	}
	if s, ok := m["keyStatus"]; ok {
		v.status = &KeyStatus{}
		if err := json.Unmarshal(s, v.status); err != nil {
			return v, fmt.Errorf("decoding keyStatus: %w", err)
		}
	}
	if s, ok := m["settings"]; ok {
		if err := json.Unmarshal(s, &v.settings); err != nil {
			return v, fmt.Errorf("decoding settings: %w", err)
		}
	}
	return v, nil
}

// secretAttr names the credential attributes of the provider objects, as
// the provider packages declare them (the registry the API reads too).
func secretAttr(name string) bool { return providers.IsSecret(name) }

// clusterProvider is the encryptionAtRestProvider value clusters use for a
// provider object, so `ear show` tells the operator what set-provider takes.
func clusterProvider(object string) string {
	s, _ := providers.ByObject(object)
	return s.Kind
}

func (a *App) getEAR(ctx context.Context) (earView, error) {
	path, err := a.groupPath(ctx, "/encryptionAtRest")
	if err != nil {
		return earView{}, err
	}
	var raw json.RawMessage
	if err := a.c.Do(ctx, http.MethodGet, path, nil, nil, &raw); err != nil {
		return earView{}, err
	}
	return parseEAR(raw)
}

// EARShow prints the project's encryption at rest: the provider, the key
// and its last verdict, the lifecycle settings. The API runs a fresh key
// check for this GET, so the verdict is current.
func (a *App) EARShow(ctx context.Context) error {
	v, err := a.getEAR(ctx)
	if err != nil {
		return err
	}
	return a.showEAR(ctx, v)
}

func (a *App) showEAR(ctx context.Context, v earView) error {
	if a.json {
		return a.printResource(v.raw)
	}
	g, err := a.project(ctx)
	if err != nil {
		return err
	}
	pairs := [][2]string{{"project", g.Name + " (" + g.ID + ")"}}
	if v.object == "" {
		pairs = append(pairs, [2]string{"provider", "none (customer key management is off)"}, [2]string{"enabled", "false"})
	} else {
		p := v.object
		if k := clusterProvider(v.object); k != "" {
			p += " (clusters: " + k + ")"
		}
		pairs = append(pairs, [2]string{"provider", p}, [2]string{"enabled", "true"}, [2]string{"valid", yesNo(v.valid)})
	}
	if s := v.status; s != nil {
		reachable := s.Reachable == nil || *s.Reachable
		pairs = append(pairs,
			[2]string{"key", s.Key},
			[2]string{"validity", s.Validity},
			[2]string{"reachable", yesNo(reachable)},
			[2]string{"reason", s.Reason},
			[2]string{"detail", s.Detail},
			[2]string{"checked at", when(s.CheckedAt)},
			[2]string{"validity since", when(s.Since)},
			[2]string{"rotated at", when(s.KeyRotatedAt)})
	}
	pairs = append(pairs,
		[2]string{"check interval", (time.Duration(v.settings.ValidityCheckIntervalSeconds) * time.Second).String()},
		[2]string{"rotation days", strconv.FormatInt(v.settings.MasterKeyRotationDays, 10)})
	names := make([]string, 0, len(v.config))
	for k := range v.config {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		pairs = append(pairs, [2]string{v.object + "." + k, fmt.Sprint(v.config[k])})
	}
	return a.fields(pairs)
}
