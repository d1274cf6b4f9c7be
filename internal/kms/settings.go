package kms

import (
	"context"
	"fmt"
	"strings"
)

// Surface is where a provider's settings are written.
type Surface uint8

const (
	// API is the control plane's encryptionAtRest object (Atlas attribute
	// names, secrets given inline, write-only).
	API Surface = 1 << iota
	// NodeFile is the kms block of a node configuration file (secrets read
	// from files named there).
	NodeFile
	// Both surfaces.
	Both = API | NodeFile
)

// Setting is one attribute of a provider's configuration.
type Setting struct {
	// Name is the attribute's name in the API object and the key of its
	// value in the map Open takes.
	Name string
	// Node is its name in a node configuration file when it differs from
	// Name. For a Secret the node file names a file holding the value.
	Node string
	// On is where the setting may be written; Required where it must be
	// (in the API: on the provider's first configuration).
	On, Required Surface
	// Secret settings (credentials) are write-only in the API, never
	// returned or logged, and read from a file by a node.
	Secret bool
	// Path marks a file on the host. The control plane accepts only files
	// under the directories it was started to allow.
	Path bool
	// List settings hold several values: a JSON array of strings in a node
	// file, comma-separated in the API and in the values Open takes.
	List bool
	// Check validates a value; nil accepts any string.
	Check func(string) error
}

// NodeName is the setting's name in a node configuration file.
func (s Setting) NodeName() string {
	if s.Node != "" {
		return s.Node
	}
	return s.Name
}

func (s Setting) nameOn(on Surface) string {
	if on == NodeFile {
		return s.NodeName()
	}
	return s.Name
}

// Settings describe one provider's configuration and open it, in the style
// of go-kms-wrapping's SetConfig: a flat map of named string values. Each
// provider package declares its own; kms/providers lists them all, and
// everything that reads a provider configuration (node files, the control
// plane's API, ctl) goes through them, so the surfaces cannot drift apart.
type Settings struct {
	// Name is the provider as node files and key references name it ("aws").
	Name string
	// Object is the API's encryptionAtRest object ("awsKms").
	Object string
	// Kind is the clusters' encryptionAtRestProvider value ("AWS").
	Kind   string
	Fields []Setting
	// Validate checks rules across fields once every Check passed; nil
	// accepts. Open is only called on values it accepts.
	Validate func(v map[string]string) error
	// Codes maps a KMS reason to the Atlas error code an API change
	// answers when the new configuration fails validation.
	Codes map[Reason]string
	// Open builds the provider from values (secrets included) keyed by
	// Setting.Name. It does not talk to the KMS.
	Open func(ctx context.Context, v map[string]string) (Provider, error)
}

// Field returns the setting called name (its API name).
func (s Settings) Field(name string) (Setting, bool) {
	for _, f := range s.Fields {
		if f.Name == name {
			return f, true
		}
	}
	return Setting{}, false
}

// AtlasCode is the Atlas error code for a KMS reason: the provider's own
// code when Atlas has one, otherwise the generic ones.
func (s Settings) AtlasCode(r Reason) string {
	if c, ok := s.Codes[r]; ok {
		return c
	}
	if r == ReasonPermissionDenied {
		return "NO_PERMISSION_TO_ENCRYPT_DECRYPT"
	}
	return "ENCRYPTION_AT_REST_SETTINGS_INVALID"
}

// Check validates values written on surface: every one is a known setting
// of that surface and passes its Check, every required one is present, and
// Validate accepts the whole. Secret values are never quoted in its errors.
func (s Settings) Check(on Surface, v map[string]string) error {
	for name, val := range v {
		f, ok := s.Field(name)
		if !ok || f.On&on == 0 {
			return fmt.Errorf("%s: unknown setting %q", s.Name, name)
		}
		if f.Check != nil {
			if err := f.Check(val); err != nil {
				return fmt.Errorf("%s.%s: %w", s.Name, f.nameOn(on), err)
			}
		}
	}
	var missing []string
	for _, f := range s.Fields {
		if f.Required&on != 0 && v[f.Name] == "" {
			missing = append(missing, f.nameOn(on))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s needs %s", s.Name, strings.Join(missing, ", "))
	}
	if s.Validate != nil {
		if err := s.Validate(v); err != nil {
			return fmt.Errorf("%s: %w", s.Name, err)
		}
	}
	return nil
}

// OneOf is a Check accepting only the given values.
func OneOf(vals ...string) func(string) error {
	return func(v string) error {
		for _, ok := range vals {
			if v == ok {
				return nil
			}
		}
		return fmt.Errorf("must be one of %s", strings.Join(vals, ", "))
	}
}

// SplitList splits a List setting's value.
func SplitList(v string) []string {
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}
