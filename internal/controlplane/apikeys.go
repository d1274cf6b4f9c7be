package controlplane

import (
	"context"
	"net/http"
	"sort"
	"strings"
)

// CreateAPIKey creates an API key with the given roles. Org roles apply to
// every project; group roles name their project. The private key is in the
// answer and nowhere else readable.
func (s *Service) CreateAPIKey(_ context.Context, desc string, roles []RoleAssignment) (APIKey, error) {
	if len(roles) == 0 {
		return APIKey{}, missingAttr("roles")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, r := range roles {
		switch r.RoleName {
		case RoleOrgOwner, RoleOrgReadOnly:
			roles[i].OrgID, roles[i].GroupID = s.org.ID, ""
		case RoleGroupOwner, RoleGroupReadOnly, RoleGroupClusterManager:
			if _, err := s.group(r.GroupID); err != nil {
				return APIKey{}, err
			}
			roles[i].OrgID = ""
		default:
			return APIKey{}, apiErr(http.StatusBadRequest, "INVALID_ROLE", "Invalid role %s.", r.RoleName)
		}
	}
	now := s.now()
	k := APIKey{ID: newID(now), Desc: desc, PublicKey: strings.ToLower(randomSecret(4)),
		PrivateKey: randomUUIDString(), Roles: roles}
	if err := s.st.put(map[string]any{"apikey/" + k.ID: k}); err != nil {
		return APIKey{}, err
	}
	s.apiKeys[k.PublicKey] = &k
	return k, nil
}

// APIKeySecret returns the private key of a public key, for the digest
// authenticator.
func (s *Service) APIKeySecret(publicKey string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.apiKeys[publicKey]
	if !ok {
		return nil, false
	}
	return []byte(k.PrivateKey), true
}

// APIKeyRoles returns the roles of a public key.
func (s *Service) APIKeyRoles(publicKey string) ([]RoleAssignment, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.apiKeys[publicKey]
	if !ok {
		return nil, false
	}
	return append([]RoleAssignment(nil), k.Roles...), true
}

// APIKeys lists the API keys with their private keys masked, as Atlas does.
func (s *Service) APIKeys() []APIKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]APIKey, 0, len(s.apiKeys))
	for _, k := range s.apiKeys {
		c := *k
		c.PrivateKey = maskSecret(k.PrivateKey)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// DeleteAPIKey deletes an API key.
func (s *Service) DeleteAPIKey(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for pub, k := range s.apiKeys {
		if k.ID == id {
			if err := s.st.put(map[string]any{"apikey/" + id: nil}); err != nil {
				return err
			}
			delete(s.apiKeys, pub)
			return nil
		}
	}
	return notFound("apiKey", id)
}

// Allowed reports whether roles grant role (or a stronger one) on group.
// Org Owner grants everything; Project Owner grants the project roles;
// Org Read Only grants Project Read Only everywhere.
func Allowed(roles []RoleAssignment, groupID, need string) bool {
	for _, r := range roles {
		switch r.RoleName {
		case RoleOrgOwner:
			return true
		case RoleOrgReadOnly:
			if need == RoleGroupReadOnly || need == RoleOrgReadOnly {
				return true
			}
		}
		if groupID == "" || r.GroupID != groupID {
			continue
		}
		switch r.RoleName {
		case RoleGroupOwner:
			if need != RoleOrgOwner && need != RoleOrgReadOnly {
				return true
			}
		case RoleGroupClusterManager:
			if need == RoleGroupClusterManager || need == RoleGroupReadOnly {
				return true
			}
		case RoleGroupReadOnly:
			if need == RoleGroupReadOnly {
				return true
			}
		}
	}
	return false
}

func maskSecret(s string) string {
	if len(s) <= 4 {
		return "****"
	}
	return "********-****-****-" + strings.Repeat("*", 8) + s[len(s)-4:]
}

func randomUUIDString() string {
	h := randomSecret(16)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
