package atlasapi

import (
	"context"
	"errors"

	"github.com/cmkdb/cmkdb/internal/apiauth"
	"github.com/cmkdb/cmkdb/internal/controlplane"
)

func (h *handler) lookupSecret(_ context.Context, publicKey string) ([]byte, bool) {
	return h.svc.APIKeySecret(publicKey)
}

// authenticate verifies the request's Digest credentials and loads the
// key's roles into c. On failure it answers 401 with a fresh challenge
// (stale when only the nonce expired, so clients retry silently) and
// returns false.
func (h *handler) authenticate(c *call) bool {
	pub, err := h.auth.Authenticate(c.r)
	if err == nil {
		roles, ok := h.svc.APIKeyRoles(pub)
		if ok {
			c.actor, c.roles = pub, roles
			return true
		}
		// Deleted between the digest check and now.
		err = apiauth.ErrBadCredentials
	}
	if !errors.Is(err, apiauth.ErrNoCredentials) {
		h.log.Debug("admin API authentication failed", "path", loggedPath(c.r.URL.Path), "err", err)
	}
	h.auth.Challenge(c.w, errors.Is(err, apiauth.ErrStaleNonce))
	c.fail(errUnauthorized())
	return false
}

// require refuses the call unless the caller holds need on the route's
// project (or on the org for routes without one). "" needs nothing beyond
// a valid key.
func (c *call) require(need string) error {
	if need == "" || controlplane.Allowed(c.roles, c.params["groupId"], need) {
		return nil
	}
	return errForbidden()
}

// canRead reports whether the caller may read project gid.
func (c *call) canRead(gid string) bool {
	return controlplane.Allowed(c.roles, gid, controlplane.RoleGroupReadOnly)
}
