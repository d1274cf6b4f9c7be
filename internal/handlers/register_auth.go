package handlers

import "github.com/cmkdb/cmkdb/internal/wire"

// registerAuth adds the authentication and user-management commands.
func (h *Handler) registerAuth(cmds map[string]wire.HandlerFunc) {
}

// saslMechsFor answers hello's saslSupportedMechs: the mechanisms a user
// can authenticate with, or nil for an unknown user.
func (h *Handler) saslMechsFor(user string) []string {
	return nil
}
