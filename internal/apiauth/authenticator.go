package apiauth

import (
	"context"
	"crypto/md5" //nolint:gosec // MD5 is what Atlas digest clients speak.
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Realm is the realm the Atlas Administration API announces.
const Realm = "MMS Public API"

// Authenticator verifies Digest credentials and issues challenges. It is
// safe for concurrent use.
type Authenticator struct {
	realm string
	// lookup returns the private key for a public key, or ok=false if the
	// key is unknown or disabled.
	lookup func(ctx context.Context, publicKey string) (secret []byte, ok bool)
	nonces *nonceMinter
	replay *replayGuard
	// decoy stands in for the secret of an unknown public key, so that a
	// miss costs the same hashing and comparison as a wrong private key.
	decoy []byte
	// now is replaceable so tests can expire nonces without sleeping.
	now      func() time.Time
	lifetime time.Duration
}

// New returns an Authenticator for realm (use Realm for Atlas
// compatibility). lookup is called once per request that carries
// well-formed credentials for a nonce this Authenticator issued.
func New(realm string, lookup func(ctx context.Context, publicKey string) (secret []byte, ok bool)) *Authenticator {
	decoy := make([]byte, 32)
	_, _ = rand.Read(decoy)
	return &Authenticator{
		realm:    realm,
		lookup:   lookup,
		nonces:   newNonceMinter(),
		replay:   newReplayGuard(maxTrackedNonces, nonceLifetime),
		decoy:    decoy,
		now:      time.Now,
		lifetime: nonceLifetime,
	}
}

// Challenge sets a WWW-Authenticate header with a fresh nonce. Set stale
// when Authenticate returned ErrStaleNonce so the client retries without
// prompting for new keys. The caller writes the status (401) and body.
//
// Only realm, nonce, algorithm, qop and stale are sent: the
// mongodb-forks/digest client rejects challenges with parameters it does
// not know, and it splits them on ", ", which no value here contains.
func (a *Authenticator) Challenge(w http.ResponseWriter, stale bool) {
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(
		`Digest realm=%s, nonce="%s", algorithm=MD5, qop="auth", stale=%t`,
		quoteString(a.realm), a.nonces.mint(a.now()), stale))
}

// Authenticate verifies the request's Digest credentials and returns the
// public key they belong to. On failure it returns ErrNoCredentials,
// ErrStaleNonce or an error wrapping ErrBadCredentials (see errors.go); in
// every case the caller should answer 401 with a Challenge.
func (a *Authenticator) Authenticate(r *http.Request) (publicKey string, err error) {
	header := r.Header.Get("Authorization")
	if header == "" {
		return "", ErrNoCredentials
	}
	// Another scheme (e.g. Basic with a token68) is not Digest credentials
	// at all, whatever its syntax; the caller answers with a challenge.
	if !strings.EqualFold(authScheme(header), "Digest") {
		return "", fmt.Errorf("%w: scheme is not Digest", ErrNoCredentials)
	}
	_, params, err := parseAuthorization(header)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrMalformedCredentials, err)
	}
	c, err := a.credentialsFrom(params)
	if err != nil {
		return "", err
	}
	if !uriMatches(c.uri, r) {
		return "", ErrURIMismatch
	}
	id, issued, err := a.nonces.verify(c.nonce)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadCredentials, err)
	}

	// From here on a known and an unknown public key do the same work:
	// hash with the real or decoy secret, compare in constant time, and
	// fail with the same error value.
	secret, known := a.lookup(r.Context(), c.username)
	if !known {
		secret = a.decoy
	}
	want := c.expected(a.realm, secret, r.Method)
	got, hexErr := hex.DecodeString(c.response)
	if hexErr != nil {
		got = nil
	}
	match := subtle.ConstantTimeCompare(want, got) == 1
	if !known || !match {
		return "", ErrBadCredentials
	}

	// The digest is right, so the client holds the key: only now may it
	// learn that the nonce is merely old (RFC 7616 §3.3 stale).
	now := a.now()
	if now.Sub(issued) > a.lifetime {
		return "", ErrStaleNonce
	}
	if err := a.replay.observe(id, issued, now, c.nc); err != nil {
		return "", err
	}
	return c.username, nil
}

// credentials are the parameters of a Digest Authorization header that
// matter for qop=auth.
type credentials struct {
	username, nonce, uri, response, cnonce string
	ncText                                 string // as sent; it is hashed verbatim
	nc                                     uint32
}

func (a *Authenticator) credentialsFrom(p map[string]string) (credentials, error) {
	for _, k := range []string{"username", "realm", "nonce", "uri", "response", "qop", "nc", "cnonce"} {
		if p[k] == "" {
			return credentials{}, fmt.Errorf("%w: missing %s", ErrMalformedCredentials, k)
		}
	}
	if p["realm"] != a.realm {
		return credentials{}, fmt.Errorf("%w: wrong realm", ErrBadCredentials)
	}
	if alg := p["algorithm"]; alg != "" && !strings.EqualFold(alg, "MD5") {
		return credentials{}, fmt.Errorf("%w: unsupported algorithm", ErrBadCredentials)
	}
	// qop=auth is required, not just allowed: without it there is no nonce
	// count and hence no replay protection.
	if p["qop"] != "auth" {
		return credentials{}, fmt.Errorf("%w: unsupported qop", ErrBadCredentials)
	}
	nc, err := parseNonceCount(p["nc"])
	if err != nil {
		return credentials{}, fmt.Errorf("%w: %w", ErrMalformedCredentials, err)
	}
	return credentials{
		username: p["username"],
		nonce:    p["nonce"],
		uri:      p["uri"],
		response: p["response"],
		cnonce:   p["cnonce"],
		ncText:   p["nc"],
		nc:       nc,
	}, nil
}

func parseNonceCount(s string) (uint32, error) {
	if len(s) != 8 {
		return 0, fmt.Errorf("nc must be 8 hex digits")
	}
	n, err := strconv.ParseUint(s, 16, 32)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("nc must be 8 hex digits and non-zero")
	}
	return uint32(n), nil
}

// expected computes the RFC 7616 qop=auth response digest.
func (c credentials) expected(realm string, secret []byte, method string) []byte {
	ha1 := md5hex([]byte(c.username), []byte(realm), secret)
	ha2 := md5hex([]byte(method), []byte(c.uri))
	sum := md5.New() //nolint:gosec // see import
	for i, part := range [][]byte{ha1, []byte(c.nonce), []byte(c.ncText), []byte(c.cnonce), []byte("auth"), ha2} {
		if i > 0 {
			sum.Write([]byte{':'})
		}
		sum.Write(part)
	}
	return sum.Sum(nil)
}

// md5hex returns the lower-case hex MD5 of the parts joined by ':'.
func md5hex(parts ...[]byte) []byte {
	h := md5.New() //nolint:gosec // see import
	for i, p := range parts {
		if i > 0 {
			h.Write([]byte{':'})
		}
		h.Write(p)
	}
	out := make([]byte, hex.EncodedLen(md5.Size))
	hex.Encode(out, h.Sum(nil))
	return out
}

// uriMatches reports whether the digest's uri names the request target, so a
// digest captured for one path cannot authorize another. RequestURI is the
// target exactly as received; URL.RequestURI covers absolute-form targets
// and requests built in-process.
func uriMatches(uri string, r *http.Request) bool {
	return uri == r.RequestURI || uri == r.URL.RequestURI()
}
