// Package vaulttest is an in-process HashiCorp Vault test server that speaks
// the real Vault HTTP API for the Transit secrets engine: token auth through
// X-Vault-Token, per-token path policies, keys with versions,
// min_decryption_version, rotation, deletion, and the error bodies Vault
// gives. Go methods switch it into the faulty states cmkdb must classify
// (sealed, throttled, 5xx, stalled, dropped connections, revoked tokens).
//
// Only the official client (github.com/hashicorp/vault/api) is meant to
// talk to it; its shapes follow Vault 1.13+ (associated_data on AEAD keys).
package vaulttest

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cmkdb/cmkdb/internal/kmsserver/faults"
)

// Capabilities as Vault's policy language names them.
const (
	CapCreate = "create"
	CapRead   = "read"
	CapUpdate = "update"
	CapDelete = "delete"
	CapList   = "list"
	CapSudo   = "sudo"
	CapDeny   = "deny"
)

// Policy maps path patterns to capabilities, as a Vault ACL policy does. A
// pattern ending in "*" is a prefix match; the most specific (longest)
// matching pattern wins, and "deny" in it denies everything.
type Policy map[string][]string

// RootPolicy allows everything.
var RootPolicy = Policy{"*": {CapCreate, CapRead, CapUpdate, CapDelete, CapList, CapSudo}}

// TransitPolicy is the least privilege cmkdb needs on one key: encrypt,
// decrypt and read the key's metadata.
func TransitPolicy(mount, key string) Policy {
	return Policy{
		mount + "/encrypt/" + key: {CapUpdate},
		mount + "/decrypt/" + key: {CapUpdate},
		mount + "/keys/" + key:    {CapRead},
	}
}

func (p Policy) allows(path, capability string) bool {
	best, bestLen, found := []string(nil), -1, false
	for pat, caps := range p {
		var ok bool
		if strings.HasSuffix(pat, "*") {
			ok = strings.HasPrefix(path, strings.TrimSuffix(pat, "*"))
		} else {
			ok = path == pat
		}
		// An exact match beats any glob of the same length.
		l := len(pat)
		if !strings.HasSuffix(pat, "*") {
			l++
		}
		if ok && l > bestLen {
			best, bestLen, found = caps, l, true
		}
	}
	if !found {
		return false
	}
	for _, c := range best {
		if c == CapDeny {
			return false
		}
	}
	for _, c := range best {
		if c == capability {
			return true
		}
	}
	return false
}

// KeyVersion is one version of a transit key.
type keyVersion struct {
	created time.Time
	secret  []byte          // AES keys
	rsa     *rsa.PrivateKey // RSA keys
}

type key struct {
	name                 string
	typ                  string
	versions             map[int]*keyVersion
	latest               int
	minDecryptionVersion int
	minEncryptionVersion int
	deletionAllowed      bool
	exportable           bool
}

// KeySnapshot is an opaque copy of a key (Vault's transit/backup), used to
// bring a deleted or replaced key back with its material.
type KeySnapshot struct{ k *key }

func (k *key) clone() *key {
	c := *k
	c.versions = make(map[int]*keyVersion, len(k.versions))
	for n, v := range k.versions {
		vv := *v
		vv.secret = append([]byte(nil), v.secret...)
		c.versions[n] = &vv
	}
	return &c
}

// Fault is a failure the server injects into every /v1 request.
type Fault int

const (
	NoFault Fault = iota
	// Throttle answers 429, as a rate limit quota does.
	Throttle
	// Fail5xx answers 500.
	Fail5xx
	// Stall holds every request until the client gives up (or the fault
	// is cleared).
	Stall
	// Drop closes the connection without an answer.
	Drop
)

// Server is a Vault server with one Transit mount.
type Server struct {
	*httptest.Server
	// Faults are the switches every faithful server shares. Vault has no
	// per-permission denials here: a token's policy says what it may do.
	Faults *faults.Switches
	// Mount is the transit mount path ("transit").
	Mount string
	// RootToken is valid with RootPolicy.
	RootToken string

	mu       sync.Mutex
	keys     map[string]*key
	tokens   map[string]Policy
	sealed   bool
	drop     bool // Drop: not a shared fault
	requests int
	log      []Request
	now      func() time.Time
}

// Request is what the server records of each /v1 request (never the token
// or the body).
type Request struct {
	Method string
	Path   string
	// VaultRequest is the X-Vault-Request header the official client sends.
	VaultRequest string
	HasToken     bool
}

// Log returns the requests received so far.
func (s *Server) Log() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.log...)
}

// New starts a server with a transit mount at "transit" and a root token.
func New() *Server {
	s := &Server{
		Mount:     "transit",
		RootToken: "hvs.root-" + randHex(12),
		keys:      map[string]*key{},
		tokens:    map[string]Policy{},
		Faults:    &faults.Switches{},
		now:       time.Now,
	}
	s.tokens[s.RootToken] = RootPolicy
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// Close releases stalled requests and stops the server.
func (s *Server) Close() {
	s.Faults.Close()
	s.Server.CloseClientConnections()
	s.Server.Close()
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return fmt.Sprintf("%x", b)
}

// NewToken creates a token with the given policy and returns it.
func (s *Server) NewToken(p Policy) string {
	t := "hvs." + randHex(16)
	s.SetPolicy(t, p)
	return t
}

// SetPolicy (re)creates token with policy p.
func (s *Server) SetPolicy(token string, p Policy) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[token] = p
}

// RevokeToken makes token unknown: Vault then answers 403 permission denied
// to everything, including auth/token/lookup-self.
func (s *Server) RevokeToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tokens, token)
}

// Seal makes every request answer 503 "Vault is sealed".
func (s *Server) Seal() { s.mu.Lock(); s.sealed = true; s.mu.Unlock() }

// Unseal undoes Seal.
func (s *Server) Unseal() { s.mu.Lock(); s.sealed = false; s.mu.Unlock() }

// SetFault injects f into every following request (NoFault clears it and
// releases stalled requests).
func (s *Server) SetFault(f Fault) {
	s.Faults.Throttle(f == Throttle)
	fail := faults.None
	if f == Fail5xx {
		fail = faults.Internal
	}
	s.Faults.Fail(fail)
	s.Faults.Stall(f == Stall)
	s.mu.Lock()
	s.drop = f == Drop
	s.mu.Unlock()
}

// Requests returns how many /v1 requests the server has received.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// CreateKey creates a key of type typ ("aes256-gcm96", "aes128-gcm96",
// "rsa-2048"...) as POST transit/keys/:name does.
func (s *Server) CreateKey(name, typ string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.keys[name]; ok {
		return fmt.Errorf("key %q exists", name)
	}
	k, err := s.newKey(name, typ)
	if err != nil {
		return err
	}
	s.keys[name] = k
	return nil
}

// Rotate adds a new version to a key.
func (s *Server) Rotate(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[name]
	if !ok {
		return fmt.Errorf("no key %q", name)
	}
	return s.rotate(k)
}

// SetMinDecryptionVersion sets a key's min_decryption_version.
func (s *Server) SetMinDecryptionVersion(name string, v int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[name]
	if !ok {
		return fmt.Errorf("no key %q", name)
	}
	if v > k.latest {
		return fmt.Errorf("min_decryption_version %d beyond latest version %d", v, k.latest)
	}
	k.minDecryptionVersion = v
	return nil
}

// Snapshot copies a key with all its versions (transit/backup).
func (s *Server) Snapshot(name string) (*KeySnapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[name]
	if !ok {
		return nil, fmt.Errorf("no key %q", name)
	}
	return &KeySnapshot{k.clone()}, nil
}

// Restore puts a snapshot back under its name, replacing whatever key has
// that name now (transit/restore with force).
func (s *Server) Restore(snap *KeySnapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[snap.k.name] = snap.k.clone()
}

// DeleteKey removes a key regardless of deletion_allowed.
func (s *Server) DeleteKey(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.keys, name)
}

// KeyMaterial returns the secret bytes of every version of an AES key (so
// tests can check nothing leaks them).
func (s *Server) KeyMaterial(name string) [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[name]
	if !ok {
		return nil
	}
	var out [][]byte
	for _, v := range k.versions {
		if v.secret != nil {
			out = append(out, append([]byte(nil), v.secret...))
		}
	}
	return out
}

func (s *Server) newKey(name, typ string) (*key, error) {
	switch typ {
	case "":
		typ = "aes256-gcm96"
	case "aes256-gcm96", "aes128-gcm96", "rsa-2048", "rsa-3072", "rsa-4096":
	default:
		return nil, fmt.Errorf("unknown key type %q", typ)
	}
	k := &key{name: name, typ: typ, versions: map[int]*keyVersion{}, minDecryptionVersion: 1}
	if err := s.rotate(k); err != nil {
		return nil, err
	}
	return k, nil
}

func (s *Server) rotate(k *key) error {
	v := &keyVersion{created: s.now().UTC()}
	switch k.typ {
	case "aes256-gcm96":
		v.secret = make([]byte, 32)
		rand.Read(v.secret)
	case "aes128-gcm96":
		v.secret = make([]byte, 16)
		rand.Read(v.secret)
	default:
		bits, _ := strconv.Atoi(strings.TrimPrefix(k.typ, "rsa-"))
		pk, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			return err
		}
		v.rsa = pk
	}
	k.latest++
	k.versions[k.latest] = v
	return nil
}

// ---- HTTP ----

type apiError struct {
	status int
	msgs   []string
}

func errf(status int, format string, a ...any) *apiError {
	return &apiError{status: status, msgs: []string{fmt.Sprintf(format, a...)}}
}

var errPermissionDenied = &apiError{http.StatusForbidden, []string{"permission denied"}}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, e *apiError) {
	msgs := e.msgs
	if msgs == nil {
		msgs = []string{}
	}
	writeJSON(w, e.status, map[string]any{"errors": msgs})
}

func (s *Server) secret(data map[string]any) map[string]any {
	return map[string]any{
		"request_id":     randUUID(),
		"lease_id":       "",
		"renewable":      false,
		"lease_duration": 0,
		"data":           data,
		"wrap_info":      nil,
		"warnings":       nil,
		"auth":           nil,
		"mount_type":     "transit",
	}
}

func randUUID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	s.log = append(s.log, Request{Method: r.Method, Path: r.URL.Path, VaultRequest: r.Header.Get("X-Vault-Request"), HasToken: r.Header.Get("X-Vault-Token") != ""})
	drop := s.drop
	s.mu.Unlock()

	// A slow server: a stalled request is answered once the stall is
	// lifted, if the client still waits.
	if !s.Faults.WaitStall(r.Context()) {
		// The client gave up or the server is closing: a stalled
		// request gets no answer at all, not an empty 200.
		panic(http.ErrAbortHandler)
	}
	s.mu.Lock()
	sealed := s.sealed
	s.mu.Unlock()
	st := s.Faults.State()
	switch {
	case drop:
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				c.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	case st.Throttled:
		writeErr(w, errf(http.StatusTooManyRequests, "request path %q: rate limit quota exceeded", strings.TrimPrefix(r.URL.Path, "/v1/")))
		return
	case st.Failure != faults.None:
		writeErr(w, errf(http.StatusInternalServerError, "internal error"))
		return
	}
	if !strings.HasPrefix(r.URL.Path, "/v1/") {
		writeErr(w, &apiError{status: http.StatusNotFound})
		return
	}
	if sealed {
		writeErr(w, errf(http.StatusServiceUnavailable, "Vault is sealed"))
		return
	}
	path := strings.TrimPrefix(r.URL.Path, "/v1/")
	if r.Method == http.MethodGet && r.URL.Query().Get("list") == "true" {
		r.Method = "LIST"
	}
	var body map[string]any
	if r.Body != nil && (r.Method == http.MethodPost || r.Method == http.MethodPut) {
		dec := json.NewDecoder(r.Body)
		dec.UseNumber()
		if err := dec.Decode(&body); err != nil && err.Error() != "EOF" {
			writeErr(w, errf(http.StatusBadRequest, "failed to parse JSON input: %v", err))
			return
		}
	}
	if body == nil {
		body = map[string]any{}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	policy, ok := s.tokens[r.Header.Get("X-Vault-Token")]
	if !ok {
		writeErr(w, errPermissionDenied)
		return
	}
	status, resp, aerr := s.route(policy, r.Method, path, body)
	if aerr != nil {
		writeErr(w, aerr)
		return
	}
	if resp == nil {
		w.WriteHeader(status)
		return
	}
	writeJSON(w, status, resp)
}

// route runs one request with s.mu held.
func (s *Server) route(policy Policy, method, path string, body map[string]any) (int, map[string]any, *apiError) {
	write := method == http.MethodPost || method == http.MethodPut
	if path == "auth/token/lookup-self" {
		// The default policy grants this to every valid token.
		if method != http.MethodGet {
			return 0, nil, errf(http.StatusMethodNotAllowed, "unsupported operation")
		}
		return http.StatusOK, s.secret(map[string]any{
			"accessor": "acc", "display_name": "token", "policies": []string{"default"},
			"renewable": false, "ttl": 0, "type": "service",
		}), nil
	}
	prefix := s.Mount + "/"
	if !strings.HasPrefix(path, prefix) {
		if !policy.allows(path, capFor(method)) {
			return 0, nil, errPermissionDenied
		}
		return 0, nil, errf(http.StatusNotFound, "no handler for route %q. route entry not found.", path)
	}
	rest := strings.TrimPrefix(path, prefix)
	parts := strings.Split(rest, "/")
	switch {
	case len(parts) == 2 && parts[0] == "encrypt" && write:
		return s.encrypt(policy, path, parts[1], body)
	case len(parts) == 2 && parts[0] == "decrypt" && write:
		if !policy.allows(path, CapUpdate) {
			return 0, nil, errPermissionDenied
		}
		return s.decrypt(parts[1], body)
	case len(parts) == 2 && parts[0] == "keys":
		name := parts[1]
		switch {
		case method == http.MethodGet:
			if !policy.allows(path, CapRead) {
				return 0, nil, errPermissionDenied
			}
			k, ok := s.keys[name]
			if !ok {
				return 0, nil, &apiError{status: http.StatusNotFound}
			}
			return http.StatusOK, s.secret(k.describe()), nil
		case write:
			_, exists := s.keys[name]
			c := CapUpdate
			if !exists {
				c = CapCreate
			}
			if !policy.allows(path, c) {
				return 0, nil, errPermissionDenied
			}
			if exists {
				return http.StatusNoContent, nil, nil
			}
			typ, _ := body["type"].(string)
			k, err := s.newKey(name, typ)
			if err != nil {
				return 0, nil, errf(http.StatusBadRequest, "%v", err)
			}
			if b, ok := body["exportable"].(bool); ok {
				k.exportable = b
			}
			s.keys[name] = k
			return http.StatusNoContent, nil, nil
		case method == http.MethodDelete:
			if !policy.allows(path, CapDelete) {
				return 0, nil, errPermissionDenied
			}
			k, ok := s.keys[name]
			if !ok {
				return http.StatusNoContent, nil, nil
			}
			if !k.deletionAllowed {
				return 0, nil, errf(http.StatusBadRequest, "deletion is not allowed for this key")
			}
			delete(s.keys, name)
			return http.StatusNoContent, nil, nil
		}
	case len(parts) == 3 && parts[0] == "keys" && parts[2] == "rotate" && write:
		if !policy.allows(path, CapUpdate) {
			return 0, nil, errPermissionDenied
		}
		k, ok := s.keys[parts[1]]
		if !ok {
			return 0, nil, errf(http.StatusBadRequest, "key not found")
		}
		if err := s.rotate(k); err != nil {
			return 0, nil, errf(http.StatusInternalServerError, "%v", err)
		}
		return http.StatusOK, s.secret(k.describe()), nil
	case len(parts) == 3 && parts[0] == "keys" && parts[2] == "config" && write:
		if !policy.allows(path, CapUpdate) {
			return 0, nil, errPermissionDenied
		}
		k, ok := s.keys[parts[1]]
		if !ok {
			return 0, nil, errf(http.StatusBadRequest, "no existing key named %s could be found", parts[1])
		}
		return s.config(k, body)
	}
	if !policy.allows(path, capFor(method)) {
		return 0, nil, errPermissionDenied
	}
	return 0, nil, errf(http.StatusMethodNotAllowed, "unsupported operation")
}

func capFor(method string) string {
	switch method {
	case http.MethodGet:
		return CapRead
	case http.MethodDelete:
		return CapDelete
	case "LIST":
		return CapList
	}
	return CapUpdate
}

func (k *key) describe() map[string]any {
	keys := map[string]any{}
	for n, v := range k.versions {
		if v.rsa != nil {
			der, _ := x509.MarshalPKIXPublicKey(&v.rsa.PublicKey)
			keys[strconv.Itoa(n)] = map[string]any{
				"creation_time": v.created.Format(time.RFC3339Nano),
				"name":          k.typ,
				"public_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
			}
			continue
		}
		keys[strconv.Itoa(n)] = v.created.Unix()
	}
	rsaKey := strings.HasPrefix(k.typ, "rsa-")
	return map[string]any{
		"name":                   k.name,
		"type":                   k.typ,
		"keys":                   keys,
		"latest_version":         k.latest,
		"min_available_version":  0,
		"min_decryption_version": k.minDecryptionVersion,
		"min_encryption_version": k.minEncryptionVersion,
		"deletion_allowed":       k.deletionAllowed,
		"exportable":             k.exportable,
		"allow_plaintext_backup": false,
		"derived":                false,
		"imported_key":           false,
		"auto_rotate_period":     0,
		"supports_encryption":    true,
		"supports_decryption":    true,
		"supports_derivation":    !rsaKey,
		"supports_signing":       rsaKey,
	}
}

func intParam(body map[string]any, name string) (int, bool, *apiError) {
	v, ok := body[name]
	if !ok {
		return 0, false, nil
	}
	switch x := v.(type) {
	case json.Number:
		n, err := strconv.Atoi(x.String())
		if err != nil {
			return 0, false, errf(http.StatusBadRequest, "error converting input %v for field %q: invalid syntax", x, name)
		}
		return n, true, nil
	case string:
		n, err := strconv.Atoi(x)
		if err != nil {
			return 0, false, errf(http.StatusBadRequest, "error converting input %v for field %q: invalid syntax", x, name)
		}
		return n, true, nil
	}
	return 0, false, errf(http.StatusBadRequest, "error converting input for field %q", name)
}

func (s *Server) config(k *key, body map[string]any) (int, map[string]any, *apiError) {
	minDec, hasDec, aerr := intParam(body, "min_decryption_version")
	if aerr != nil {
		return 0, nil, aerr
	}
	minEnc, hasEnc, aerr := intParam(body, "min_encryption_version")
	if aerr != nil {
		return 0, nil, aerr
	}
	if hasDec {
		if minDec > k.latest {
			return 0, nil, errf(http.StatusBadRequest, "cannot set min decryption version to a value greater than the latest version")
		}
		if minDec <= 0 {
			minDec = 1
		}
	}
	if hasEnc && minEnc > k.latest {
		return 0, nil, errf(http.StatusBadRequest, "cannot set min encryption version to a value greater than the latest version")
	}
	if hasDec {
		k.minDecryptionVersion = minDec
	}
	if hasEnc {
		k.minEncryptionVersion = minEnc
	}
	if v, ok := body["deletion_allowed"].(bool); ok {
		k.deletionAllowed = v
	}
	if v, ok := body["exportable"].(bool); ok {
		if k.exportable && !v {
			return 0, nil, errf(http.StatusBadRequest, "exportable key cannot be made non-exportable")
		}
		k.exportable = v
	}
	return http.StatusOK, s.secret(k.describe()), nil
}

func aeadFor(k *key, v *keyVersion) (cipher.AEAD, error) {
	if v.secret == nil {
		return nil, nil
	}
	b, err := aes.NewCipher(v.secret)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func b64Param(body map[string]any, name string) ([]byte, bool, *apiError) {
	v, ok := body[name]
	if !ok {
		return nil, false, nil
	}
	str, _ := v.(string)
	if str == "" {
		return nil, false, nil
	}
	b, err := base64.StdEncoding.DecodeString(str)
	if err != nil {
		return nil, false, errf(http.StatusBadRequest, "failed to base64-decode %s", name)
	}
	return b, true, nil
}

func (s *Server) encrypt(policy Policy, path, name string, body map[string]any) (int, map[string]any, *apiError) {
	k, ok := s.keys[name]
	if !ok {
		// Vault upserts the key when the token may create it.
		if !policy.allows(path, CapCreate) {
			return 0, nil, errPermissionDenied
		}
		nk, err := s.newKey(name, "")
		if err != nil {
			return 0, nil, errf(http.StatusInternalServerError, "%v", err)
		}
		s.keys[name], k = nk, nk
	} else if !policy.allows(path, CapUpdate) {
		return 0, nil, errPermissionDenied
	}
	ptB64, _ := body["plaintext"].(string)
	if _, present := body["plaintext"]; !present {
		return 0, nil, errf(http.StatusBadRequest, "missing plaintext to encrypt")
	}
	pt, err := base64.StdEncoding.DecodeString(ptB64)
	if err != nil {
		return 0, nil, errf(http.StatusBadRequest, "failed to base64-decode plaintext")
	}
	if _, hasCtx := body["context"]; hasCtx {
		if c, _ := body["context"].(string); c != "" {
			return 0, nil, errf(http.StatusBadRequest, "key was not created as a derived key, but a context was provided")
		}
	}
	aad, hasAAD, aerr := b64Param(body, "associated_data")
	if aerr != nil {
		return 0, nil, aerr
	}
	ver := k.latest
	if kv, has, aerr := intParam(body, "key_version"); aerr != nil {
		return 0, nil, aerr
	} else if has && kv != 0 {
		ver = kv
	}
	if ver > k.latest || ver < k.minEncryptionVersion || k.versions[ver] == nil {
		return 0, nil, errf(http.StatusBadRequest, "requested version for encryption is less than the minimum encryption key version")
	}
	v := k.versions[ver]
	var ct []byte
	if v.rsa != nil {
		if hasAAD {
			return 0, nil, errf(http.StatusBadRequest, "'associated_data' provided for non-AEAD cipher suite %s", k.typ)
		}
		ct, err = rsa.EncryptOAEP(sha256.New(), rand.Reader, &v.rsa.PublicKey, pt, nil)
		if err != nil {
			return 0, nil, errf(http.StatusBadRequest, "failed to RSA encrypt the plaintext: %v", err)
		}
	} else {
		a, err := aeadFor(k, v)
		if err != nil {
			return 0, nil, errf(http.StatusInternalServerError, "%v", err)
		}
		nonce := make([]byte, a.NonceSize())
		rand.Read(nonce)
		ct = a.Seal(nonce, nonce, pt, aad)
	}
	return http.StatusOK, s.secret(map[string]any{
		"ciphertext":  fmt.Sprintf("vault:v%d:%s", ver, base64.StdEncoding.EncodeToString(ct)),
		"key_version": ver,
	}), nil
}

// ErrTooOld is Vault's keysutil.ErrTooOld.
const ErrTooOld = "ciphertext or signature version is disallowed by policy (too old)"

func (s *Server) decrypt(name string, body map[string]any) (int, map[string]any, *apiError) {
	value, _ := body["ciphertext"].(string)
	if value == "" {
		return 0, nil, errf(http.StatusBadRequest, "missing ciphertext to decrypt")
	}
	k, ok := s.keys[name]
	if !ok {
		return 0, nil, errf(http.StatusBadRequest, "encryption key not found")
	}
	aad, hasAAD, aerr := b64Param(body, "associated_data")
	if aerr != nil {
		return 0, nil, aerr
	}
	// keysutil.Policy.Decrypt, step by step.
	if !strings.HasPrefix(value, "vault:v") {
		return 0, nil, errf(http.StatusBadRequest, "invalid ciphertext: no prefix")
	}
	split := strings.SplitN(strings.TrimPrefix(value, "vault:v"), ":", 2)
	if len(split) != 2 {
		return 0, nil, errf(http.StatusBadRequest, "invalid ciphertext: wrong number of fields")
	}
	ver, err := strconv.Atoi(split[0])
	if err != nil {
		return 0, nil, errf(http.StatusBadRequest, "invalid ciphertext: version number could not be decoded")
	}
	if ver == 0 {
		// Compatibility with the first implementation, where versions
		// started at zero.
		ver = 1
	}
	if ver > k.latest {
		return 0, nil, errf(http.StatusBadRequest, "invalid ciphertext: version is too new")
	}
	if k.minDecryptionVersion > 0 && ver < k.minDecryptionVersion {
		return 0, nil, errf(http.StatusBadRequest, ErrTooOld)
	}
	ct, err := base64.StdEncoding.DecodeString(split[1])
	if err != nil {
		return 0, nil, errf(http.StatusBadRequest, "invalid ciphertext: could not decode base64")
	}
	v := k.versions[ver]
	var pt []byte
	if v.rsa != nil {
		if hasAAD {
			return 0, nil, errf(http.StatusBadRequest, "'associated_data' provided for non-AEAD cipher suite %s", k.typ)
		}
		pt, err = rsa.DecryptOAEP(sha256.New(), rand.Reader, v.rsa, ct, nil)
		if err != nil {
			return 0, nil, errf(http.StatusBadRequest, "failed to RSA decrypt the ciphertext: %v", err)
		}
	} else {
		a, err := aeadFor(k, v)
		if err != nil {
			return 0, nil, errf(http.StatusInternalServerError, "%v", err)
		}
		if len(ct) < a.NonceSize() {
			return 0, nil, errf(http.StatusBadRequest, "invalid ciphertext length")
		}
		pt, err = a.Open(nil, ct[:a.NonceSize()], ct[a.NonceSize():], aad)
		if err != nil {
			return 0, nil, errf(http.StatusBadRequest, "cipher: message authentication failed")
		}
	}
	return http.StatusOK, s.secret(map[string]any{"plaintext": base64.StdEncoding.EncodeToString(pt)}), nil
}

// KeyNames lists the keys, sorted.
func (s *Server) KeyNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for n := range s.keys {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
