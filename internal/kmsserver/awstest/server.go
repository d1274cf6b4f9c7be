// Package awstest is a faithful in-process AWS KMS server for tests.
//
// It speaks the AWS JSON 1.1 protocol the official SDK uses (POST /,
// X-Amz-Target: TrentService.<Op>, Content-Type application/x-amz-json-1.1),
// verifies every request's SigV4 signature against the secret it was
// configured with, and answers with AWS's error bodies
// ({"__type":"DisabledException","message":"..."}). Ciphertext blobs are
// its own authenticated format: AES-256-GCM under the key's backing material,
// binding the key id, the backing key version and the encryption context, so
// a tampered blob or a different context gives InvalidCiphertextException.
//
// Test controls (Go methods) put keys in any state AWS can express and inject
// the faults a client must classify: access denied, throttling, internal
// errors, and a server that never answers.
package awstest

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cmkdb/cmkdb/internal/kmsserver/faults"
)

// Key states, as AWS names them (types.KeyState).
const (
	StateEnabled         = "Enabled"
	StateDisabled        = "Disabled"
	StatePendingDeletion = "PendingDeletion"
	StatePendingImport   = "PendingImport"
	StateUnavailable     = "Unavailable"
	StateCreating        = "Creating"
)

// DefaultRegion and DefaultAccount are used when Options leaves them empty.
const (
	DefaultRegion  = "us-east-1"
	DefaultAccount = "111122223333"
)

// Options configures a Server.
type Options struct {
	Region    string
	AccountID string
	// Credentials maps access key ids to secrets. Requests signed by an
	// unknown access key get UnrecognizedClientException, and requests
	// signed with the wrong secret get InvalidSignatureException.
	Credentials map[string]string
}

// Server is an in-process AWS KMS endpoint.
type Server struct {
	// Faults are the switches every faithful server shares; permissions
	// are IAM actions ("kms:Decrypt"...).
	Faults *faults.Switches

	URL     string
	Region  string
	Account string

	srv *httptest.Server

	mu     sync.Mutex
	creds  map[string]string
	keys   map[string]*key // by key id
	calls  map[string]int
	agents map[string]bool
}

type key struct {
	id, arn     string
	state       string
	usage, spec string
	description string
	created     time.Time
	deletion    time.Time
	hidden      bool // test control: answers as if it did not exist
	// material[i] is backing key version i; the last one is current.
	material  [][]byte
	rotations []time.Time
}

// NewServer starts a server; it is closed when the test ends if the caller
// registers s.Close with t.Cleanup.
func NewServer(o Options) *Server {
	s := &Server{
		Region:  o.Region,
		Account: o.AccountID,
		creds:   map[string]string{},
		keys:    map[string]*key{},
		Faults:  &faults.Switches{},
		calls:   map[string]int{},
		agents:  map[string]bool{},
	}
	if s.Region == "" {
		s.Region = DefaultRegion
	}
	if s.Account == "" {
		s.Account = DefaultAccount
	}
	for k, v := range o.Credentials {
		s.creds[k] = v
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	return s
}

// Close releases any stalled request and stops the server.
func (s *Server) Close() {
	s.Faults.Close()
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// ---- test controls -------------------------------------------------------

// SetCredentials sets (or, with secret "", removes) an access key.
func (s *Server) SetCredentials(accessKeyID, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if secret == "" {
		delete(s.creds, accessKeyID)
		return
	}
	s.creds[accessKeyID] = secret
}

// CreateSymmetricKey creates an Enabled SYMMETRIC_DEFAULT ENCRYPT_DECRYPT key
// and returns its id and ARN.
func (s *Server) CreateSymmetricKey() (id, arn string) {
	k := s.createKey("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", "")
	return k.id, k.arn
}

// CreateKeyWithSpec creates a key of another spec/usage (RSA_2048 /
// SIGN_VERIFY...). Such keys refuse symmetric Encrypt and Decrypt.
func (s *Server) CreateKeyWithSpec(spec, usage string) (id, arn string) {
	k := s.createKey(spec, usage, "")
	return k.id, k.arn
}

// SetKeyState sets a key's state (StateEnabled, StateDisabled,
// StatePendingDeletion...). PendingDeletion sets a deletion date 7 days out.
func (s *Server) SetKeyState(keyID, state string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.lookup(keyID, true)
	if k == nil {
		return fmt.Errorf("awstest: no key %q", keyID)
	}
	k.state = state
	k.deletion = time.Time{}
	if state == StatePendingDeletion {
		k.deletion = time.Now().Add(7 * 24 * time.Hour).UTC()
	}
	return nil
}

// SetKeySpec changes a key's spec and usage in place. AWS never does this; it
// stands for a configuration that names a key of the wrong type while
// keeping the material, so a test can switch back.
func (s *Server) SetKeySpec(keyID, spec, usage string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.lookup(keyID, true)
	if k == nil {
		return fmt.Errorf("awstest: no key %q", keyID)
	}
	k.spec, k.usage = spec, usage
	return nil
}

// HideKey makes a key answer NotFoundException (as after deletion) or, with
// hidden false, brings it back with its material.
func (s *Server) HideKey(keyID string, hidden bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.lookup(keyID, true)
	if k == nil {
		return fmt.Errorf("awstest: no key %q", keyID)
	}
	k.hidden = hidden
	return nil
}

// RotateKey adds a backing key version (like RotateKeyOnDemand). Blobs made
// under older versions keep decrypting.
func (s *Server) RotateKey(keyID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.lookup(keyID, true)
	if k == nil {
		return fmt.Errorf("awstest: no key %q", keyID)
	}
	k.material = append(k.material, newMaterial())
	k.rotations = append(k.rotations, time.Now().UTC())
	return nil
}

// KeyMaterial returns copies of every backing version of a key (for leak
// checks).
func (s *Server) KeyMaterial(keyID string) [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.lookup(keyID, true)
	if k == nil {
		return nil
	}
	var out [][]byte
	for _, m := range k.material {
		out = append(out, bytes.Clone(m))
	}
	return out
}

// DenyAction makes every request for action ("kms:Decrypt", "kms:Encrypt",
// "kms:DescribeKey"...) fail with AccessDeniedException; deny false lifts it.
func (s *Server) DenyAction(action string, deny bool) { s.Faults.Deny(action, deny) }

// Throttle makes every request fail with 400 ThrottlingException.
func (s *Server) Throttle(on bool) { s.Faults.Throttle(on) }

// Fail5xx makes every request fail with 500 KMSInternalException.
func (s *Server) Fail5xx(on bool) { s.Faults.Fail(failure(on)) }

// Stall makes every request hang until the client gives up (or Stall(false)).
func (s *Server) Stall(on bool) { s.Faults.Stall(on) }

// Reset lifts every fault (denials, throttling, 5xx, stall).
func (s *Server) Reset() { s.Faults.Reset() }

func failure(on bool) faults.Failure {
	if on {
		return faults.Internal
	}
	return faults.None
}

// Calls returns how many signed requests reached operation op
// ("Decrypt"...), whatever their outcome.
func (s *Server) Calls(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

// UserAgents returns the User-Agent of every signed request seen so far.
func (s *Server) UserAgents() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for a := range s.agents {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// ---- protocol ------------------------------------------------------------

type apiError struct {
	status int
	code   string
	msg    string
}

func errf(status int, code, format string, a ...any) *apiError {
	return &apiError{status, code, fmt.Sprintf(format, a...)}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-Requestid", newUUID())
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.status, map[string]string{"__type": e.code, "message": e.msg})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeErr(w, errf(400, "SerializationException", "could not read body"))
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/" {
		writeErr(w, errf(404, "UnknownOperationException", ""))
		return
	}
	target := r.Header.Get("X-Amz-Target")
	op, ok := strings.CutPrefix(target, "TrentService.")
	if !ok {
		writeErr(w, errf(400, "UnknownOperationException", ""))
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-amz-json-1.1") {
		writeErr(w, errf(400, "SerializationException", "Unexpected Content-Type %q", ct))
		return
	}
	if e := s.verifySigV4(r, body); e != nil {
		writeErr(w, e)
		return
	}

	s.mu.Lock()
	s.calls[op]++
	s.agents[r.Header.Get("User-Agent")] = true
	s.mu.Unlock()
	if !s.Faults.WaitStall(r.Context()) {
		// The client gave up or the server is closing: a stalled
		// request gets no answer at all, not an empty 200.
		panic(http.ErrAbortHandler)
	}
	st := s.Faults.State()
	if st.Throttled {
		writeErr(w, errf(400, "ThrottlingException", "Rate exceeded"))
		return
	}
	if st.Failure != faults.None {
		writeErr(w, errf(500, "KMSInternalException", "The request was rejected because an internal exception occurred. The request can be retried."))
		return
	}

	var out any
	var e *apiError
	switch op {
	case "Encrypt":
		out, e = s.encrypt(body)
	case "Decrypt":
		out, e = s.decrypt(body)
	case "DescribeKey":
		out, e = s.describeKey(body)
	case "GenerateDataKey":
		out, e = s.generateDataKey(body)
	case "CreateKey":
		out, e = s.createKeyOp(body)
	case "ScheduleKeyDeletion":
		out, e = s.scheduleKeyDeletion(body)
	case "CancelKeyDeletion":
		out, e = s.cancelKeyDeletion(body)
	case "EnableKey":
		out, e = s.setEnabled(body, true)
	case "DisableKey":
		out, e = s.setEnabled(body, false)
	case "RotateKeyOnDemand":
		out, e = s.rotateOnDemand(body)
	case "ListKeyRotations":
		out, e = s.listKeyRotations(body)
	default:
		e = errf(400, "UnknownOperationException", "")
	}
	if e != nil {
		writeErr(w, e)
		return
	}
	writeJSON(w, 200, out)
}

// verifySigV4 recomputes the request's AWS Signature Version 4 with the
// secret of the access key it names.
func (s *Server) verifySigV4(r *http.Request, body []byte) *apiError {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return errf(400, "MissingAuthenticationTokenException", "Missing Authentication Token")
	}
	const algo = "AWS4-HMAC-SHA256"
	rest, ok := strings.CutPrefix(auth, algo+" ")
	if !ok {
		return errf(400, "IncompleteSignatureException", "Unsupported signing algorithm")
	}
	fields := map[string]string{}
	for _, part := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return errf(400, "IncompleteSignatureException", "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders'.")
		}
		fields[k] = v
	}
	cred, signed, sig := fields["Credential"], fields["SignedHeaders"], fields["Signature"]
	if cred == "" || signed == "" || sig == "" {
		return errf(400, "IncompleteSignatureException", "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders'.")
	}
	scope := strings.Split(cred, "/")
	if len(scope) != 5 || scope[4] != "aws4_request" {
		return errf(400, "IncompleteSignatureException", "Credential should be scoped to a valid region.")
	}
	akid, date, region, service := scope[0], scope[1], scope[2], scope[3]
	s.mu.Lock()
	secret, known := s.creds[akid]
	s.mu.Unlock()
	if !known {
		return errf(400, "UnrecognizedClientException", "The security token included in the request is invalid.")
	}
	if service != "kms" {
		return errf(400, "InvalidSignatureException", "Credential should be scoped to correct service: 'kms'.")
	}
	if region != s.Region {
		return errf(400, "InvalidSignatureException", "Credential should be scoped to a valid region.")
	}
	amzDate := r.Header.Get("X-Amz-Date")
	t, err := time.Parse("20060102T150405Z", amzDate)
	if err != nil || !strings.HasPrefix(amzDate, date) {
		return errf(400, "IncompleteSignatureException", "Date must be in ISO-8601 'basic format'.")
	}
	if d := time.Since(t); d > 15*time.Minute || d < -15*time.Minute {
		return errf(400, "InvalidSignatureException", "Signature expired: %s is now earlier than %s", amzDate, time.Now().UTC().Add(-15*time.Minute).Format("20060102T150405Z"))
	}

	names := strings.Split(signed, ";")
	if !sort.StringsAreSorted(names) || !contains(names, "host") {
		return errf(400, "InvalidSignatureException", "'Host' must be a signed header.")
	}
	var ch strings.Builder
	for _, n := range names {
		var vals []string
		switch n {
		case "host":
			vals = []string{r.Host}
		case "content-length":
			vals = r.Header.Values("Content-Length")
			if len(vals) == 0 {
				vals = []string{strconv.Itoa(len(body))}
			}
		default:
			vals = r.Header.Values(n)
		}
		for i, v := range vals {
			vals[i] = strings.Join(strings.Fields(v), " ")
		}
		ch.WriteString(n + ":" + strings.Join(vals, ",") + "\n")
	}
	payload := sha256.Sum256(body)
	canonical := strings.Join([]string{
		r.Method,
		canonicalURI(r.URL.EscapedPath()),
		canonicalQuery(r),
		ch.String(),
		signed,
		hex.EncodeToString(payload[:]),
	}, "\n")
	crh := sha256.Sum256([]byte(canonical))
	scopeStr := strings.Join(scope[1:], "/")
	sts := algo + "\n" + amzDate + "\n" + scopeStr + "\n" + hex.EncodeToString(crh[:])
	k := hmacSHA256([]byte("AWS4"+secret), date)
	k = hmacSHA256(k, region)
	k = hmacSHA256(k, service)
	k = hmacSHA256(k, "aws4_request")
	want := hex.EncodeToString(hmacSHA256(k, sts))
	if !hmac.Equal([]byte(want), []byte(sig)) {
		return errf(400, "InvalidSignatureException", "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.")
	}
	return nil
}

func canonicalURI(p string) string {
	if p == "" {
		return "/"
	}
	return p
}

func canonicalQuery(r *http.Request) string {
	q := r.URL.Query()
	var parts []string
	for k, vs := range q {
		for _, v := range vs {
			parts = append(parts, uriEncode(k)+"="+uriEncode(v))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, "&")
}

func uriEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func hmacSHA256(k []byte, data string) []byte {
	m := hmac.New(sha256.New, k)
	m.Write([]byte(data))
	return m.Sum(nil)
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// ---- keys ----------------------------------------------------------------

func newUUID() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func newMaterial() []byte {
	m := make([]byte, 32)
	rand.Read(m)
	return m
}

func (s *Server) createKey(spec, usage, desc string) *key {
	id := newUUID()
	k := &key{
		id:          id,
		arn:         fmt.Sprintf("arn:aws:kms:%s:%s:key/%s", s.Region, s.Account, id),
		state:       StateEnabled,
		spec:        spec,
		usage:       usage,
		description: desc,
		created:     time.Now().UTC(),
		material:    [][]byte{newMaterial()},
	}
	s.mu.Lock()
	s.keys[id] = k
	s.mu.Unlock()
	return k
}

// lookup resolves a key id or key ARN. Caller holds s.mu.
func (s *Server) lookup(keyID string, evenHidden bool) *key {
	id := keyID
	if strings.HasPrefix(keyID, "arn:") {
		prefix := fmt.Sprintf("arn:aws:kms:%s:%s:key/", s.Region, s.Account)
		rest, ok := strings.CutPrefix(keyID, prefix)
		if !ok {
			return nil
		}
		id = rest
	}
	k := s.keys[id]
	if k == nil || (k.hidden && !evenHidden) {
		return nil
	}
	return k
}

func (s *Server) arnFor(keyID string) string {
	if strings.HasPrefix(keyID, "arn:") {
		return keyID
	}
	return fmt.Sprintf("arn:aws:kms:%s:%s:key/%s", s.Region, s.Account, keyID)
}

// use resolves the key of a request for action, checking permissions and
// the key's state as AWS does for cryptographic operations. Caller holds
// s.mu.
func (s *Server) use(action, keyID string, crypto bool) (*key, *apiError) {
	if s.Faults.Denied(action) {
		return nil, errf(400, "AccessDeniedException",
			"User: arn:aws:iam::%s:user/cmkdb is not authorized to perform: %s on resource: %s because no identity-based policy allows the %s action",
			s.Account, action, s.arnFor(keyID), action)
	}
	if keyID == "" {
		return nil, errf(400, "ValidationException", "1 validation error detected: Value null at 'keyId' failed to satisfy constraint: Member must not be null")
	}
	k := s.lookup(keyID, false)
	if k == nil {
		return nil, errf(400, "NotFoundException", "Key '%s' does not exist", s.arnFor(keyID))
	}
	if !crypto {
		return k, nil
	}
	switch k.state {
	case StateEnabled:
	case StateDisabled:
		return nil, errf(400, "DisabledException", "%s is disabled.", k.arn)
	case StatePendingDeletion:
		return nil, errf(400, "KMSInvalidStateException", "%s is pending deletion.", k.arn)
	default:
		return nil, errf(400, "KMSInvalidStateException", "%s is %s.", k.arn, k.state)
	}
	if k.usage != "ENCRYPT_DECRYPT" || k.spec != "SYMMETRIC_DEFAULT" {
		return nil, errf(400, "InvalidKeyUsageException", "You cannot use the key %s with the SYMMETRIC_DEFAULT encryption algorithm. Its key spec is %s and its key usage is %s.", k.arn, k.spec, k.usage)
	}
	return k, nil
}

func decode(body []byte, v any) *apiError {
	if err := json.Unmarshal(body, v); err != nil {
		return errf(400, "SerializationException", "Start of structure or map found where not expected.")
	}
	return nil
}

// ---- ciphertext blobs ----------------------------------------------------

const blobMagic = 0x01

// blob: magic | len(id) | id | version (uint32) | nonce (12) | sealed
func header(id string, version uint32) []byte {
	h := []byte{blobMagic, byte(len(id))}
	h = append(h, id...)
	return binary.BigEndian.AppendUint32(h, version)
}

func contextAAD(hdr []byte, ec map[string]string) []byte {
	aad := bytes.Clone(hdr)
	keys := make([]string, 0, len(ec))
	for k := range ec {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		aad = binary.BigEndian.AppendUint32(aad, uint32(len(k)))
		aad = append(aad, k...)
		aad = binary.BigEndian.AppendUint32(aad, uint32(len(ec[k])))
		aad = append(aad, ec[k]...)
	}
	return aad
}

func gcm(material []byte) cipher.AEAD {
	b, err := aes.NewCipher(material)
	if err != nil {
		panic(err)
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		panic(err)
	}
	return a
}

func seal(k *key, pt []byte, ec map[string]string) []byte {
	v := uint32(len(k.material) - 1)
	hdr := header(k.id, v)
	nonce := make([]byte, 12)
	rand.Read(nonce)
	out := append(bytes.Clone(hdr), nonce...)
	return gcm(k.material[v]).Seal(out, nonce, pt, contextAAD(hdr, ec))
}

var errBlob = errors.New("bad blob")

// parseBlob returns the key id and the rest of a blob.
func parseBlob(b []byte) (id string, version uint32, nonce, sealed, hdr []byte, err error) {
	if len(b) < 2 || b[0] != blobMagic {
		return "", 0, nil, nil, nil, errBlob
	}
	n := int(b[1])
	if len(b) < 2+n+4+12+16 {
		return "", 0, nil, nil, nil, errBlob
	}
	id = string(b[2 : 2+n])
	version = binary.BigEndian.Uint32(b[2+n:])
	hdr = b[:2+n+4]
	nonce = b[2+n+4 : 2+n+4+12]
	sealed = b[2+n+4+12:]
	return id, version, nonce, sealed, hdr, nil
}

// ---- operations ----------------------------------------------------------

func invalidCiphertext() *apiError {
	return errf(400, "InvalidCiphertextException", "")
}

func (s *Server) encrypt(body []byte) (any, *apiError) {
	var in struct {
		KeyId               string
		Plaintext           []byte
		EncryptionContext   map[string]string
		EncryptionAlgorithm string
	}
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	if len(in.Plaintext) == 0 || len(in.Plaintext) > 4096 {
		return nil, errf(400, "ValidationException", "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: Member must have length less than or equal to 4096 and greater than or equal to 1")
	}
	if in.EncryptionAlgorithm != "" && in.EncryptionAlgorithm != "SYMMETRIC_DEFAULT" {
		return nil, errf(400, "InvalidKeyUsageException", "The encryption algorithm %s is not valid for this key.", in.EncryptionAlgorithm)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k, e := s.use("kms:Encrypt", in.KeyId, true)
	if e != nil {
		return nil, e
	}
	return map[string]any{
		"CiphertextBlob":      seal(k, in.Plaintext, in.EncryptionContext),
		"KeyId":               k.arn,
		"EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
	}, nil
}

func (s *Server) decrypt(body []byte) (any, *apiError) {
	var in struct {
		KeyId               string
		CiphertextBlob      []byte
		EncryptionContext   map[string]string
		EncryptionAlgorithm string
	}
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	if len(in.CiphertextBlob) == 0 || len(in.CiphertextBlob) > 6144 {
		return nil, errf(400, "ValidationException", "1 validation error detected: Value at 'ciphertextBlob' failed to satisfy constraint: Member must have length less than or equal to 6144 and greater than or equal to 1")
	}
	id, version, nonce, sealed, hdr, err := parseBlob(in.CiphertextBlob)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Faults.Denied("kms:Decrypt") {
		_, e := s.use("kms:Decrypt", in.KeyId, false)
		return nil, e
	}
	if err != nil || s.keys[id] == nil {
		return nil, invalidCiphertext()
	}
	if in.KeyId != "" {
		want := s.lookup(in.KeyId, false)
		if want == nil {
			return nil, errf(400, "NotFoundException", "Key '%s' does not exist", s.arnFor(in.KeyId))
		}
		if want.id != id {
			return nil, errf(400, "IncorrectKeyException", "The key ID in the request does not identify a CMK that can perform this operation.")
		}
	}
	k, e := s.use("kms:Decrypt", id, true)
	if e != nil {
		return nil, e
	}
	if int(version) >= len(k.material) {
		return nil, invalidCiphertext()
	}
	pt, err := gcm(k.material[version]).Open(nil, nonce, sealed, contextAAD(hdr, in.EncryptionContext))
	if err != nil {
		return nil, invalidCiphertext()
	}
	return map[string]any{
		"Plaintext":           pt,
		"KeyId":               k.arn,
		"EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
	}, nil
}

func epoch(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return json.Number(strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64))
}

func (s *Server) metadata(k *key) map[string]any {
	algs := []string{"SYMMETRIC_DEFAULT"}
	if k.spec != "SYMMETRIC_DEFAULT" {
		algs = []string{"RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"}
		if k.usage != "ENCRYPT_DECRYPT" {
			algs = nil
		}
	}
	m := map[string]any{
		"AWSAccountId":          s.Account,
		"KeyId":                 k.id,
		"Arn":                   k.arn,
		"CreationDate":          epoch(k.created),
		"Enabled":               k.state == StateEnabled,
		"Description":           k.description,
		"KeyUsage":              k.usage,
		"KeyState":              k.state,
		"Origin":                "AWS_KMS",
		"KeyManager":            "CUSTOMER",
		"CustomerMasterKeySpec": k.spec,
		"KeySpec":               k.spec,
		"MultiRegion":           false,
	}
	if algs != nil {
		m["EncryptionAlgorithms"] = algs
	}
	if !k.deletion.IsZero() {
		m["DeletionDate"] = epoch(k.deletion)
		m["PendingDeletionWindowInDays"] = 7
	}
	return m
}

type keyIDIn struct{ KeyId string }

func (s *Server) describeKey(body []byte) (any, *apiError) {
	var in keyIDIn
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k, e := s.use("kms:DescribeKey", in.KeyId, false)
	if e != nil {
		return nil, e
	}
	return map[string]any{"KeyMetadata": s.metadata(k)}, nil
}

func (s *Server) generateDataKey(body []byte) (any, *apiError) {
	var in struct {
		KeyId             string
		KeySpec           string
		NumberOfBytes     int
		EncryptionContext map[string]string
	}
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	n := in.NumberOfBytes
	switch {
	case in.KeySpec == "AES_256" && n == 0:
		n = 32
	case in.KeySpec == "AES_128" && n == 0:
		n = 16
	case in.KeySpec == "" && n >= 1 && n <= 1024:
	default:
		return nil, errf(400, "ValidationException", "Please specify either number of bytes or key spec.")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k, e := s.use("kms:GenerateDataKey", in.KeyId, true)
	if e != nil {
		return nil, e
	}
	pt := make([]byte, n)
	rand.Read(pt)
	return map[string]any{
		"CiphertextBlob": seal(k, pt, in.EncryptionContext),
		"Plaintext":      pt,
		"KeyId":          k.arn,
	}, nil
}

func (s *Server) createKeyOp(body []byte) (any, *apiError) {
	var in struct {
		KeySpec     string
		KeyUsage    string
		Description string
	}
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	if in.KeySpec == "" {
		in.KeySpec = "SYMMETRIC_DEFAULT"
	}
	if in.KeyUsage == "" {
		in.KeyUsage = "ENCRYPT_DECRYPT"
	}
	s.mu.Lock()
	denied := s.Faults.Denied("kms:CreateKey")
	s.mu.Unlock()
	if denied {
		return nil, errf(400, "AccessDeniedException", "User: arn:aws:iam::%s:user/cmkdb is not authorized to perform: kms:CreateKey", s.Account)
	}
	k := s.createKey(in.KeySpec, in.KeyUsage, in.Description)
	s.mu.Lock()
	defer s.mu.Unlock()
	return map[string]any{"KeyMetadata": s.metadata(k)}, nil
}

func (s *Server) scheduleKeyDeletion(body []byte) (any, *apiError) {
	var in struct {
		KeyId               string
		PendingWindowInDays int
	}
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	if in.PendingWindowInDays == 0 {
		in.PendingWindowInDays = 30
	}
	if in.PendingWindowInDays < 7 || in.PendingWindowInDays > 30 {
		return nil, errf(400, "ValidationException", "1 validation error detected: Value '%d' at 'pendingWindowInDays' failed to satisfy constraint: Member must have value between 7 and 30", in.PendingWindowInDays)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k, e := s.use("kms:ScheduleKeyDeletion", in.KeyId, false)
	if e != nil {
		return nil, e
	}
	if k.state == StatePendingDeletion {
		return nil, errf(400, "KMSInvalidStateException", "%s is pending deletion.", k.arn)
	}
	k.state = StatePendingDeletion
	k.deletion = time.Now().Add(time.Duration(in.PendingWindowInDays) * 24 * time.Hour).UTC()
	return map[string]any{
		"KeyId":               k.arn,
		"DeletionDate":        epoch(k.deletion),
		"KeyState":            k.state,
		"PendingWindowInDays": in.PendingWindowInDays,
	}, nil
}

func (s *Server) cancelKeyDeletion(body []byte) (any, *apiError) {
	var in keyIDIn
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k, e := s.use("kms:CancelKeyDeletion", in.KeyId, false)
	if e != nil {
		return nil, e
	}
	if k.state != StatePendingDeletion {
		return nil, errf(400, "KMSInvalidStateException", "%s is not pending deletion.", k.arn)
	}
	// AWS leaves a key whose deletion was cancelled Disabled.
	k.state, k.deletion = StateDisabled, time.Time{}
	return map[string]any{"KeyId": k.arn}, nil
}

func (s *Server) setEnabled(body []byte, enable bool) (any, *apiError) {
	var in keyIDIn
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	action := "kms:DisableKey"
	if enable {
		action = "kms:EnableKey"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k, e := s.use(action, in.KeyId, false)
	if e != nil {
		return nil, e
	}
	if k.state != StateEnabled && k.state != StateDisabled {
		return nil, errf(400, "KMSInvalidStateException", "%s is %s.", k.arn, strings.ToLower(k.state))
	}
	k.state = StateDisabled
	if enable {
		k.state = StateEnabled
	}
	return struct{}{}, nil
}

func (s *Server) rotateOnDemand(body []byte) (any, *apiError) {
	var in keyIDIn
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k, e := s.use("kms:RotateKeyOnDemand", in.KeyId, true)
	if e != nil {
		return nil, e
	}
	k.material = append(k.material, newMaterial())
	k.rotations = append(k.rotations, time.Now().UTC())
	return map[string]any{"KeyId": k.id}, nil
}

func (s *Server) listKeyRotations(body []byte) (any, *apiError) {
	var in keyIDIn
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k, e := s.use("kms:ListKeyRotations", in.KeyId, false)
	if e != nil {
		return nil, e
	}
	rots := []map[string]any{}
	for _, t := range k.rotations {
		rots = append(rots, map[string]any{"KeyId": k.arn, "RotationDate": epoch(t), "RotationType": "ON_DEMAND"})
	}
	return map[string]any{"Rotations": rots, "Truncated": false}, nil
}
