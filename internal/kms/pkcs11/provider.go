// Package pkcs11 is the kms.Provider for a PKCS#11 HSM (any Cryptoki 2.40
// module: SoftHSM2, Thales Luna, Entrust nShield, AWS CloudHSM, YubiHSM…),
// through github.com/miekg/pkcs11.
//
// # Keys and versions
//
// The CMK is an AES-256 secret key object on the token labelled
// Config.TokenLabel, with CKA_CLASS = CKO_SECRET_KEY, CKA_KEY_TYPE = CKK_AES,
// CKA_LABEL = Config.KeyLabel. Versions are expressed by CKA_ID: every
// version of the CMK carries the same CKA_LABEL, and its CKA_ID is the
// version number in decimal ASCII ("1", "2", …; an empty CKA_ID is version
// "0", for keys created without one). The key with the highest version is
// current: rotating the CMK means generating a new AES-256 key with the same
// label and CKA_ID = previous+1. Keys under the label whose CKA_ID is not a
// decimal number are ignored; two keys with the same label and version make
// the key KEY_MALFORMED (ambiguous).
//
// The KeyRef is {Provider "pkcs11", KeyID "<token label>/<key label>",
// KeyVersion "<N>"}; Unwrap uses the version recorded in the Wrapped, so
// keys wrapped before a rotation keep unwrapping while the old key object
// exists.
//
// # Wrapping
//
// Wrap is C_Encrypt with CKM_AES_GCM: a random 12-byte IV from crypto/rand,
// the aad as GCM additional authenticated data and a 128-bit tag. The
// ciphertext is iv || ct || tag. Unwrap is C_Decrypt with the same
// parameters.
//
// # Sessions and concurrency
//
// PKCS#11 sessions must not be used by two threads at once. The provider
// keeps one logged-in read-only session, guarded by a lock that is itself
// context-aware (a caller whose context ends while waiting gets a TIMEOUT).
// If the session is lost (CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED,
// CKR_USER_NOT_LOGGED_IN, CKR_TOKEN_NOT_PRESENT, CKR_DEVICE_REMOVED…) it is
// dropped and the next call opens and logs in a new one (one retry within
// the same call). The module is loaded and C_Initialize'd once per process
// and module path, shared by every provider using it, and finalized when the
// last one is closed (only if this package initialized it).
//
// PKCS#11 calls cannot be cancelled: the context is checked before the lock,
// while waiting for it, and before each call; a call already inside the
// module runs to its end. An HSM that hangs inside a call therefore holds
// the caller past its deadline (the module's own timeouts apply).
//
// # Classification
//
//   - module cannot be loaded, C_Initialize fails → UNREACHABLE NETWORK_ERROR
//   - CKR_DEVICE_ERROR, CKR_DEVICE_MEMORY, CKR_HOST_MEMORY,
//     CKR_FUNCTION_FAILED, CKR_DEVICE_REMOVED (after the reconnect) and other
//     unexpected return values → UNREACHABLE SERVER_ERROR
//   - CKR_PIN_INCORRECT, CKR_PIN_LOCKED, CKR_PIN_EXPIRED, CKR_PIN_INVALID,
//     CKR_PIN_LEN_RANGE, CKR_USER_PIN_NOT_INITIALIZED → INVALID
//     CREDENTIALS_REJECTED
//   - no token with the label (or CKR_TOKEN_NOT_PRESENT) → INVALID
//     KEY_NOT_FOUND: the customer's key is not where it was configured
//   - no key object with the label (or the recorded version) → INVALID
//     KEY_NOT_FOUND
//   - CKA_ENCRYPT (for Wrap) or CKA_DECRYPT (for Unwrap) false,
//     CKR_KEY_FUNCTION_NOT_PERMITTED → INVALID PERMISSION_DENIED
//   - not CKK_AES, or CKA_VALUE_LEN ≠ 32, CKR_KEY_TYPE_INCONSISTENT →
//     INVALID WRONG_KEY_TYPE
//   - C_Decrypt failing with CKR_ENCRYPTED_DATA_INVALID,
//     CKR_ENCRYPTED_DATA_LEN_RANGE, or CKR_GENERAL_ERROR (SoftHSM2's answer
//     to a bad GCM tag) → kms.ErrDecrypt
//   - the caller's context ended → UNREACHABLE TIMEOUT
//
// Check logs in (if not already), finds the current version, verifies its
// type, size and CKA_ENCRYPT/CKA_DECRYPT, and runs a GCM round trip.
//
// # Secrets and key material
//
// The CMK never leaves the HSM (keys are expected SENSITIVE and not
// EXTRACTABLE; the provider never reads CKA_VALUE). The PIN is a secret:
// Config's String and GoString redact it, the Provider keeps it behind a
// pointer (so %#v of a Provider value cannot print it) for re-login after a
// lost session, and it is never part of an error (PKCS#11 return values
// never echo it). The Check probe is zeroed after use; the plaintext given
// to Wrap is the caller's and is not copied in Go, but miekg/pkcs11 copies
// it (and Decrypt's result) through C buffers that it frees without
// zeroing — a limitation of that library. Unwrap's result belongs to the
// caller, who zeroes it.
//
// # SoftHSM2 notes
//
// SoftHSM2 answers a failed GCM tag check with CKR_GENERAL_ERROR (mapped to
// kms.ErrDecrypt above). Its file object store is not safe against key
// creation in one thread while another uses the token (softhsm/SoftHSMv2
// #573): a key being generated can be found half-built; operators should
// create a new version under a staging label and relabel it when complete.
package pkcs11

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	p11 "github.com/miekg/pkcs11"

	"github.com/cmkdb/cmkdb/internal/kms"
)

// ProviderName is the KeyRef.Provider of this package.
const ProviderName = "pkcs11"

const (
	ivLen   = 12
	tagBits = 128
	tagLen  = tagBits / 8
	keyLen  = 32
)

// Config configures a PKCS#11 provider.
type Config struct {
	// ModulePath is the PKCS#11 module (shared library) to load.
	ModulePath string
	// TokenLabel is the CKA_LABEL of the token holding the CMK.
	TokenLabel string
	// PIN is the user PIN of the token. It is a secret.
	PIN string
	// KeyLabel is the CKA_LABEL shared by every version of the CMK.
	KeyLabel string
}

// String redacts the PIN.
func (c Config) String() string {
	pin := ""
	if c.PIN != "" {
		pin = "REDACTED"
	}
	return fmt.Sprintf("pkcs11.Config{ModulePath: %q, TokenLabel: %q, KeyLabel: %q, PIN: %s}", c.ModulePath, c.TokenLabel, c.KeyLabel, pin)
}

// GoString redacts the PIN from %#v too.
func (c Config) GoString() string { return c.String() }

// Provider is a kms.Provider backed by an AES-256 key on a PKCS#11 token.
type Provider struct {
	cfg   Config // PIN cleared: see pin
	keyID string
	// pin is behind a pointer so that no formatting of a Provider value
	// (%#v of a struct holding it) can print it.
	pin *string

	// lock guards everything below: one goroutine at a time uses the
	// session. A channel so that waiting honours the context.
	lock    chan struct{}
	mod     *module
	slot    uint
	session p11.SessionHandle
	open    bool
	closed  bool
}

// New validates cfg and returns a provider. It does not contact the HSM:
// the first call (usually Check) loads the module and logs in.
func New(cfg Config) (*Provider, error) {
	if cfg.ModulePath == "" || cfg.TokenLabel == "" || cfg.KeyLabel == "" {
		return nil, errors.New("pkcs11: ModulePath, TokenLabel and KeyLabel are required")
	}
	if cfg.PIN == "" {
		return nil, errors.New("pkcs11: PIN is required")
	}
	pin := cfg.PIN
	cfg.PIN = ""
	return &Provider{cfg: cfg, pin: &pin, keyID: cfg.TokenLabel + "/" + cfg.KeyLabel, lock: make(chan struct{}, 1)}, nil
}

func (p *Provider) String() string   { return "pkcs11 provider " + p.ref("").String() }
func (p *Provider) GoString() string { return p.String() }

func (p *Provider) ref(version string) kms.KeyRef {
	return kms.KeyRef{Provider: ProviderName, KeyID: p.keyID, KeyVersion: version}
}

// Close closes the session and releases the module.
func (p *Provider) Close() error {
	p.lock <- struct{}{}
	defer func() { <-p.lock }()
	p.dropSession()
	p.closed = true
	return nil
}

// ---- module registry -------------------------------------------------------

// module is a loaded, initialized PKCS#11 library shared by the providers
// that use the same path.
type module struct {
	path string
	ctx  *p11.Ctx
	refs int
	// owned: this package called C_Initialize successfully (not
	// CKR_CRYPTOKI_ALREADY_INITIALIZED), so it finalizes at the end.
	owned bool
}

var (
	modMu   sync.Mutex
	modules = map[string]*module{}
)

func acquireModule(path string) (*module, error) {
	modMu.Lock()
	defer modMu.Unlock()
	if m, ok := modules[path]; ok {
		m.refs++
		return m, nil
	}
	ctx := p11.New(path)
	if ctx == nil {
		return nil, errors.New("cannot load the PKCS#11 module")
	}
	owned := true
	if err := ctx.Initialize(); err != nil {
		if rv, ok := err.(p11.Error); ok && rv == p11.CKR_CRYPTOKI_ALREADY_INITIALIZED {
			owned = false
		} else {
			ctx.Destroy()
			return nil, fmt.Errorf("C_Initialize: %w", err)
		}
	}
	m := &module{path: path, ctx: ctx, refs: 1, owned: owned}
	modules[path] = m
	return m, nil
}

func releaseModule(m *module) {
	modMu.Lock()
	defer modMu.Unlock()
	m.refs--
	if m.refs > 0 {
		return
	}
	delete(modules, m.path)
	if m.owned {
		_ = m.ctx.Finalize()
	}
	m.ctx.Destroy()
}

// ---- session handling --------------------------------------------------------

func (p *Provider) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case p.lock <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *Provider) release() { <-p.lock }

// dropSession closes the session and releases the module. Lock held.
func (p *Provider) dropSession() {
	if p.open {
		_ = p.mod.ctx.CloseSession(p.session)
		p.open = false
	}
	if p.mod != nil {
		releaseModule(p.mod)
		p.mod = nil
	}
}

// connect makes sure a logged-in session exists. Lock held.
func (p *Provider) connect(op string) error {
	if p.closed {
		return p.err(op, "", kms.ReasonServerError, "provider is closed", nil)
	}
	if p.open {
		return nil
	}
	if p.mod == nil {
		m, err := acquireModule(p.cfg.ModulePath)
		if err != nil {
			return p.err(op, "", kms.ReasonNetwork, "loading module "+p.cfg.ModulePath, err)
		}
		p.mod = m
	}
	c := p.mod.ctx
	slots, err := c.GetSlotList(true)
	if err != nil {
		return p.rvErr(op, "", "C_GetSlotList", err)
	}
	found := false
	for _, s := range slots {
		ti, err := c.GetTokenInfo(s)
		if err != nil {
			continue
		}
		if ti.Label == p.cfg.TokenLabel {
			p.slot, found = s, true
			break
		}
	}
	if !found {
		// Release the module so that a token plugged in later is seen
		// by a fresh C_GetSlotList.
		p.dropSession()
		return p.err(op, "", kms.ReasonKeyNotFound, fmt.Sprintf("no token labelled %q", p.cfg.TokenLabel), nil)
	}
	sh, err := c.OpenSession(p.slot, p11.CKF_SERIAL_SESSION)
	if err != nil {
		return p.rvErr(op, "", "C_OpenSession", err)
	}
	if err := c.Login(sh, p11.CKU_USER, *p.pin); err != nil && !isRV(err, p11.CKR_USER_ALREADY_LOGGED_IN) {
		_ = c.CloseSession(sh)
		return p.rvErr(op, "", "C_Login", err)
	}
	p.session, p.open = sh, true
	return nil
}

// sessionLost reports return values after which the session is useless and
// a new one may succeed.
func sessionLost(err error) bool {
	return isRV(err, p11.CKR_SESSION_HANDLE_INVALID) || isRV(err, p11.CKR_SESSION_CLOSED) ||
		isRV(err, p11.CKR_USER_NOT_LOGGED_IN) || isRV(err, p11.CKR_TOKEN_NOT_PRESENT) ||
		isRV(err, p11.CKR_DEVICE_REMOVED) || isRV(err, p11.CKR_CRYPTOKI_NOT_INITIALIZED) ||
		isRV(err, p11.CKR_TOKEN_NOT_RECOGNIZED)
}

// do runs fn with a logged-in session, reconnecting once if the session was
// lost. fn returns raw PKCS#11 errors or *kms.Error / decrypt errors.
func (p *Provider) do(ctx context.Context, op string, fn func(c *p11.Ctx, sh p11.SessionHandle) error) error {
	if err := p.acquire(ctx); err != nil {
		return p.ctxErr(op, err)
	}
	defer p.release()
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		if cerr := ctx.Err(); cerr != nil {
			return p.ctxErr(op, cerr)
		}
		if err = p.connect(op); err != nil {
			return err
		}
		err = fn(p.mod.ctx, p.session)
		if err == nil || !sessionLost(err) {
			return err
		}
		p.dropSession()
	}
	return err
}

// ---- key lookup ----------------------------------------------------------------

type keyObj struct {
	h       p11.ObjectHandle
	version string
	n       uint64
}

func (p *Provider) findKeys(c *p11.Ctx, sh p11.SessionHandle, id []byte) ([]keyObj, error) {
	tmpl := []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
		p11.NewAttribute(p11.CKA_LABEL, p.cfg.KeyLabel),
	}
	if id != nil {
		tmpl = append(tmpl, p11.NewAttribute(p11.CKA_ID, id))
	}
	if err := c.FindObjectsInit(sh, tmpl); err != nil {
		return nil, err
	}
	var hs []p11.ObjectHandle
	for {
		batch, _, err := c.FindObjects(sh, 64)
		if err != nil {
			_ = c.FindObjectsFinal(sh)
			return nil, err
		}
		hs = append(hs, batch...)
		if len(batch) < 64 {
			break
		}
	}
	if err := c.FindObjectsFinal(sh); err != nil {
		return nil, err
	}
	var out []keyObj
	for _, h := range hs {
		attrs, err := c.GetAttributeValue(sh, h, []*p11.Attribute{p11.NewAttribute(p11.CKA_ID, nil)})
		if err != nil {
			return nil, err
		}
		v := attrs[0].Value
		if len(v) == 0 {
			out = append(out, keyObj{h: h, version: "0"})
			continue
		}
		n, perr := strconv.ParseUint(string(v), 10, 63)
		if perr != nil || strconv.FormatUint(n, 10) != string(v) {
			continue // not one of our versions
		}
		out = append(out, keyObj{h: h, version: string(v), n: n})
	}
	return out, nil
}

// currentKey returns the highest version under the label.
func (p *Provider) currentKey(op string, c *p11.Ctx, sh p11.SessionHandle) (keyObj, error) {
	keys, err := p.findKeys(c, sh, nil)
	if err != nil {
		return keyObj{}, err
	}
	if len(keys) == 0 {
		return keyObj{}, p.err(op, "", kms.ReasonKeyNotFound, fmt.Sprintf("no AES key labelled %q with a numeric CKA_ID on the token", p.cfg.KeyLabel), nil)
	}
	slices.SortFunc(keys, func(a, b keyObj) int { return cmpU(a.n, b.n) })
	cur := keys[len(keys)-1]
	if len(keys) > 1 && keys[len(keys)-2].n == cur.n {
		return keyObj{}, p.err(op, cur.version, kms.ReasonKeyMalformed, "two key objects carry the same label and version", nil)
	}
	return cur, nil
}

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// versionKey returns the key of a given version.
func (p *Provider) versionKey(op string, c *p11.Ctx, sh p11.SessionHandle, version string) (keyObj, error) {
	id := []byte(version)
	if version == "0" {
		id = []byte{}
	}
	keys, err := p.findKeys(c, sh, id)
	if err != nil {
		return keyObj{}, err
	}
	keys = slices.DeleteFunc(keys, func(k keyObj) bool { return k.version != version })
	switch len(keys) {
	case 0:
		return keyObj{}, p.err(op, version, kms.ReasonKeyNotFound, fmt.Sprintf("no key labelled %q with version %s on the token", p.cfg.KeyLabel, version), nil)
	case 1:
		return keys[0], nil
	}
	return keyObj{}, p.err(op, version, kms.ReasonKeyMalformed, "two key objects carry the same label and version", nil)
}

// usable verifies the key type, size and the permission op needs.
func (p *Provider) usable(op string, c *p11.Ctx, sh p11.SessionHandle, k keyObj, encrypt, decrypt bool) error {
	attrs, err := c.GetAttributeValue(sh, k.h, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_KEY_TYPE, nil),
		p11.NewAttribute(p11.CKA_VALUE_LEN, nil),
		p11.NewAttribute(p11.CKA_ENCRYPT, nil),
		p11.NewAttribute(p11.CKA_DECRYPT, nil),
	})
	if err != nil {
		return err
	}
	var kt, vlen uint64
	var enc, dec bool
	for _, a := range attrs {
		switch a.Type {
		case p11.CKA_KEY_TYPE:
			kt = ulong(a.Value)
		case p11.CKA_VALUE_LEN:
			vlen = ulong(a.Value)
		case p11.CKA_ENCRYPT:
			enc = len(a.Value) > 0 && a.Value[0] != 0
		case p11.CKA_DECRYPT:
			dec = len(a.Value) > 0 && a.Value[0] != 0
		}
	}
	if kt != p11.CKK_AES {
		return p.err(op, k.version, kms.ReasonWrongKeyType, fmt.Sprintf("key type 0x%x, want CKK_AES", kt), nil)
	}
	if vlen != keyLen {
		return p.err(op, k.version, kms.ReasonWrongKeyType, fmt.Sprintf("AES key of %d bits, want 256", vlen*8), nil)
	}
	if encrypt && !enc {
		return p.err(op, k.version, kms.ReasonPermissionDenied, "key does not allow encryption (CKA_ENCRYPT is false)", nil)
	}
	if decrypt && !dec {
		return p.err(op, k.version, kms.ReasonPermissionDenied, "key does not allow decryption (CKA_DECRYPT is false)", nil)
	}
	return nil
}

// ulong decodes a CK_ULONG attribute value (native byte order and size).
func ulong(b []byte) uint64 {
	switch len(b) {
	case 8:
		return binary.NativeEndian.Uint64(b)
	case 4:
		return uint64(binary.NativeEndian.Uint32(b))
	}
	return ^uint64(0)
}

// ---- operations ------------------------------------------------------------------

func (p *Provider) encrypt(c *p11.Ctx, sh p11.SessionHandle, k keyObj, pt, aad []byte) ([]byte, error) {
	iv := make([]byte, ivLen)
	if _, err := rand.Read(iv); err != nil {
		return nil, err
	}
	params := p11.NewGCMParams(iv, aad, tagBits)
	defer params.Free()
	if err := c.EncryptInit(sh, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_GCM, params)}, k.h); err != nil {
		return nil, err
	}
	ct, err := c.Encrypt(sh, pt)
	if err != nil {
		return nil, err
	}
	// Some HSMs choose the IV themselves; use the one actually used.
	if used := params.IV(); len(used) == ivLen {
		iv = used
	}
	return append(iv, ct...), nil
}

func (p *Provider) decrypt(c *p11.Ctx, sh p11.SessionHandle, k keyObj, blob, aad []byte) ([]byte, error) {
	iv, ct := blob[:ivLen], blob[ivLen:]
	params := p11.NewGCMParams(bytes.Clone(iv), aad, tagBits)
	defer params.Free()
	if err := c.DecryptInit(sh, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_GCM, params)}, k.h); err != nil {
		return nil, err
	}
	pt, err := c.Decrypt(sh, ct)
	if err != nil {
		if isRV(err, p11.CKR_ENCRYPTED_DATA_INVALID) || isRV(err, p11.CKR_ENCRYPTED_DATA_LEN_RANGE) ||
			isRV(err, p11.CKR_GENERAL_ERROR) || isRV(err, p11.CKR_DATA_INVALID) || isRV(err, p11.CKR_DATA_LEN_RANGE) {
			return nil, errDecryptRaw
		}
		return nil, err
	}
	return pt, nil
}

var errDecryptRaw = errors.New("authentication failed")

// Wrap encrypts plaintext under the current CMK version.
func (p *Provider) Wrap(ctx context.Context, plaintext, aad []byte) (kms.Wrapped, error) {
	var out kms.Wrapped
	err := p.do(ctx, "wrap", func(c *p11.Ctx, sh p11.SessionHandle) error {
		k, err := p.currentKey("wrap", c, sh)
		if err != nil {
			return err
		}
		if err := p.usable("wrap", c, sh, k, true, false); err != nil {
			return err
		}
		ct, err := p.encrypt(c, sh, k, plaintext, aad)
		if err != nil {
			return p.rvErr("wrap", k.version, "C_Encrypt", err)
		}
		out = kms.Wrapped{Key: p.ref(k.version), Ciphertext: ct}
		return nil
	})
	if err != nil {
		return kms.Wrapped{}, p.classify("wrap", err)
	}
	return out, nil
}

// Unwrap decrypts w with the CMK version it records.
func (p *Provider) Unwrap(ctx context.Context, w kms.Wrapped, aad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, p.ctxErr("unwrap", err)
	}
	if w.Key.Provider != ProviderName || w.Key.KeyID != p.keyID {
		return nil, p.decryptErr(w.Key, fmt.Sprintf("wrapped under %s, this provider holds %s", w.Key, p.ref("")))
	}
	if _, err := strconv.ParseUint(w.Key.KeyVersion, 10, 63); err != nil {
		return nil, p.decryptErr(w.Key, "the record names no valid key version")
	}
	var out []byte
	err := p.do(ctx, "unwrap", func(c *p11.Ctx, sh p11.SessionHandle) error {
		k, err := p.versionKey("unwrap", c, sh, w.Key.KeyVersion)
		if err != nil {
			return err
		}
		if err := p.usable("unwrap", c, sh, k, false, true); err != nil {
			return err
		}
		if len(w.Ciphertext) < ivLen+tagLen {
			return errDecryptRaw
		}
		pt, err := p.decrypt(c, sh, k, w.Ciphertext, aad)
		if err != nil {
			if errors.Is(err, errDecryptRaw) {
				return err
			}
			return p.rvErr("unwrap", k.version, "C_Decrypt", err)
		}
		out = pt
		return nil
	})
	if errors.Is(err, errDecryptRaw) {
		return nil, p.decryptErr(w.Key, "ciphertext or associated data does not authenticate")
	}
	if err != nil {
		return nil, p.classify("unwrap", err)
	}
	return out, nil
}

var checkAAD = []byte("cmkdb/pkcs11/check")

// Check logs in, finds the current key, verifies its attributes and runs a
// GCM round trip.
func (p *Provider) Check(ctx context.Context) kms.Status {
	ref := p.ref("")
	err := p.do(ctx, "check", func(c *p11.Ctx, sh p11.SessionHandle) error {
		k, err := p.currentKey("check", c, sh)
		if err != nil {
			return err
		}
		ref = p.ref(k.version)
		if err := p.usable("check", c, sh, k, true, true); err != nil {
			return err
		}
		probe := make([]byte, keyLen)
		_, _ = rand.Read(probe)
		defer clear(probe)
		ct, err := p.encrypt(c, sh, k, probe, checkAAD)
		if err != nil {
			return p.rvErr("check", k.version, "C_Encrypt", err)
		}
		pt, err := p.decrypt(c, sh, k, ct, checkAAD)
		defer clear(pt)
		if err != nil {
			if errors.Is(err, errDecryptRaw) {
				return p.err("check", k.version, kms.ReasonServerError, "the GCM probe did not decrypt", nil)
			}
			return p.rvErr("check", k.version, "C_Decrypt", err)
		}
		if !bytes.Equal(pt, probe) {
			return p.err("check", k.version, kms.ReasonServerError, "the GCM probe returned different bytes", nil)
		}
		return nil
	})
	if err != nil {
		err = p.classify("check", err)
		var ke *kms.Error
		if errors.As(err, &ke) && ke.Key.KeyVersion != "" {
			ref = ke.Key
		}
	}
	st := kms.StatusFromError(ref, err)
	st.CheckedAt = time.Now().UTC()
	return st
}

// ---- errors ----------------------------------------------------------------------

type decryptError struct {
	key    kms.KeyRef
	detail string
}

func (e *decryptError) Error() string {
	return fmt.Sprintf("kms unwrap %s: %s: %s", e.key, kms.ErrDecrypt, e.detail)
}
func (e *decryptError) Unwrap() error { return kms.ErrDecrypt }

func (p *Provider) decryptErr(key kms.KeyRef, detail string) error {
	return &decryptError{key: key, detail: detail}
}

func (p *Provider) err(op, version string, reason kms.Reason, detail string, cause error) *kms.Error {
	return &kms.Error{Op: op, Key: p.ref(version), Reason: reason, Detail: detail, Err: cause}
}

func (p *Provider) ctxErr(op string, err error) error {
	return p.err(op, "", kms.ReasonTimeout, "caller's context ended before the HSM was asked", err)
}

func isRV(err error, rv uint) bool {
	var e p11.Error
	return errors.As(err, &e) && uint(e) == rv
}

// rvErr classifies a PKCS#11 return value. what names the call.
func (p *Provider) rvErr(op, version, what string, err error) error {
	var ke *kms.Error
	if errors.As(err, &ke) {
		return err
	}
	var rv p11.Error
	if !errors.As(err, &rv) {
		return p.err(op, version, kms.ReasonServerError, what+" failed", err)
	}
	reason := kms.ReasonServerError
	switch uint(rv) {
	case p11.CKR_PIN_INCORRECT, p11.CKR_PIN_LOCKED, p11.CKR_PIN_EXPIRED, p11.CKR_PIN_INVALID, p11.CKR_PIN_LEN_RANGE,
		p11.CKR_USER_PIN_NOT_INITIALIZED:
		reason = kms.ReasonCredentialsRejected
	case p11.CKR_TOKEN_NOT_PRESENT, p11.CKR_TOKEN_NOT_RECOGNIZED, p11.CKR_KEY_HANDLE_INVALID, p11.CKR_OBJECT_HANDLE_INVALID:
		reason = kms.ReasonKeyNotFound
	case p11.CKR_KEY_FUNCTION_NOT_PERMITTED:
		reason = kms.ReasonPermissionDenied
	case p11.CKR_KEY_TYPE_INCONSISTENT, p11.CKR_KEY_SIZE_RANGE:
		reason = kms.ReasonWrongKeyType
	}
	// p11.Error's text is the CKR_ name: safe, and never the PIN.
	return p.err(op, version, reason, what+" returned "+rv.Error(), nil)
}

// classify turns whatever fn returned into a *kms.Error.
func (p *Provider) classify(op string, err error) error {
	var ke *kms.Error
	if errors.As(err, &ke) {
		return err
	}
	return p.rvErr(op, "", "PKCS#11 call", err)
}
