package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/cmkdb/cmkdb/internal/kms/providers"
)

// EARSet configures (or reconfigures) the provider object with the
// attributes of sets ("name=value") and of secretFiles ("name=path", the
// value read from the file). Credentials are refused in sets: a value on
// the command line lands in shell history and the process list.
func (a *App) EARSet(ctx context.Context, object string, sets, secretFiles []string) error {
	if object == "" {
		var objects []string
		for _, s := range providers.All() {
			objects = append(objects, s.Object)
		}
		return fmt.Errorf("name the provider object (%s)", strings.Join(objects, ", "))
	}
	obj := map[string]any{"enabled": true}
	for _, s := range sets {
		k, v, err := splitPair(s, "--set")
		if err != nil {
			return err
		}
		if secretAttr(k) {
			return fmt.Errorf("--set %s=…: %s is a credential; pass it with --secret-file %s=PATH so it stays out of shell history", k, k, k)
		}
		if _, dup := obj[k]; dup {
			return fmt.Errorf("--set %s given twice", k)
		}
		obj[k] = v
	}
	var secrets []string
	for _, s := range secretFiles {
		k, path, err := splitPair(s, "--secret-file")
		if err != nil {
			return err
		}
		if _, dup := obj[k]; dup {
			return fmt.Errorf("%s given twice", k)
		}
		v, err := readSecretFile(path, a.errw)
		if err != nil {
			return fmt.Errorf("--secret-file %s: %w", k, err)
		}
		obj[k] = v
		secrets = append(secrets, v)
	}
	path, err := a.groupPath(ctx, "/encryptionAtRest")
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := a.c.Do(ctx, http.MethodPatch, path, nil, map[string]any{object: obj}, &raw); err != nil {
		return scrub(err, secrets)
	}
	v, err := parseEAR(raw)
	if err != nil {
		return err
	}
	return a.showEAR(ctx, v)
}

// splitPair splits "name=value" at the first "=".
func splitPair(s, flag string) (string, string, error) {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return "", "", fmt.Errorf("%s %q: want NAME=VALUE", flag, s)
	}
	return k, v, nil
}

// EARDisable turns customer key management off: {obj:{enabled:false}} for
// the enabled provider. The API refuses while a cluster uses it.
func (a *App) EARDisable(ctx context.Context) error {
	v, err := a.getEAR(ctx)
	if err != nil {
		return err
	}
	if v.object == "" {
		if a.json {
			return a.showEAR(ctx, v)
		}
		_, err := fmt.Fprintln(a.out, "customer key management is already off")
		return err
	}
	path, err := a.groupPath(ctx, "/encryptionAtRest")
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := a.c.Do(ctx, http.MethodPatch, path, nil, map[string]any{v.object: map[string]any{"enabled": false}}, &raw); err != nil {
		return err
	}
	if v, err = parseEAR(raw); err != nil {
		return err
	}
	return a.showEAR(ctx, v)
}

// EARSettings changes the lifecycle settings; a nil argument is unchanged.
func (a *App) EARSettings(ctx context.Context, checkInterval *time.Duration, rotationDays *int) error {
	settings := map[string]any{}
	if d := checkInterval; d != nil {
		if *d <= 0 || *d%time.Second != 0 {
			return fmt.Errorf("--check-interval %s: want a positive whole number of seconds", *d)
		}
		settings["validityCheckIntervalSeconds"] = int64(*d / time.Second)
	}
	if rotationDays != nil {
		settings["masterKeyRotationDays"] = *rotationDays
	}
	if len(settings) == 0 {
		return errors.New("nothing to change: give --check-interval and/or --rotation-days")
	}
	path, err := a.groupPath(ctx, "/encryptionAtRest")
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := a.c.Do(ctx, http.MethodPatch, path, nil, map[string]any{"settings": settings}, &raw); err != nil {
		return err
	}
	v, err := parseEAR(raw)
	if err != nil {
		return err
	}
	return a.showEAR(ctx, v)
}

// EARValidate is "try again": the control plane checks the key now. The
// result is printed either way; a key still invalid or unreachable is a
// *KeyError, so scripts see a non-zero exit.
func (a *App) EARValidate(ctx context.Context) error {
	path, err := a.groupPath(ctx, "/encryptionAtRest/validate")
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := a.c.Do(ctx, http.MethodPost, path, nil, nil, &raw); err != nil {
		return err
	}
	v, err := parseEAR(raw)
	if err != nil {
		return err
	}
	if err := a.showEAR(ctx, v); err != nil {
		return err
	}
	if v.object == "" || v.status == nil {
		return errors.New("customer key management is off: there is no key to validate")
	}
	s := v.status
	reachable := s.Reachable == nil || *s.Reachable
	if s.Validity != "VALID" || !reachable {
		return &KeyError{Validity: s.Validity, Reachable: reachable, Reason: s.Reason, Detail: s.Detail}
	}
	return nil
}
