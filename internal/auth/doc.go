// Package auth authenticates clients with SCRAM (RFC 5802/7677) the way
// mongod does: it derives and encodes stored credentials from passwords,
// and runs the server side of the saslStart/saslContinue conversation over
// github.com/xdg-go/scram. Where users live is the caller's business: it
// reads them through a CredentialStore. Passwords are never stored, only
// the salted SCRAM keys.
package auth
