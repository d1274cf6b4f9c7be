package controlplane

import "path/filepath"

// Provider file paths (the local key file, PKCS#11 modules, KMIP and CA
// certificates) may be stored relative to Options.BaseDir: `cmkdb up`
// stores its local CMK as "kms/local-cmk.json", relative to its data
// directory. A data directory copied elsewhere then runs on its own key
// file, and `cmkdb kms local … --dir COPY` changes the key the copy uses,
// not the original's.

// resolvePath returns the absolute path a stored provider path names.
func (s *Service) resolvePath(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	base := s.opts.BaseDir
	if base == "" {
		base = s.opts.Dir
	}
	abs, err := filepath.Abs(filepath.Join(base, p))
	if err != nil {
		return filepath.Join(base, p)
	}
	return abs
}

// resolvedValues returns values with every path field of spec resolved.
func (s *Service) resolvedValues(spec providerSpec, values map[string]string) map[string]string {
	out := make(map[string]string, len(values))
	for k, v := range values {
		out[k] = v
	}
	for _, f := range spec.fields {
		if f.path {
			if v, ok := out[f.name]; ok {
				out[f.name] = s.resolvePath(v)
			}
		}
	}
	return out
}

// ProviderFile returns the absolute path of a project's provider file
// setting (name, e.g. "keyFile"), resolved as the control plane uses it,
// and whether the project has one.
func (s *Service) ProviderFile(gid, name string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, ok := s.groups[gid]
	if !ok || gs.ear.Values[name] == "" {
		return "", false
	}
	return s.resolvePath(gs.ear.Values[name]), true
}
