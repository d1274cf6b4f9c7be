// Package apiauth authenticates admin API requests with HTTP Digest
// (RFC 7616, MD5, qop=auth) the way the Atlas Administration API does, so
// that API-key clients such as go.mongodb.org/atlas work unchanged.
//
// The public key is the digest username and the private key the password.
// Nonces are stateless (an HMAC over their issue time), so any process
// holding the same Authenticator can verify them; the only state kept is the
// highest nonce count seen per nonce, for replay protection.
package apiauth
