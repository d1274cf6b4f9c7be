package controlplane

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/cmkdb/cmkdb/internal/kms"
)

// EncryptionAtRest renders a project's encryptionAtRest resource: one object
// per provider with enabled, its readable attributes and valid, never a
// writeOnly attribute; plus cmkdb's read-only keyStatus and its settings.
func (s *Service) EncryptionAtRest(ctx context.Context, gid string, fresh bool) (map[string]any, error) {
	if fresh {
		if _, err := s.CheckNow(ctx, gid); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, err := s.group(gid)
	if err != nil {
		return nil, err
	}
	return renderEAR(gs), nil
}

func renderEAR(gs *groupState) map[string]any {
	out := map[string]any{"enabledForSearchNodes": false}
	for _, spec := range specs() {
		obj := map[string]any{"enabled": false}
		if gs.ear.Kind == spec.kind {
			obj["enabled"] = true
			for _, f := range spec.fields {
				if v, ok := gs.ear.Values[f.name]; ok && !f.writeOnly && v != "" {
					obj[f.name] = v
				}
			}
			obj["valid"] = gs.ear.Key.Validity == kms.Valid.String()
			if spec.kind == ProviderAWS {
				obj["requirePrivateNetworking"] = false
			}
		}
		out[spec.object] = obj
	}
	k := gs.ear.Key
	status := map[string]any{"validity": nonEmpty(k.Validity, "UNKNOWN"), "reachable": !k.Unreachable}
	if k.Reason != "" {
		status["reason"] = string(k.Reason)
	}
	if k.Detail != "" {
		status["detail"] = k.Detail
	}
	if !k.CheckedAt.IsZero() {
		status["checkedAt"] = k.CheckedAt
		status["since"] = k.Since
	}
	if k.Key.KeyID != "" {
		status["key"] = k.Key.String()
		status["keyRotatedAt"] = k.RotatedAt
	}
	if gs.ear.Kind != "" {
		out["keyStatus"] = status
	}
	out["settings"] = map[string]any{
		"validityCheckIntervalSeconds": int64(gs.ear.Settings.CheckInterval / time.Second),
		"masterKeyRotationDays":        int64(gs.ear.Settings.RotationPeriod / (24 * time.Hour)),
	}
	return out
}

func nonEmpty(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// earPatch is a parsed PATCH body.
type earPatch struct {
	objects  map[string]map[string]any
	settings *settingsPatch
}

type settingsPatch struct {
	ValidityCheckIntervalSeconds *int64 `json:"validityCheckIntervalSeconds"`
	MasterKeyRotationDays        *int64 `json:"masterKeyRotationDays"`
}

// ParseEARPatch parses a PATCH body, refusing unknown objects and
// attributes and values of the wrong type.
func ParseEARPatch(body []byte) (*earPatch, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, apiErr(http.StatusBadRequest, "INVALID_JSON", "Received JSON is malformed.")
	}
	p := &earPatch{objects: map[string]map[string]any{}}
	for name, msg := range raw {
		switch name {
		case "enabledForSearchNodes", "groupId", "keyStatus":
			continue
		case "settings":
			var sp settingsPatch
			dec := json.NewDecoder(strings.NewReader(string(msg)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&sp); err != nil {
				return nil, invalidAttr("settings", "expects validityCheckIntervalSeconds and masterKeyRotationDays (integers)")
			}
			p.settings = &sp
			continue
		}
		spec, ok := specByObject(name)
		if !ok {
			return nil, invalidAttr(name, "not an encryption at rest provider")
		}
		var obj map[string]any
		if err := json.Unmarshal(msg, &obj); err != nil || obj == nil {
			return nil, invalidAttr(name, "must be an object")
		}
		for k, v := range obj {
			switch k {
			case "enabled", "requirePrivateNetworking":
				if _, ok := v.(bool); !ok {
					return nil, invalidAttr(name+"."+k, "must be a boolean")
				}
				if k == "requirePrivateNetworking" && v == true {
					return nil, apiErr(http.StatusBadRequest, "INVALID_ATTRIBUTE", "Invalid attribute %s specified: private networking to the KMS is not available in cmkdb.", name+"."+k)
				}
			case "valid":
				// read-only; clients that send back what they read are not refused
			default:
				if _, ok := spec.field(k); !ok {
					return nil, invalidAttr(name+"."+k, "unknown attribute")
				}
				if _, ok := v.(string); !ok {
					return nil, invalidAttr(name+"."+k, "must be a string")
				}
			}
		}
		if onlyReadOnly(obj) {
			// Clients that marshal a whole EncryptionAtRest (the official Go
			// client sends "azureKeyVault":{} next to the awsKms it sets) name
			// providers they do not mean to touch; such an object changes nothing.
			continue
		}
		p.objects[name] = obj
	}
	return p, nil
}

// onlyReadOnly reports whether a provider object carries nothing a client
// can set: it is empty, or holds only the read-only valid and a false
// requirePrivateNetworking.
func onlyReadOnly(obj map[string]any) bool {
	for k := range obj {
		if k != "valid" && k != "requirePrivateNetworking" {
			return false
		}
	}
	return true
}

// PatchEncryptionAtRest applies a PATCH of the encryptionAtRest resource with
// Atlas's semantics: the first configuration of a provider needs every
// required attribute, later ones only the changed ones; {enabled:false}
// alone disables and removes the configuration (refused while a cluster uses
// it); the new configuration is validated against the KMS before anything
// is stored, and a failure answers the provider's Atlas error code.
func (s *Service) PatchEncryptionAtRest(ctx context.Context, actor, gid string, p *earPatch) (map[string]any, error) {
	unlock := s.lockChecks(gid)
	defer unlock()

	s.mu.Lock()
	gs, err := s.group(gid)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	cur := gs.ear
	s.mu.Unlock()

	next := cur
	next.Values = maps.Clone(cur.Values)
	if next.Values == nil {
		next.Values = map[string]string{}
	}
	var changedSpec *providerSpec
	disable := false
	names := make([]string, 0, len(p.objects))
	for name := range p.objects {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		obj := p.objects[name]
		spec, _ := specByObject(name)
		if en, ok := obj["enabled"].(bool); ok && !en {
			if cur.Kind == spec.kind {
				disable = true
			}
			continue
		}
		if changedSpec != nil {
			return nil, apiErr(http.StatusBadRequest, "INVALID_ATTRIBUTE", "Only one encryption at rest provider can be configured at a time.")
		}
		sp := spec
		changedSpec = &sp
	}
	if disable && changedSpec != nil && changedSpec.kind != cur.Kind {
		// Switching providers in one request: disable the old, configure the new.
		disable = false
	}
	if disable {
		return s.disableEAR(ctx, actor, gid)
	}
	if changedSpec != nil {
		spec := *changedSpec
		obj := p.objects[spec.object]
		if cur.Kind != "" && cur.Kind != spec.kind {
			if users := s.clustersUsing(gid, cur.Kind); len(users) > 0 {
				return nil, apiErr(http.StatusConflict, "CANNOT_CHANGE_ENCRYPTION_AT_REST_PROVIDER",
					"Encryption at rest provider cannot be changed while clusters %s use %s; set them to NONE first.", strings.Join(users, ", "), cur.Kind)
			}
			next.Values = map[string]string{}
		}
		first := cur.Kind != spec.kind
		next.Kind = spec.kind
		for _, f := range spec.fields {
			v, present := obj[f.name].(string)
			if !present {
				continue
			}
			if f.path && !allowedPath(s.resolvePath(v), s.opts.ProviderPaths) {
				return nil, invalidAttr(spec.object+"."+f.name, "the control plane does not allow provider files there (it allows: "+strings.Join(s.opts.ProviderPaths, ", ")+")")
			}
			if f.check != nil {
				if err := f.check(v); err != nil {
					if strings.HasPrefix(err.Error(), "AZURE_KEY_VAULT_KEY_IDENTIFIER_INVALID_FORMAT") {
						return nil, apiErr(http.StatusBadRequest, "AZURE_KEY_VAULT_KEY_IDENTIFIER_INVALID_FORMAT", "The Azure Key Vault key identifier %s is not valid.", v)
					}
					return nil, invalidAttr(spec.object+"."+f.name, err.Error())
				}
			}
			next.Values[f.name] = v
		}
		if first {
			for _, f := range spec.fields {
				if f.required && next.Values[f.name] == "" {
					return nil, missingAttr(spec.object + "." + f.name)
				}
			}
		}
	}
	if p.settings != nil {
		if v := p.settings.ValidityCheckIntervalSeconds; v != nil {
			d := time.Duration(*v) * time.Second
			if d < s.opts.MinCheckInterval || d > 24*time.Hour {
				return nil, invalidAttr("settings.validityCheckIntervalSeconds", fmt.Sprintf("must be between %d and 86400", int64(s.opts.MinCheckInterval/time.Second)))
			}
			next.Settings.CheckInterval = d
		}
		if v := p.settings.MasterKeyRotationDays; v != nil {
			if *v < 1 || *v > 365 {
				return nil, invalidAttr("settings.masterKeyRotationDays", "must be between 1 and 365")
			}
			next.Settings.RotationPeriod = time.Duration(*v) * 24 * time.Hour
		}
	}
	if changedSpec == nil {
		return s.saveSettings(gid, next.Settings)
	}
	return s.applyEARConfig(ctx, actor, gid, cur, next, *changedSpec)
}

// applyEARConfig validates next against its KMS and stores it.
func (s *Service) applyEARConfig(ctx context.Context, actor, gid string, cur, next earRecord, spec providerSpec) (map[string]any, error) {
	if maps.Equal(cur.Values, next.Values) && cur.Kind == next.Kind {
		return s.saveSettings(gid, next.Settings)
	}
	if cur.Kind == next.Kind && cur.Key.Validity == kms.Invalid.String() && keyIdentityChanged(spec, cur.Values, next.Values) {
		if users := s.clustersUsing(gid, cur.Kind); len(users) > 0 {
			return nil, apiErr(http.StatusBadRequest, "ENCRYPTION_AT_REST_SETTINGS_INVALID",
				"We are unable to access your encryption key, so you cannot change your key until access to the current key is restored.")
		}
	}
	provider := s.openProvider(ctx, next.Kind, next.Values)
	st, wrapRef := validate(ctx, provider)
	if st.Validity != kms.Valid {
		closeProvider(provider)
		s.mu.Lock()
		if gs, err := s.group(gid); err == nil {
			recs := map[string]any{}
			s.addEventLocked(gs, recs, Event{EventTypeName: EventValidationFailed, PublicKey: actor,
				Detail: fmt.Sprintf("%s: %s", st.Reason, st.Detail)})
			_ = s.st.put(recs)
		}
		s.mu.Unlock()
		code := spec.atlasCode(st.Reason)
		return nil, &APIError{Status: http.StatusBadRequest, Code: code,
			Detail: fmt.Sprintf("The %s configuration could not be validated: %s (%s).", spec.object, st.Detail, st.Reason)}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	gs, err := s.group(gid)
	if err != nil {
		closeProvider(provider)
		return nil, err
	}
	now := s.now()
	recs := map[string]any{}
	first := gs.ear.Kind != next.Kind
	rotated := !first && gs.ear.Key.Key != wrapRef
	oldProvider := gs.provider
	if rotated && len(s.clustersUsingLocked(gs, next.Kind)) > 0 {
		// Nodes re-wrap under the new key; the old one keeps unwrapping until then.
		closeProvider(gs.prevProvider)
		next.Previous = &earPrevious{Kind: gs.ear.Kind, Values: gs.ear.Values}
		gs.prevProvider, oldProvider = gs.provider, nil
	}
	next.Key = KeyState{Validity: kms.Valid.String(), CheckedAt: now, Since: now, Key: wrapRef, CheckKey: st.Key, RotatedAt: now, Detail: st.Detail}
	if !first && !rotated {
		next.Key.RotatedAt, next.Key.Since = gs.ear.Key.RotatedAt, gs.ear.Key.Since
	}
	if !st.LastRotated.IsZero() && (first || rotated) {
		next.Key.RotatedAt = st.LastRotated.UTC()
	}
	gs.ear, gs.provider = next, provider
	closeProvider(oldProvider)
	recs["ear/"+gid] = gs.ear
	s.addEventLocked(gs, recs, Event{EventTypeName: EventValidationSucceeded, PublicKey: actor})
	s.addEventLocked(gs, recs, Event{EventTypeName: EventConfigUpdated, PublicKey: actor,
		Detail: fmt.Sprintf("%s configured with key %s", spec.object, wrapRef)})
	if first {
		s.ensureRotationAlertLocked(gs, recs, next.Kind)
	}
	if rotated {
		s.addEventLocked(gs, recs, Event{EventTypeName: keyEvent(next.Kind, KeyEventRotated), PublicKey: actor,
			Detail: fmt.Sprintf("customer master key changed to %s", wrapRef)})
	}
	if err := s.st.put(recs); err != nil {
		return nil, err
	}
	gs.nextCheck = now.Add(gs.ear.Settings.CheckInterval)
	s.notifyLocked()
	return renderEAR(gs), nil
}

// keyIdentityChanged reports whether a change names another key (rather
// than, say, new credentials for the same key).
func keyIdentityChanged(spec providerSpec, a, b map[string]string) bool {
	for _, k := range []string{"customerMasterKeyID", "keyIdentifier", "keyVersionResourceID", "keyId", "keyName", "keyLabel", "keyFile", "region", "address"} {
		if _, ok := spec.field(k); ok && a[k] != b[k] {
			return true
		}
	}
	return false
}

// validate checks a provider and proves it can wrap and unwrap, returning
// the key reference a wrap produces now.
func validate(ctx context.Context, p kms.Provider) (kms.Status, kms.KeyRef) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st := p.Check(cctx)
	if st.Validity != kms.Valid {
		return st, kms.KeyRef{}
	}
	probe := make([]byte, 32)
	_, _ = rand.Read(probe)
	defer clear(probe)
	aad := []byte("cmkdb-controlplane-validation")
	w, err := p.Wrap(cctx, probe, aad)
	if err == nil {
		var back []byte
		back, err = p.Unwrap(cctx, w, aad)
		if err == nil && string(back) != string(probe) {
			err = &kms.Error{Op: "validate", Key: w.Key, Reason: kms.ReasonKeyMalformed, Detail: "unwrap returned other bytes"}
		}
		clear(back)
	}
	if err != nil {
		return kms.StatusFromError(st.Key, err), kms.KeyRef{}
	}
	return st, w.Key
}

// ensureRotationAlertLocked creates the *_ENCRYPTION_KEY_NEEDS_ROTATION
// alert configuration (90 days) when the project has none for the kind.
func (s *Service) ensureRotationAlertLocked(gs *groupState, recs map[string]any, kind string) {
	et := keyEvent(kind, KeyEventNeedsRotation)
	for _, c := range gs.configs {
		if c.EventTypeName == et {
			return
		}
	}
	now := s.now()
	c := &AlertConfig{ID: newID(now), GroupID: gs.group.ID, EventTypeName: et, Enabled: true,
		Threshold:     &Threshold{Operator: "GREATER_THAN", Threshold: DefaultRotationAlertDays, Units: "DAYS"},
		Notifications: []Notification{{TypeName: "GROUP", IntervalMin: 1440, Roles: []string{RoleGroupOwner}}},
		Matchers:      []any{}, Created: now, Updated: now}
	gs.configs[c.ID] = c
	recs["alertcfg/"+gs.group.ID+"/"+c.ID] = c
}

func (s *Service) saveSettings(gid string, set EARSettings) (map[string]any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, err := s.group(gid)
	if err != nil {
		return nil, err
	}
	next := gs.ear
	next.Settings = set
	if err := s.st.put(map[string]any{"ear/" + gid: next}); err != nil {
		return nil, err
	}
	gs.ear = next
	if n := s.now().Add(set.CheckInterval); gs.nextCheck.After(n) {
		gs.nextCheck = n
	}
	return renderEAR(gs), nil
}

// disableEAR removes the project's configuration, refused while a cluster
// uses it.
func (s *Service) disableEAR(_ context.Context, actor, gid string) (map[string]any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, err := s.group(gid)
	if err != nil {
		return nil, err
	}
	if users := s.clustersUsingLocked(gs, gs.ear.Kind); len(users) > 0 {
		return nil, apiErr(http.StatusConflict, "CANNOT_DISABLE_ENCRYPTION_AT_REST",
			"Encryption at rest cannot be disabled while it is enabled on clusters %s.", strings.Join(users, ", "))
	}
	next := earRecord{Settings: gs.ear.Settings}
	recs := map[string]any{"ear/" + gid: next}
	s.addEventLocked(gs, recs, Event{EventTypeName: EventConfigUpdated, PublicKey: actor, Detail: "customer key management disabled"})
	if err := s.st.put(recs); err != nil {
		return nil, err
	}
	closeProvider(gs.provider)
	closeProvider(gs.prevProvider)
	gs.ear, gs.provider, gs.prevProvider = next, nil, nil
	s.notifyLocked()
	return renderEAR(gs), nil
}

func (s *Service) clustersUsing(gid, kind string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, ok := s.groups[gid]
	if !ok {
		return nil
	}
	return s.clustersUsingLocked(gs, kind)
}

func (s *Service) clustersUsingLocked(gs *groupState, kind string) []string {
	var out []string
	if kind == "" {
		return nil
	}
	for name, c := range gs.clusters {
		if c.EncryptionAtRestProvider == kind {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// SetCheckInterval sets a project's check interval directly (cmkdb up's
// --key-check-interval), down to the service's floor.
func (s *Service) SetCheckInterval(gid string, d time.Duration) error {
	if d < s.opts.MinCheckInterval {
		return fmt.Errorf("check interval %s is below the minimum %s", d, s.opts.MinCheckInterval)
	}
	s.mu.Lock()
	gs, err := s.group(gid)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	set := gs.ear.Settings
	s.mu.Unlock()
	set.CheckInterval = d
	_, err = s.saveSettings(gid, set)
	return err
}
