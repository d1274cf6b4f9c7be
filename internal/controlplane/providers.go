package controlplane

import (
	"context"
	"path/filepath"
	"strings"

	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kms/providers"
)

// field describes one attribute of a provider's encryptionAtRest object.
type field struct {
	name string
	// required on the first configuration of the provider.
	required bool
	// writeOnly attributes (credentials) are never returned by the API.
	writeOnly bool
	// check validates a value; nil accepts any non-empty string.
	check func(string) error
	// path marks a file on the control plane's host (a key file, a
	// PKCS#11 module, a CA bundle): it must lie under one of the
	// directories the control plane was started to allow.
	path bool
}

// providerSpec is one encryptionAtRest object: awsKms, azureKeyVault,
// googleCloudKms as Atlas defines them, and cmkdb's own kmip, vaultTransit,
// pkcs11 and local in the same style.
type providerSpec struct {
	object string // JSON object name in the encryptionAtRest resource
	kind   string // encryptionAtRestProvider value on clusters, event prefix
	fields []field
	open   func(ctx context.Context, v map[string]string) (kms.Provider, error)
	// settings is the provider's own description, with its Atlas codes.
	settings kms.Settings
}

// Provider kinds, as clusters name them in encryptionAtRestProvider.
const (
	ProviderNone   = "NONE"
	ProviderAWS    = "AWS"
	ProviderAzure  = "AZURE"
	ProviderGCP    = "GCP"
	ProviderKMIP   = "KMIP"
	ProviderVault  = "VAULT"
	ProviderPKCS11 = "PKCS11"
	ProviderLocal  = "LOCAL"
)

// specs lists every provider object in the order the API prints them. The
// objects, their attributes, checks, Atlas error codes and how each opens
// come from the provider packages through kms/providers, the registry node
// configuration files read too; the API reads only what the API surface
// allows.
func specs() []providerSpec {
	var out []providerSpec
	for _, set := range providers.All() {
		sp := providerSpec{object: set.Object, kind: set.Kind, settings: set,
			open: func(ctx context.Context, v map[string]string) (kms.Provider, error) {
				return providers.Open(ctx, set, v)
			}}
		for _, f := range set.Fields {
			if f.On&kms.API != 0 {
				sp.fields = append(sp.fields, field{name: f.Name, required: f.Required&kms.API != 0,
					writeOnly: f.Secret, check: f.Check, path: f.Path})
			}
		}
		out = append(out, sp)
	}
	return out
}

func specByObject(object string) (providerSpec, bool) {
	for _, s := range specs() {
		if s.object == object {
			return s, true
		}
	}
	return providerSpec{}, false
}

func specByKind(kind string) (providerSpec, bool) {
	for _, s := range specs() {
		if s.kind == kind {
			return s, true
		}
	}
	return providerSpec{}, false
}

func (s providerSpec) field(name string) (field, bool) {
	for _, f := range s.fields {
		if f.name == name {
			return f, true
		}
	}
	return field{}, false
}

// atlasCode is the Atlas error code for a KMS reason.
func (s providerSpec) atlasCode(r kms.Reason) string { return s.settings.AtlasCode(r) }

// allowedPath reports whether path lies under one of dirs once symlinks
// are resolved, so an API caller cannot point the control plane at an
// arbitrary library or file on its host.
func allowedPath(path string, dirs []string) bool {
	if !filepath.IsAbs(path) {
		return false
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		real = filepath.Clean(path)
	}
	for _, d := range dirs {
		rd, err := filepath.EvalSymlinks(d)
		if err != nil {
			rd = filepath.Clean(d)
		}
		if rel, err := filepath.Rel(rd, real); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") && !filepath.IsAbs(rel) {
			return true
		}
	}
	return false
}
