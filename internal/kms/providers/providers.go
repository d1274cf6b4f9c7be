// Package providers is the one registry of KMS providers: it lists every
// provider package's Settings and builds a provider from them. Node
// configuration files (config), the control plane's encryptionAtRest API
// (controlplane) and `cmkdb ctl` all read provider settings from here, so a
// setting accepted on one surface is accepted, checked and opened the same
// way on the other. Each provider stays independent of the others and of
// the configuration formats.
package providers

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kms/aws"
	"github.com/cmkdb/cmkdb/internal/kms/azure"
	"github.com/cmkdb/cmkdb/internal/kms/gcp"
	"github.com/cmkdb/cmkdb/internal/kms/kmip"
	"github.com/cmkdb/cmkdb/internal/kms/local"
	"github.com/cmkdb/cmkdb/internal/kms/pkcs11"
	"github.com/cmkdb/cmkdb/internal/kms/vault"
)

// All lists every provider, in the order the API prints their objects.
func All() []kms.Settings {
	return []kms.Settings{aws.Settings(), azure.Settings(), gcp.Settings(), kmip.Settings(),
		vault.Settings(), pkcs11.Settings(), local.Settings()}
}

// ByName finds a provider by its node-file name ("aws").
func ByName(name string) (kms.Settings, bool) {
	return find(func(s kms.Settings) bool { return s.Name == name })
}

// ByObject finds a provider by its API object name ("awsKms").
func ByObject(object string) (kms.Settings, bool) {
	return find(func(s kms.Settings) bool { return s.Object == object })
}

// ByKind finds a provider by its clusters' encryptionAtRestProvider ("AWS").
func ByKind(kind string) (kms.Settings, bool) {
	return find(func(s kms.Settings) bool { return s.Kind == kind })
}

func find(match func(kms.Settings) bool) (kms.Settings, bool) {
	for _, s := range All() {
		if match(s) {
			return s, true
		}
	}
	return kms.Settings{}, false
}

// Names lists the node-file names of every provider.
func Names() []string {
	var out []string
	for _, s := range All() {
		out = append(out, s.Name)
	}
	return out
}

// IsSecret reports whether name is a credential attribute of any provider's
// API object.
func IsSecret(name string) bool {
	for _, s := range All() {
		if f, ok := s.Field(name); ok && f.Secret && f.On&kms.API != 0 {
			return true
		}
	}
	return false
}

// Open checks values (keyed by API names, secrets inline) against the
// provider's rules across fields and builds it. No provider talks to its
// KMS here, so a node whose KMS is down starts DISABLED rather than not at
// all.
func Open(ctx context.Context, s kms.Settings, values map[string]string) (kms.Provider, error) {
	if s.Validate != nil {
		if err := s.Validate(values); err != nil {
			return nil, fmt.Errorf("kms: %s: %w", s.Name, err)
		}
	}
	return s.Open(ctx, values)
}

// secretFromFile stands in for a secret in a node file's values until the
// file is read: a node's configuration names files, never secrets.
const secretFromFile = "(read from a file)"

// nodeValues maps a node file's block (node names; secrets as file paths)
// to values keyed by API names; secrets are read from their files only when
// read is set, otherwise marked present.
func nodeValues(s kms.Settings, block map[string]string, read bool) (map[string]string, error) {
	out := make(map[string]string, len(block))
	for key, val := range block {
		f, ok := nodeField(s, key)
		if !ok {
			if sf, ok := s.Field(key); ok && sf.Secret && sf.On&kms.NodeFile != 0 {
				return nil, fmt.Errorf("kms.%s: %s is a credential: give the file holding it as %s", s.Name, key, sf.NodeName())
			}
			return nil, fmt.Errorf("kms.%s: unknown setting %q", s.Name, key)
		}
		switch {
		case f.Secret && val == "":
			// missing: reported by Check
		case f.Secret && read:
			secret, err := readSecret(val)
			if err != nil {
				return nil, fmt.Errorf("kms: %s %s: %w", s.Name, key, err)
			}
			val = secret
		case f.Secret:
			val = secretFromFile
		}
		out[f.Name] = val
	}
	return out, nil
}

func nodeField(s kms.Settings, key string) (kms.Setting, bool) {
	for _, f := range s.Fields {
		if f.On&kms.NodeFile != 0 && f.NodeName() == key {
			return f, true
		}
	}
	return kms.Setting{}, false
}

// CheckNode validates a node file's block for provider name without reading
// any file.
func CheckNode(name string, block map[string]string) error {
	s, ok := ByName(name)
	if !ok {
		return fmt.Errorf("kms.provider %q is not supported by this build (supported: %s, controlplane)", name, strings.Join(Names(), ", "))
	}
	v, err := nodeValues(s, block, false)
	if err != nil {
		return err
	}
	return s.Check(kms.NodeFile, v)
}

// OpenNode builds the provider a node file's block configures, reading its
// secrets (and the GCP service account key file) from their files. Their
// contents never appear in an error.
func OpenNode(ctx context.Context, name string, block map[string]string) (kms.Provider, error) {
	if err := CheckNode(name, block); err != nil {
		return nil, fmt.Errorf("kms: %w", err)
	}
	s, _ := ByName(name)
	v, err := nodeValues(s, block, true)
	if err != nil {
		return nil, err
	}
	if err := s.Check(kms.NodeFile, v); err != nil { // now with the secrets read
		return nil, fmt.Errorf("kms: %w", err)
	}
	return Open(ctx, s, v)
}

// readSecret reads a one-line secret file. Its contents never appear in an
// error.
func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}
