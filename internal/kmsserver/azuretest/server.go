// Package azuretest is a faithful Azure Key Vault (keys) and Azure AD token
// endpoint, served over TLS, for testing the azure provider with the official
// SDK (azkeys + azidentity) end to end.
//
// What it reproduces, as the real services show it:
//   - the Key Vault bearer challenge: a request without a token gets 401 with
//     `WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/<tenant>", resource="https://vault.azure.net"`;
//   - an Azure AD v2.0 token endpoint (client credentials with a client
//     secret; a wrong secret gets 401 invalid_client / AADSTS7000215) and
//     its OpenID configuration document;
//   - revoked tokens (after the client secret changes) are refused with a
//     CAE `insufficient_claims` challenge, so clients must fetch a new token;
//   - keys with versions, attributes (enabled, nbf, exp, created, updated,
//     recoveryLevel), key_ops, RSA-OAEP-256 wrapKey/unwrapKey with real RSA
//     (2048/3072/4096, and 1024 or EC for wrong-key tests), create, rotate,
//     update, soft delete, get deleted key, recover;
//   - the service's error bodies `{"error":{"code","message","innererror"}}`.
//
// The certificate is valid for 127.0.0.1, localhost, *.vault.azure.net and
// login.microsoftonline.com, so a client whose dialer sends those names to
// the server talks to it exactly as it would to Azure.
package azuretest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cmkdb/cmkdb/internal/kmsserver/faults"
)

// Permissions of the access-policy model that the provider needs.
const (
	PermGet       = "get"
	PermWrapKey   = "wrapKey"
	PermUnwrapKey = "unwrapKey"
)

// Options configures a Server.
type Options struct {
	TenantID     string
	ClientID     string
	ClientSecret string
	// VaultName is the vault's name (the host is <name>.vault.azure.net).
	VaultName string
	// TokenLifetime of issued access tokens; zero means one hour.
	TokenLifetime time.Duration
}

// Server is the fake Key Vault plus Azure AD authority.
type Server struct {
	*httptest.Server
	// Faults are the switches every faithful server shares; permissions
	// are Key Vault key permissions (PermGet, PermWrapKey...).
	Faults *faults.Switches
	opts   Options
	pool   *x509.CertPool

	mu      sync.Mutex
	secret  string
	tokens  map[string]time.Time // token -> expiry
	keys    map[string]*key
	shadows map[string]*key // a key that replaced the named one (wrong type tests)
	deleted map[string]*key

	// Counters, for tests.
	TokenRequests atomic.Int64
	VaultRequests atomic.Int64
	lastUA        atomic.Value // string
}

// LastUserAgent is the User-Agent of the latest vault request.
func (s *Server) LastUserAgent() string {
	ua, _ := s.lastUA.Load().(string)
	return ua
}

type key struct {
	name     string
	versions []*version
}

func (k *key) current() *version { return k.versions[len(k.versions)-1] }

type version struct {
	id       string
	kty      string
	rsa      *rsa.PrivateKey
	ec       *ecdsa.PrivateKey
	ops      []string
	enabled  bool
	nbf, exp *time.Time
	created  time.Time
	updated  time.Time
}

// NewServer starts a server.
func NewServer(opts Options) *Server {
	if opts.TokenLifetime == 0 {
		opts.TokenLifetime = time.Hour
	}
	if opts.VaultName == "" {
		opts.VaultName = "cmkdbtest"
	}
	s := &Server{
		opts:    opts,
		secret:  opts.ClientSecret,
		tokens:  map[string]time.Time{},
		keys:    map[string]*key{},
		shadows: map[string]*key{},
		deleted: map[string]*key{},
		Faults:  &faults.Switches{},
	}
	cert, pool := selfSigned()
	s.pool = pool
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.Server.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	s.Server.StartTLS()
	return s
}

// Close stops the server, releasing stalled requests first.
func (s *Server) Close() {
	s.Faults.Close()
	s.Server.Close()
}

// CertPool trusts the server's certificate.
func (s *Server) CertPool() *x509.CertPool { return s.pool }

// Addr is the host:port the server listens on.
func (s *Server) Addr() string { return s.Listener.Addr().String() }

// VaultURL is the vault's URL as Azure names it (dial it to Addr).
func (s *Server) VaultURL() string { return "https://" + s.opts.VaultName + ".vault.azure.net" }

func selfSigned() (tls.Certificate, *x509.CertPool) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "azuretest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost", "*.vault.azure.net", "login.microsoftonline.com"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		panic(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv, Leaf: leaf}, pool
}

// ---- controls ----

func newVersion(kty string, bits int) *version {
	now := time.Now().UTC().Truncate(time.Second)
	v := &version{id: randHex(16), kty: kty, enabled: true, created: now, updated: now,
		ops: []string{"encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"}}
	var err error
	switch kty {
	case "EC":
		v.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		v.ops = []string{"sign", "verify"}
	default:
		v.rsa, err = rsa.GenerateKey(rand.Reader, bits)
	}
	if err != nil {
		panic(err)
	}
	return v
}

// CreateRSAKey creates a key (or a new version of it) and returns its version.
func (s *Server) CreateRSAKey(name string, bits int) string {
	v := newVersion("RSA", bits)
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.keys[name]
	if k == nil {
		k = &key{name: name}
		s.keys[name] = k
	}
	k.versions = append(k.versions, v)
	return v.id
}

// RotateKey adds a new version of the same type and size; it becomes current.
func (s *Server) RotateKey(name string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.keys[name]
	if k == nil {
		return "", fmt.Errorf("no key %q", name)
	}
	cur := k.current()
	bits := 2048
	if cur.rsa != nil {
		bits = cur.rsa.N.BitLen()
	}
	v := newVersion(cur.kty, bits)
	v.ops = slices.Clone(cur.ops)
	k.versions = append(k.versions, v)
	return v.id, nil
}

// Versions lists a key's versions, oldest first.
func (s *Server) Versions(name string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	if k := s.keys[name]; k != nil {
		for _, v := range k.versions {
			out = append(out, v.id)
		}
	}
	return out
}

func (s *Server) each(name string, f func(*version)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.keys[name]
	if k == nil {
		return fmt.Errorf("no key %q", name)
	}
	for _, v := range k.versions {
		f(v)
		v.updated = time.Now().UTC().Truncate(time.Second)
	}
	return nil
}

// SetEnabled enables or disables every version of a key.
func (s *Server) SetEnabled(name string, on bool) error {
	return s.each(name, func(v *version) { v.enabled = on })
}

// SetNotBefore sets (or with nil clears) the activation date of every version.
func (s *Server) SetNotBefore(name string, t *time.Time) error {
	return s.each(name, func(v *version) { v.nbf = t })
}

// SetExpires sets (or with nil clears) the expiry of every version.
func (s *Server) SetExpires(name string, t *time.Time) error {
	return s.each(name, func(v *version) { v.exp = t })
}

// SetKeyOps sets the permitted operations of every version.
func (s *Server) SetKeyOps(name string, ops ...string) error {
	return s.each(name, func(v *version) { v.ops = slices.Clone(ops) })
}

// DeleteKey soft-deletes a key: it answers 404 KeyNotFound, and shows under
// /deletedkeys until RecoverKey.
func (s *Server) DeleteKey(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.keys[name]
	if k == nil {
		return fmt.Errorf("no key %q", name)
	}
	delete(s.keys, name)
	s.deleted[name] = k
	return nil
}

// RecoverKey undoes DeleteKey.
func (s *Server) RecoverKey(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.deleted[name]
	if k == nil {
		return fmt.Errorf("no deleted key %q", name)
	}
	delete(s.deleted, name)
	s.keys[name] = k
	return nil
}

// PurgeKey removes a key, deleted or not, for good.
func (s *Server) PurgeKey(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.deleted, name)
	delete(s.keys, name)
}

// ReplaceKey puts a different key under the name — what a customer gets
// after purging the key and creating another one with the same name — kty
// "EC" or "RSA" with bits. RestoreKey brings the original back, as a
// restore from backup would.
func (s *Server) ReplaceKey(name, kty string, bits int) error {
	v := newVersion(kty, bits)
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.keys[name]
	if k == nil {
		return fmt.Errorf("no key %q", name)
	}
	if _, ok := s.shadows[name]; !ok {
		s.shadows[name] = k
	}
	s.keys[name] = &key{name: name, versions: []*version{v}}
	return nil
}

// HideKey makes the name answer 404 KeyNotFound with nothing under
// /deletedkeys — a purged key, or a name that never existed — keeping the
// key for RestoreKey.
func (s *Server) HideKey(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.keys[name]
	if k == nil {
		return fmt.Errorf("no key %q", name)
	}
	if _, ok := s.shadows[name]; !ok {
		s.shadows[name] = k
	}
	delete(s.keys, name)
	return nil
}

// RestoreKey undoes ReplaceKey and HideKey.
func (s *Server) RestoreKey(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k, ok := s.shadows[name]; ok {
		s.keys[name] = k
		delete(s.shadows, name)
	}
}

// Deny removes (or with false, grants back) a permission from the client.
func (s *Server) Deny(perm string, deny bool) { s.Faults.Deny(perm, deny) }

// SetClientSecret changes the secret the authority accepts, and revokes every
// token issued so far, as Azure does when a credential is revoked.
func (s *Server) SetClientSecret(secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.secret = secret
	clear(s.tokens)
}

// Throttle makes every vault request answer 429.
func (s *Server) Throttle(on bool) { s.Faults.Throttle(on) }

// Fail5xx makes every vault request answer 500.
func (s *Server) Fail5xx(on bool) {
	f := faults.None
	if on {
		f = faults.Internal
	}
	s.Faults.Fail(f)
}

// Stall makes every vault request hang until the client gives up (or
// Stall(false)).
func (s *Server) Stall(on bool) { s.Faults.Stall(on) }

// Reset clears the fault switches (throttle, 5xx, stall, denials).
func (s *Server) Reset() { s.Faults.Reset() }

// KeyMaterial returns the private parts of every version of a key (RSA d,
// p, q; EC d), so tests can check they never leak. The public parts are
// left out: they are public.
func (s *Server) KeyMaterial(name string) [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][]byte
	for _, m := range []map[string]*key{s.keys, s.deleted, s.shadows} {
		if k := m[name]; k != nil {
			for _, v := range k.versions {
				if v.rsa != nil {
					out = append(out, v.rsa.D.Bytes(), v.rsa.Primes[0].Bytes(), v.rsa.Primes[1].Bytes())
				} else {
					out = append(out, v.ec.D.Bytes())
				}
			}
		}
	}
	return out
}

// ---- HTTP ----

type kvError struct {
	Code       string `json:"code"`
	Message    string `json:"message"`
	InnerError *struct {
		Code string `json:"code"`
	} `json:"innererror,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func kvFail(w http.ResponseWriter, status int, code, inner, msg string) {
	e := kvError{Code: code, Message: msg}
	if inner != "" {
		e.InnerError = &struct {
			Code string `json:"code"`
		}{inner}
	}
	writeJSON(w, status, map[string]any{"error": e})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	switch {
	case strings.HasSuffix(host, ".vault.azure.net"):
		s.serveVault(w, r)
	default:
		s.serveAuthority(w, r)
	}
}

func (s *Server) serveAuthority(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) < 2 {
		http.NotFound(w, r)
		return
	}
	tenant := parts[0]
	rest := strings.Join(parts[1:], "/")
	base := "https://" + r.Host + "/" + tenant
	if tenant != s.opts.TenantID {
		writeJSON(w, http.StatusBadRequest, aadError("invalid_request", 90002,
			fmt.Sprintf("AADSTS90002: Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.", tenant)))
		return
	}
	switch {
	case r.Method == http.MethodGet && (rest == "v2.0/.well-known/openid-configuration" || rest == ".well-known/openid-configuration"):
		writeJSON(w, http.StatusOK, map[string]any{
			"token_endpoint":                        base + "/oauth2/v2.0/token",
			"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
			"device_authorization_endpoint":         base + "/oauth2/v2.0/devicecode",
			"issuer":                                base + "/v2.0",
			"jwks_uri":                              base + "/discovery/v2.0/keys",
			"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
			"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
			"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
			"tenant_region_scope":                   "NA",
		})
	case r.Method == http.MethodPost && rest == "oauth2/v2.0/token":
		s.token(w, r)
	default:
		http.NotFound(w, r)
	}
}

func aadError(code string, num int, desc string) map[string]any {
	now := time.Now().UTC()
	trace, corr := uuidish(), uuidish()
	return map[string]any{
		"error":             code,
		"error_description": fmt.Sprintf("%s Trace ID: %s Correlation ID: %s Timestamp: %s", desc, trace, corr, now.Format("2006-01-02 15:04:05Z")),
		"error_codes":       []int{num},
		"timestamp":         now.Format("2006-01-02 15:04:05Z"),
		"trace_id":          trace,
		"correlation_id":    corr,
		"error_uri":         fmt.Sprintf("https://login.microsoftonline.com/error?code=%d", num),
	}
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	s.TokenRequests.Add(1)
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, aadError("invalid_request", 900144, "AADSTS900144: The request body must contain the following parameter: 'grant_type'."))
		return
	}
	f := r.PostForm
	if f.Get("grant_type") != "client_credentials" {
		writeJSON(w, http.StatusBadRequest, aadError("unsupported_grant_type", 70003, "AADSTS70003: The app requested an unsupported grant type."))
		return
	}
	if f.Get("client_id") != s.opts.ClientID {
		writeJSON(w, http.StatusBadRequest, aadError("unauthorized_client", 700016,
			fmt.Sprintf("AADSTS700016: Application with identifier '%s' was not found in the directory '%s'.", f.Get("client_id"), s.opts.TenantID)))
		return
	}
	s.mu.Lock()
	ok := f.Get("client_secret") == s.secret
	s.mu.Unlock()
	if !ok {
		writeJSON(w, http.StatusUnauthorized, aadError("invalid_client", 7000215,
			fmt.Sprintf("AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.", s.opts.ClientID)))
		return
	}
	if !slices.Contains(strings.Fields(f.Get("scope")), "https://vault.azure.net/.default") {
		writeJSON(w, http.StatusBadRequest, aadError("invalid_scope", 1002012, "AADSTS1002012: The provided value for scope is not valid."))
		return
	}
	tok := base64.RawURLEncoding.EncodeToString(randBytes(32))
	s.mu.Lock()
	s.tokens[tok] = time.Now().Add(s.opts.TokenLifetime)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type":     "Bearer",
		"expires_in":     int(s.opts.TokenLifetime / time.Second),
		"ext_expires_in": int(s.opts.TokenLifetime / time.Second),
		"access_token":   tok,
	})
}

func (s *Server) challenge(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer authorization="https://login.microsoftonline.com/%s", resource="https://vault.azure.net"`, s.opts.TenantID))
}

func (s *Server) serveVault(w http.ResponseWriter, r *http.Request) {
	s.VaultRequests.Add(1)
	s.lastUA.Store(r.UserAgent())
	if !s.Faults.WaitStall(r.Context()) {
		// The client gave up or the server is closing: a stalled
		// request gets no answer at all, not an empty 200.
		panic(http.ErrAbortHandler)
	}
	st := s.Faults.State()
	// Authentication.
	authz := r.Header.Get("Authorization")
	if !strings.HasPrefix(authz, "Bearer ") {
		s.challenge(w)
		kvFail(w, http.StatusUnauthorized, "Unauthorized", "", "AKV10000: Request is missing a Bearer or PoP token.")
		return
	}
	s.mu.Lock()
	exp, known := s.tokens[strings.TrimPrefix(authz, "Bearer ")]
	s.mu.Unlock()
	if !known || time.Now().After(exp) {
		// A revoked token: the CAE claims challenge, which makes clients
		// bypass their token cache.
		claims := base64.StdEncoding.EncodeToString(fmt.Appendf(nil, `{"access_token":{"nbf":{"essential":true,"value":"%d"}}}`, time.Now().Unix()))
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", error="insufficient_claims", claims="%s"`, claims))
		kvFail(w, http.StatusUnauthorized, "Unauthorized", "", "AKV10013: Invalid claims. The access token has been revoked.")
		return
	}
	if st.Throttled {
		w.Header().Set("Retry-After", "1")
		kvFail(w, http.StatusTooManyRequests, "Throttled", "", "Request was not processed because too many requests were received. Reason: A1")
		return
	}
	if st.Failure != faults.None {
		kvFail(w, http.StatusInternalServerError, "InternalServerError", "", "An unexpected error occurred while processing the request.")
		return
	}
	if r.URL.Query().Get("api-version") == "" {
		kvFail(w, http.StatusBadRequest, "BadParameter", "", "The request URI contains an invalid parameter: api-version is missing.")
		return
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case len(parts) == 2 && parts[0] == "deletedkeys" && r.Method == http.MethodGet:
		s.getDeleted(w, r, parts[1])
	case len(parts) == 3 && parts[0] == "deletedkeys" && parts[2] == "recover" && r.Method == http.MethodPost:
		if !s.allowed(w, r, "recover") {
			return
		}
		if err := s.RecoverKey(parts[1]); err != nil {
			s.notFound(w, parts[1], "")
			return
		}
		s.getKey(w, r, parts[1], "")
	case len(parts) < 2 || parts[0] != "keys":
		kvFail(w, http.StatusBadRequest, "BadParameter", "", "The request URI is not valid.")
	case len(parts) == 2 && r.Method == http.MethodGet:
		s.getKey(w, r, parts[1], "")
	case len(parts) == 2 && r.Method == http.MethodPatch:
		s.update(w, r, parts[1], "")
	case len(parts) == 2 && r.Method == http.MethodDelete:
		s.deleteKey(w, r, parts[1])
	case len(parts) == 3 && parts[2] == "create" && r.Method == http.MethodPost:
		s.createKey(w, r, parts[1])
	case len(parts) == 3 && parts[2] == "rotate" && r.Method == http.MethodPost:
		s.rotate(w, r, parts[1])
	case len(parts) == 3 && r.Method == http.MethodGet:
		s.getKey(w, r, parts[1], parts[2])
	case len(parts) == 3 && r.Method == http.MethodPatch:
		s.update(w, r, parts[1], parts[2])
	case len(parts) == 4 && r.Method == http.MethodPost && (parts[3] == "wrapkey" || parts[3] == "unwrapkey"):
		s.crypt(w, r, parts[1], parts[2], parts[3] == "wrapkey")
	default:
		kvFail(w, http.StatusBadRequest, "BadParameter", "", "The request URI is not valid.")
	}
}

// allowed enforces the access policy; perm is the Key Vault key permission.
func (s *Server) allowed(w http.ResponseWriter, r *http.Request, perm string) bool {
	if !s.Faults.Denied(perm) {
		return true
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	vault := strings.TrimSuffix(host, ".vault.azure.net")
	kvFail(w, http.StatusForbidden, "Forbidden", "AccessDenied", fmt.Sprintf(
		"The user, group or application 'appid=%s;oid=%s;iss=https://sts.windows.net/%s/' does not have keys %s permission on key vault '%s;location=eastus'. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287",
		s.opts.ClientID, uuidish(), s.opts.TenantID, perm, vault))
	return false
}

func (s *Server) notFound(w http.ResponseWriter, name, ver string) {
	id := name
	if ver != "" {
		id += "/" + ver
	}
	kvFail(w, http.StatusNotFound, "KeyNotFound", "", fmt.Sprintf(
		"A key with (name/id) %s was not found in this key vault. If you recently deleted this key you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182", id))
}

// lookup returns the version (current when ver is ""), or nil.
func (s *Server) lookup(name, ver string) *version {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.keys[name]
	if k == nil {
		return nil
	}
	if ver == "" {
		return k.current()
	}
	for _, v := range k.versions {
		if v.id == ver {
			return v
		}
	}
	return nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func (s *Server) bundle(r *http.Request, name string, v *version) map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	kid := fmt.Sprintf("https://%s/keys/%s/%s", r.Host, name, v.id)
	k := map[string]any{"kid": kid, "kty": v.kty, "key_ops": v.ops}
	if v.rsa != nil {
		k["n"] = b64(v.rsa.N.Bytes())
		k["e"] = b64(big.NewInt(int64(v.rsa.E)).Bytes())
	} else {
		k["crv"] = "P-256"
		k["x"] = b64(v.ec.X.FillBytes(make([]byte, 32)))
		k["y"] = b64(v.ec.Y.FillBytes(make([]byte, 32)))
	}
	attrs := map[string]any{
		"enabled":         v.enabled,
		"created":         v.created.Unix(),
		"updated":         v.updated.Unix(),
		"recoveryLevel":   "Recoverable+Purgeable",
		"recoverableDays": 90,
		"exportable":      false,
	}
	if v.nbf != nil {
		attrs["nbf"] = v.nbf.Unix()
	}
	if v.exp != nil {
		attrs["exp"] = v.exp.Unix()
	}
	return map[string]any{"key": k, "attributes": attrs}
}

func (s *Server) getKey(w http.ResponseWriter, r *http.Request, name, ver string) {
	if !s.allowed(w, r, PermGet) {
		return
	}
	v := s.lookup(name, ver)
	if v == nil {
		s.notFound(w, name, ver)
		return
	}
	writeJSON(w, http.StatusOK, s.bundle(r, name, v))
}

func (s *Server) getDeleted(w http.ResponseWriter, r *http.Request, name string) {
	if !s.allowed(w, r, PermGet) {
		return
	}
	s.mu.Lock()
	k := s.deleted[name]
	s.mu.Unlock()
	if k == nil {
		kvFail(w, http.StatusNotFound, "KeyNotFound", "", fmt.Sprintf("Deleted Key not found: %s", name))
		return
	}
	b := s.bundle(r, name, k.current())
	now := time.Now().UTC()
	b["recoveryId"] = fmt.Sprintf("https://%s/deletedkeys/%s", r.Host, name)
	b["deletedDate"] = now.Unix()
	b["scheduledPurgeDate"] = now.Add(90 * 24 * time.Hour).Unix()
	writeJSON(w, http.StatusOK, b)
}

func (s *Server) deleteKey(w http.ResponseWriter, r *http.Request, name string) {
	if !s.allowed(w, r, "delete") {
		return
	}
	v := s.lookup(name, "")
	if v == nil {
		s.notFound(w, name, "")
		return
	}
	b := s.bundle(r, name, v)
	_ = s.DeleteKey(name)
	now := time.Now().UTC()
	b["recoveryId"] = fmt.Sprintf("https://%s/deletedkeys/%s", r.Host, name)
	b["deletedDate"] = now.Unix()
	b["scheduledPurgeDate"] = now.Add(90 * 24 * time.Hour).Unix()
	writeJSON(w, http.StatusOK, b)
}

type attrsIn struct {
	Enabled *bool  `json:"enabled"`
	NBF     *int64 `json:"nbf"`
	Exp     *int64 `json:"exp"`
}

func (a *attrsIn) apply(v *version) {
	if a == nil {
		return
	}
	if a.Enabled != nil {
		v.enabled = *a.Enabled
	}
	if a.NBF != nil {
		t := time.Unix(*a.NBF, 0).UTC()
		v.nbf = &t
	}
	if a.Exp != nil {
		t := time.Unix(*a.Exp, 0).UTC()
		v.exp = &t
	}
}

func (s *Server) createKey(w http.ResponseWriter, r *http.Request, name string) {
	if !s.allowed(w, r, "create") {
		return
	}
	var in struct {
		Kty     string   `json:"kty"`
		KeySize *int     `json:"key_size"`
		KeyOps  []string `json:"key_ops"`
		Attrs   *attrsIn `json:"attributes"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		kvFail(w, http.StatusBadRequest, "BadParameter", "", "The request body is not valid JSON.")
		return
	}
	bits := 2048
	if in.KeySize != nil {
		bits = *in.KeySize
	}
	var v *version
	switch in.Kty {
	case "RSA", "RSA-HSM":
		if bits != 2048 && bits != 3072 && bits != 4096 {
			kvFail(w, http.StatusBadRequest, "BadParameter", "", fmt.Sprintf("The specified RSA key size '%d' is not supported.", bits))
			return
		}
		v = newVersion("RSA", bits)
		v.kty = in.Kty
	case "EC", "EC-HSM":
		v = newVersion("EC", 0)
		v.kty = in.Kty
	default:
		kvFail(w, http.StatusBadRequest, "BadParameter", "", fmt.Sprintf("The specified key type '%s' is not supported.", in.Kty))
		return
	}
	if len(in.KeyOps) > 0 {
		v.ops = in.KeyOps
	}
	in.Attrs.apply(v)
	s.mu.Lock()
	if _, gone := s.deleted[name]; gone {
		s.mu.Unlock()
		kvFail(w, http.StatusConflict, "Conflict", "ObjectIsDeletedButRecoverable", fmt.Sprintf("Key %s is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the key can only be recovered or purged.", name))
		return
	}
	k := s.keys[name]
	if k == nil {
		k = &key{name: name}
		s.keys[name] = k
	}
	k.versions = append(k.versions, v)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, s.bundle(r, name, v))
}

func (s *Server) rotate(w http.ResponseWriter, r *http.Request, name string) {
	if !s.allowed(w, r, "rotate") {
		return
	}
	id, err := s.RotateKey(name)
	if err != nil {
		s.notFound(w, name, "")
		return
	}
	writeJSON(w, http.StatusOK, s.bundle(r, name, s.lookup(name, id)))
}

func (s *Server) update(w http.ResponseWriter, r *http.Request, name, ver string) {
	if !s.allowed(w, r, "update") {
		return
	}
	var in struct {
		KeyOps []string `json:"key_ops"`
		Attrs  *attrsIn `json:"attributes"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		kvFail(w, http.StatusBadRequest, "BadParameter", "", "The request body is not valid JSON.")
		return
	}
	v := s.lookup(name, ver)
	if v == nil {
		s.notFound(w, name, ver)
		return
	}
	s.mu.Lock()
	in.Attrs.apply(v)
	if in.KeyOps != nil {
		v.ops = in.KeyOps
	}
	v.updated = time.Now().UTC().Truncate(time.Second)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, s.bundle(r, name, v))
}

func (s *Server) crypt(w http.ResponseWriter, r *http.Request, name, ver string, wrap bool) {
	op, perm := "unwrapKey", PermUnwrapKey
	if wrap {
		op, perm = "wrapKey", PermWrapKey
	}
	if !s.allowed(w, r, perm) {
		return
	}
	var in struct {
		Alg   string `json:"alg"`
		Value string `json:"value"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		kvFail(w, http.StatusBadRequest, "BadParameter", "", "The request body is not valid JSON.")
		return
	}
	v := s.lookup(name, ver)
	if v == nil {
		s.notFound(w, name, ver)
		return
	}
	s.mu.Lock()
	enabled, nbf, exp, ops, priv := v.enabled, v.nbf, v.exp, slices.Clone(v.ops), v.rsa
	s.mu.Unlock()
	now := time.Now()
	switch {
	// The service lets a disabled key encrypt and wrap, but not decrypt or unwrap.
	case !enabled && !wrap:
		kvFail(w, http.StatusForbidden, "Forbidden", "KeyDisabled", fmt.Sprintf("Operation %s is not allowed on a disabled key.", op))
		return
	// Expired and not-yet-valid keys may no longer wrap new keys.
	case wrap && exp != nil && now.After(*exp):
		kvFail(w, http.StatusForbidden, "Forbidden", "KeyExpired", fmt.Sprintf("Operation %s is not allowed on an expired key.", op))
		return
	case wrap && nbf != nil && now.Before(*nbf):
		kvFail(w, http.StatusForbidden, "Forbidden", "KeyNotYetValid", fmt.Sprintf("Operation %s is not allowed on a key that is not yet valid.", op))
		return
	case !slices.Contains(ops, op):
		kvFail(w, http.StatusForbidden, "Forbidden", "KeyOperationForbidden", fmt.Sprintf("Operation %s is not permitted on this key.", op))
		return
	case priv == nil:
		kvFail(w, http.StatusBadRequest, "BadParameter", "", fmt.Sprintf("Algorithm '%s' is not supported for key type '%s'.", in.Alg, v.kty))
		return
	case in.Alg != "RSA-OAEP-256" && in.Alg != "RSA-OAEP" && in.Alg != "RSA1_5":
		kvFail(w, http.StatusBadRequest, "BadParameter", "", fmt.Sprintf("Invalid algorithm '%s'.", in.Alg))
		return
	}
	data, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(in.Value, "="))
	if err != nil {
		kvFail(w, http.StatusBadRequest, "BadParameter", "", "Property 'value' is not a valid base64url string.")
		return
	}
	var out []byte
	switch in.Alg {
	case "RSA-OAEP-256":
		if wrap {
			out, err = rsa.EncryptOAEP(sha256.New(), rand.Reader, &priv.PublicKey, data, nil)
		} else {
			out, err = rsa.DecryptOAEP(sha256.New(), rand.Reader, priv, data, nil)
		}
	default:
		kvFail(w, http.StatusBadRequest, "BadParameter", "", fmt.Sprintf("Algorithm '%s' is not enabled on this vault.", in.Alg))
		return
	}
	if err != nil {
		kvFail(w, http.StatusBadRequest, "BadParameter", "", "The parameter 'value' is invalid for this operation.")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"kid":   fmt.Sprintf("https://%s/keys/%s/%s", r.Host, name, v.id),
		"value": b64(out),
	})
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func randHex(n int) string { return hex.EncodeToString(randBytes(n)) }

func uuidish() string {
	h := randHex(16)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
