package gcptest

import (
	"crypto/rand"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/grpc/codes"

	"github.com/cmkdb/cmkdb/internal/kmsserver/faults"
)

// IAM permissions the server checks, as Cloud KMS names them.
const (
	PermGetKey     = "cloudkms.cryptoKeys.get"
	PermGetVersion = "cloudkms.cryptoKeyVersions.get"
	PermEncrypt    = "cloudkms.cryptoKeyVersions.useToEncrypt"
	PermDecrypt    = "cloudkms.cryptoKeyVersions.useToDecrypt"
)

// Permissions lists every permission the server checks.
func Permissions() []string { return []string{PermGetKey, PermGetVersion, PermEncrypt, PermDecrypt} }

// Corruption is a way to damage an Encrypt or Decrypt response in transit,
// so tests can prove the client verifies the integrity fields.
type Corruption int

const (
	NoCorruption Corruption = iota
	// CorruptCiphertextCRC: Encrypt's ciphertext_crc32c is off by one.
	CorruptCiphertextCRC
	// CorruptPlaintextCRC: Decrypt's plaintext_crc32c is off by one.
	CorruptPlaintextCRC
	// CorruptVerifiedPlaintext: Encrypt claims it did not verify
	// plaintext_crc32c (as when the field was lost on the way).
	CorruptVerifiedPlaintext
	// CorruptVerifiedAAD: the same for additional_authenticated_data_crc32c.
	CorruptVerifiedAAD
	// CorruptName: Encrypt names a version of another key.
	CorruptName
)

type cryptoKey struct {
	name     string
	purpose  kmspb.CryptoKey_CryptoKeyPurpose
	created  time.Time
	primary  int // version number; 0: none
	versions []*keyVersion
	hidden   bool
}

type keyVersion struct {
	n        int
	state    kmspb.CryptoKeyVersion_CryptoKeyVersionState
	material []byte
	created  time.Time
}

func (k *cryptoKey) version(n int) *keyVersion {
	if n < 1 || n > len(k.versions) {
		return nil
	}
	return k.versions[n-1]
}

func (k *cryptoKey) versionName(n int) string {
	return k.name + "/cryptoKeyVersions/" + strconv.Itoa(n)
}

func (k *cryptoKey) addVersion() *keyVersion {
	m := make([]byte, 32)
	rand.Read(m)
	v := &keyVersion{n: len(k.versions) + 1, state: kmspb.CryptoKeyVersion_ENABLED, material: m, created: time.Now().UTC()}
	k.versions = append(k.versions, v)
	return v
}

// CreateKey creates a key in the key ring with one ENABLED version and
// returns its resource name. An ENCRYPT_DECRYPT key's first version is its
// primary; keys of other purposes have no primary, as in Cloud KMS.
func (s *Server) CreateKey(id string, purpose kmspb.CryptoKey_CryptoKeyPurpose) (string, error) {
	if id == "" || strings.Contains(id, "/") {
		return "", fmt.Errorf("gcptest: bad key id %q", id)
	}
	name := s.KeyRingName() + "/cryptoKeys/" + id
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.keys[name]; ok {
		return "", fmt.Errorf("gcptest: key %s exists", name)
	}
	k := &cryptoKey{name: name, purpose: purpose, created: time.Now().UTC()}
	v := k.addVersion()
	if purpose == kmspb.CryptoKey_ENCRYPT_DECRYPT {
		k.primary = v.n
	}
	s.keys[name] = k
	return name, nil
}

// RotateKey adds a version and makes it the primary, as a scheduled or
// manual rotation does. It returns the new version's resource name.
func (s *Server) RotateKey(keyName string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[keyName]
	if !ok {
		return "", fmt.Errorf("gcptest: no key %s", keyName)
	}
	v := k.addVersion()
	if k.purpose == kmspb.CryptoKey_ENCRYPT_DECRYPT {
		k.primary = v.n
	}
	return k.versionName(v.n), nil
}

// Versions lists a key's version resource names, oldest first.
func (s *Server) Versions(keyName string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[keyName]
	if !ok {
		return nil
	}
	var out []string
	for _, v := range k.versions {
		out = append(out, k.versionName(v.n))
	}
	return out
}

// PrimaryVersion is the resource name of a key's primary version.
func (s *Server) PrimaryVersion(keyName string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[keyName]
	if !ok || k.primary == 0 {
		return ""
	}
	return k.versionName(k.primary)
}

func (s *Server) lockedVersion(versionName string) (*cryptoKey, *keyVersion, error) {
	keyName, num, ok := strings.Cut(versionName, "/cryptoKeyVersions/")
	n, err := strconv.Atoi(num)
	k := s.keys[keyName]
	if !ok || err != nil || k == nil || k.version(n) == nil {
		return nil, nil, fmt.Errorf("gcptest: no version %s", versionName)
	}
	return k, k.version(n), nil
}

// SetVersionState puts a version in any state. Unlike the real service it
// keeps the material whatever the state, so a test can bring a DESTROYED
// version back.
func (s *Server) SetVersionState(versionName string, st kmspb.CryptoKeyVersion_CryptoKeyVersionState) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, v, err := s.lockedVersion(versionName)
	if err != nil {
		return err
	}
	v.state = st
	return nil
}

// SetPrimary makes a version the key's primary (UpdateCryptoKeyPrimaryVersion).
func (s *Server) SetPrimary(versionName string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, v, err := s.lockedVersion(versionName)
	if err != nil {
		return err
	}
	k.primary = v.n
	return nil
}

// SetPurpose changes a key's purpose (impossible in Cloud KMS; it lets a
// test turn a key into the wrong kind of key and back without losing it).
// An ENCRYPT_DECRYPT key keeps, or regains, a primary version.
func (s *Server) SetPurpose(keyName string, p kmspb.CryptoKey_CryptoKeyPurpose) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[keyName]
	if !ok {
		return fmt.Errorf("gcptest: no key %s", keyName)
	}
	k.purpose = p
	if p == kmspb.CryptoKey_ENCRYPT_DECRYPT && k.primary == 0 {
		k.primary = len(k.versions)
	}
	return nil
}

// HideKey makes a key (and its versions) answer NotFound, or not.
func (s *Server) HideKey(keyName string, hidden bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[keyName]
	if !ok {
		return fmt.Errorf("gcptest: no key %s", keyName)
	}
	k.hidden = hidden
	return nil
}

// Deny denies (or grants back) a permission to every caller.
func (s *Server) Deny(permission string, on bool) error {
	if !slices.Contains(Permissions(), permission) {
		return fmt.Errorf("gcptest: unknown permission %q (have %s)", permission, strings.Join(Permissions(), ", "))
	}
	s.Faults.Deny(permission, on)
	return nil
}

// DenyAll denies (or grants back) every permission.
func (s *Server) DenyAll(on bool) {
	for _, p := range Permissions() {
		_ = s.Deny(p, on)
	}
}

// Throttle makes every call fail with RESOURCE_EXHAUSTED (quota).
func (s *Server) Throttle(on bool) { s.Faults.Throttle(on) }

// Fail makes every call fail with code (codes.Unavailable or
// codes.Internal, with Google's messages); codes.OK stops it.
func (s *Server) Fail(code codes.Code) { s.Faults.Fail(failureOf(code)) }

// Stall makes every call hang until its deadline (or Stall(false), or the
// server closes).
func (s *Server) Stall(on bool) { s.Faults.Stall(on) }

// failureOf maps a gRPC code to the shared failure switch: Google's
// INTERNAL and UNAVAILABLE are the shared ones, other codes are kept as
// values of this server's own.
func failureOf(c codes.Code) faults.Failure {
	switch c {
	case codes.OK:
		return faults.None
	case codes.Internal:
		return faults.Internal
	case codes.Unavailable:
		return faults.Unavailable
	}
	return otherFailure + faults.Failure(c)
}

// otherFailure offsets the gRPC codes stored as failures of this server.
const otherFailure faults.Failure = 1000

func codeOf(f faults.Failure) codes.Code {
	switch f {
	case faults.None:
		return codes.OK
	case faults.Internal:
		return codes.Internal
	case faults.Unavailable:
		return codes.Unavailable
	}
	return codes.Code(f - otherFailure)
}

// CorruptNext damages the next n Encrypt/Decrypt responses the corruption
// applies to (n < 0: all of them until Reset).
func (s *Server) CorruptNext(c Corruption, n int) {
	s.mu.Lock()
	s.corrupt, s.corruptN = c, n
	s.mu.Unlock()
}

// Reset clears every injected fault: throttling, failures, stalls,
// corruption and denied permissions. Keys and accounts are unchanged.
func (s *Server) Reset() {
	s.Faults.Reset()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.corrupt, s.corruptN = NoCorruption, 0
}

// Calls is how many calls of a method (e.g. "Encrypt") the server got.
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

// LastCall is what the server saw of the latest call.
func (s *Server) LastCall() Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// KeyMaterial returns the AES keys of every version of a key, for leak
// checks.
func (s *Server) KeyMaterial(keyName string) [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[keyName]
	if !ok {
		return nil
	}
	var out [][]byte
	for _, v := range k.versions {
		out = append(out, append([]byte(nil), v.material...))
	}
	return out
}
