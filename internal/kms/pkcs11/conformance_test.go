package pkcs11

import (
	"fmt"
	"strconv"
	"testing"

	p11 "github.com/miekg/pkcs11"

	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kms/kmstest"
	"github.com/cmkdb/cmkdb/internal/kmsserver/p11test"
)

const tokenLabel = "cmkdb-test"

func TestConformance(t *testing.T) {
	tok := p11test.New(t, tokenLabel)
	kmstest.Run(t, &harness{tok: tok})
}

// harness drives a real SoftHSM2 token. Every Provider call makes a new key
// label with version 1 ("1" in CKA_ID).
//
// States it can express, all reversible without losing key material (a
// non-extractable key that is destroyed cannot come back, so "deleted" is
// the key being relabelled out of sight):
//
//   - NotFound: every version relabelled "<label>.hidden".
//   - PermissionDenied: CKA_ENCRYPT and CKA_DECRYPT set to false.
//   - CredentialsRejected: the user PIN changed and every session of the
//     process closed (as after an HSM restart), so the provider logs in
//     again with its now wrong PIN.
//   - WrongKeyType: the versions relabelled away and an AES-128 key put
//     under the label and current version.
//   - Malformed: a second key object with the same label and version.
//
// Disabled/Deleted/Expired/…: PKCS#11 keys have no such states (CKA_END_DATE
// is informational in Cryptoki and not enforced by SoftHSM). Unreachable,
// Throttled, ServerError, Timeout: a local module cannot be made to fail
// that way; the module-load failure is tested in TestModuleMissing.
type harness struct {
	tok     *p11test.Token
	n       int
	label   string
	version int
	undo    func(t testing.TB)
}

func (h *harness) cfg(pin string) Config {
	return Config{ModulePath: h.tok.Module, TokenLabel: tokenLabel, PIN: pin, KeyLabel: h.label}
}

func newProvider(t testing.TB, cfg Config) *Provider {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func (h *harness) Provider(t testing.TB) kms.Provider {
	h.reset(t)
	h.n++
	h.label = fmt.Sprintf("cmk-%d", h.n)
	h.version = 1
	h.tok.GenerateKey(t, p11test.KeySpec{Label: h.label, ID: []byte("1")})
	return newProvider(t, h.cfg(h.tok.PIN))
}

func (h *harness) reset(t testing.TB) {
	if h.undo != nil {
		h.undo(t)
		h.undo = nil
	}
}

func (h *harness) relabel(t testing.TB, from, to string) {
	h.tok.SetAttributes(t, h.tok.Find(t, from, nil), p11.NewAttribute(p11.CKA_LABEL, to))
}

func (h *harness) SetState(t testing.TB, s kmstest.State) bool {
	h.reset(t)
	hidden := h.label + ".hidden"
	switch s {
	case kmstest.Enabled:
	case kmstest.NotFound:
		h.relabel(t, h.label, hidden)
		h.undo = func(t testing.TB) { h.relabel(t, hidden, h.label) }
	case kmstest.PermissionDenied:
		keys := h.tok.Find(t, h.label, nil)
		h.tok.SetAttributes(t, keys, p11.NewAttribute(p11.CKA_ENCRYPT, false), p11.NewAttribute(p11.CKA_DECRYPT, false))
		h.undo = func(t testing.TB) {
			h.tok.SetAttributes(t, keys, p11.NewAttribute(p11.CKA_ENCRYPT, true), p11.NewAttribute(p11.CKA_DECRYPT, true))
		}
	case kmstest.CredentialsRejected:
		const other = "changed-9999"
		h.tok.ChangePIN(t, h.tok.PIN, other)
		h.tok.CloseAllSessions(t)
		h.undo = func(t testing.TB) { h.tok.ChangePIN(t, other, h.tok.PIN) }
	case kmstest.WrongKeyType:
		h.relabel(t, h.label, hidden)
		for v := 1; v <= h.version; v++ {
			h.tok.GenerateKey(t, p11test.KeySpec{Label: h.label, ID: []byte(strconv.Itoa(v)), Bytes: 16})
		}
		h.undo = func(t testing.TB) {
			h.tok.Destroy(t, h.tok.Find(t, h.label, nil)...)
			h.relabel(t, hidden, h.label)
		}
	case kmstest.Malformed:
		// A second key object with the same label and version: which
		// one is meant is ambiguous.
		dup := h.tok.GenerateKey(t, p11test.KeySpec{Label: h.label, ID: []byte(strconv.Itoa(h.version))})
		h.undo = func(t testing.TB) { h.tok.Destroy(t, dup) }
	default:
		return false
	}
	return true
}

func (h *harness) RotateKey(t testing.TB) bool {
	h.version++
	// Generated under a staging label, then relabelled: SoftHSM2 shows a
	// token object to the process's other sessions before C_GenerateKey
	// has finished building it (C_EncryptInit on it then fails with
	// CKR_MECHANISM_INVALID), so the new version appears only when whole,
	// as an operator's tool (or a real HSM) would publish it.
	staging := h.label + ".staging"
	hk := h.tok.GenerateKey(t, p11test.KeySpec{Label: staging, ID: []byte(strconv.Itoa(h.version))})
	h.tok.SetAttributes(t, []p11.ObjectHandle{hk}, p11.NewAttribute(p11.CKA_LABEL, h.label))
	return true
}

func (h *harness) Secrets(testing.TB) [][]byte {
	return [][]byte{[]byte(h.tok.PIN), []byte(h.tok.SOPIN)}
}
