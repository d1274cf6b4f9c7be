package kmstest_test

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kms/kmstest"
)

// memProvider is a minimal in-memory provider that expresses every state. It
// shows the suite can be passed, and — with one bug switched on through
// KMSTEST_BUG — that each check of the suite actually catches something.
type memKey struct {
	mu       sync.Mutex
	id       string
	versions [][]byte
	state    kmstest.State
}

type memProvider struct {
	k   *memKey
	bug string
}

func (p *memProvider) fail(ctx context.Context, op string, forWrap bool) error {
	if err := ctx.Err(); err != nil {
		if p.bug == "cancel-invalid" {
			return &kms.Error{Op: op, Reason: kms.ReasonKeyDisabled}
		}
		return &kms.Error{Op: op, Reason: kms.ReasonTimeout, Err: err}
	}
	p.k.mu.Lock()
	s := p.k.state
	p.k.mu.Unlock()
	switch {
	case s == kmstest.Enabled:
		return nil
	case s == kmstest.Timeout:
		<-ctx.Done()
		return &kms.Error{Op: op, Reason: kms.ReasonTimeout, Err: ctx.Err()}
	case s == kmstest.Throttled && p.bug == "plain-error":
		return errors.New("throttled")
	case !forWrap && op == "unwrap" && p.bug == "unwrap-when-disabled":
		return nil
	}
	return &kms.Error{Op: op, Reason: s.Reason(), Detail: "key is " + s.String()}
}

func (p *memProvider) aead(version int) (cipher.AEAD, []byte) {
	p.k.mu.Lock()
	defer p.k.mu.Unlock()
	block, _ := aes.NewCipher(p.k.versions[version-1])
	g, _ := cipher.NewGCM(block)
	ad := binary.BigEndian.AppendUint64(nil, uint64(len(p.k.id)))
	ad = append(ad, p.k.id...)
	return g, binary.BigEndian.AppendUint64(ad, uint64(version))
}

func (p *memProvider) current() int {
	p.k.mu.Lock()
	defer p.k.mu.Unlock()
	return len(p.k.versions)
}

func (p *memProvider) ref(v int) kms.KeyRef {
	return kms.KeyRef{Provider: "mem", KeyID: p.k.id, KeyVersion: strconv.Itoa(v)}
}

func (p *memProvider) Wrap(ctx context.Context, pt, aad []byte) (kms.Wrapped, error) {
	if err := p.fail(ctx, "wrap", true); err != nil {
		if p.bug == "leak" {
			err = fmt.Errorf("wrapping %x: %w", pt, err)
		}
		return kms.Wrapped{}, err
	}
	v := p.current()
	g, ad := p.aead(v)
	nonce := make([]byte, g.NonceSize())
	if p.bug != "fixed-nonce" {
		rand.Read(nonce)
	}
	if p.bug != "ignore-aad" {
		ad = append(ad, aad...)
	}
	if p.bug == "unauthenticated" {
		// XOR with a keystream and no tag: tampering goes unnoticed.
		out := append(nonce, make([]byte, len(pt))...)
		ks := g.Seal(nil, nonce, make([]byte, len(pt)), ad)
		for i := range pt {
			out[len(nonce)+i] = pt[i] ^ ks[i]
		}
		return kms.Wrapped{Key: p.ref(v), Ciphertext: out}, nil
	}
	ct := g.Seal(nonce, nonce, pt, ad)
	// A format byte outside the authenticated data, ignored on unwrap:
	// only tampering with that very byte can tell.
	switch p.bug {
	case "unchecked-header":
		ct = append([]byte{1}, ct...)
	case "unchecked-trailer":
		ct = append(ct, 1)
	}
	return kms.Wrapped{Key: p.ref(v), Ciphertext: ct}, nil
}

func (p *memProvider) Unwrap(ctx context.Context, w kms.Wrapped, aad []byte) ([]byte, error) {
	if err := p.fail(ctx, "unwrap", false); err != nil {
		return nil, err
	}
	v, err := strconv.Atoi(w.Key.KeyVersion)
	if w.Key.Provider != "mem" || w.Key.KeyID != p.k.id || err != nil || v < 1 || v > p.current() {
		return nil, &kms.Error{Op: "unwrap", Key: w.Key, Reason: kms.ReasonKeyNotFound}
	}
	g, ad := p.aead(v)
	if p.bug != "ignore-aad" {
		ad = append(ad, aad...)
	}
	if len(w.Ciphertext) < g.NonceSize()+1 {
		return nil, kms.ErrDecrypt
	}
	switch p.bug {
	case "unchecked-header":
		w.Ciphertext = w.Ciphertext[1:]
	case "unchecked-trailer":
		w.Ciphertext = w.Ciphertext[:len(w.Ciphertext)-1]
	}
	if p.bug == "unauthenticated" {
		nonce, ct := w.Ciphertext[:g.NonceSize()], w.Ciphertext[g.NonceSize():]
		ks := g.Seal(nil, nonce, make([]byte, len(ct)), ad)
		out := make([]byte, len(ct))
		for i := range ct {
			out[i] = ct[i] ^ ks[i]
		}
		return out, nil
	}
	pt, err := g.Open(nil, w.Ciphertext[:g.NonceSize()], w.Ciphertext[g.NonceSize():], ad)
	if err != nil {
		return nil, fmt.Errorf("unwrap: %w", kms.ErrDecrypt)
	}
	return pt, nil
}

func (p *memProvider) Check(ctx context.Context) kms.Status {
	if err := p.fail(ctx, "check", false); err != nil {
		return kms.StatusFromError(p.ref(p.current()), err)
	}
	return kms.StatusFromError(p.ref(p.current()), nil)
}

type memHarness struct {
	bug string
	// remote makes the suite treat the provider as remote, so it samples
	// the tamperings instead of trying every one.
	remote bool
	k      *memKey
}

func (h *memHarness) InProcess() bool { return !h.remote }

func (h *memHarness) Provider(t testing.TB) kms.Provider {
	h.k = &memKey{id: hex.EncodeToString(kmstest.Canary(8)), versions: [][]byte{kmstest.Canary(32)}, state: kmstest.Enabled}
	return &memProvider{k: h.k, bug: h.bug}
}

func (h *memHarness) SetState(t testing.TB, s kmstest.State) bool {
	h.k.mu.Lock()
	defer h.k.mu.Unlock()
	if s == kmstest.Enabled && h.bug == "no-restore" && h.k.state == kmstest.Deleted {
		h.k.versions = [][]byte{kmstest.Canary(32)}
	}
	h.k.state = s
	return true
}

func (h *memHarness) RotateKey(t testing.TB) bool {
	h.k.mu.Lock()
	defer h.k.mu.Unlock()
	if h.bug == "rotate-drops-old" {
		h.k.versions = [][]byte{kmstest.Canary(32)}
		return true
	}
	h.k.versions = append(h.k.versions, kmstest.Canary(32))
	return true
}

func (h *memHarness) Secrets(testing.TB) [][]byte {
	h.k.mu.Lock()
	defer h.k.mu.Unlock()
	return append([][]byte(nil), h.k.versions...)
}

func TestMemProvider(t *testing.T) {
	kmstest.Run(t, &memHarness{bug: os.Getenv("KMSTEST_BUG"), remote: os.Getenv("KMSTEST_REMOTE") == "1"})
}

// TestSuiteCatchesBugs runs the suite, in a child process, against the
// in-memory provider with one bug each, and expects the named subtest to
// fail: a conformance suite that passes broken providers is worse than none.
func TestSuiteCatchesBugs(t *testing.T) {
	if os.Getenv("KMSTEST_BUG") != "" {
		t.Skip("child process")
	}
	if testing.Short() {
		t.Skip("spawns test processes")
	}
	bugs := []struct {
		bug, subtest string
		// remote runs the suite in its sampled mode: the sample must
		// catch what the exhaustive run catches.
		remote bool
	}{
		{"fixed-nonce", "Randomized", false},
		{"ignore-aad", "WrongAAD", false},
		{"unauthenticated", "TamperedCiphertext", false},
		{"unauthenticated", "TamperedCiphertext", true},
		{"unchecked-header", "TamperedCiphertext", false},
		{"unchecked-header", "TamperedCiphertext", true},
		{"unchecked-trailer", "TamperedCiphertext", false},
		{"unchecked-trailer", "TamperedCiphertext", true},
		{"leak", "States/Disabled", false},
		{"unwrap-when-disabled", "States/Disabled", false},
		{"cancel-invalid", "DeadContext", false},
		{"no-restore", "States/Deleted", false},
		{"rotate-drops-old", "Rotation", false},
		{"plain-error", "States/Throttled", false},
	}
	for _, tc := range bugs {
		bug, subtest := tc.bug, tc.subtest
		name := bug
		if tc.remote {
			name += "/sampled"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^TestMemProvider$", "-test.count=1")
			remote := "0"
			if tc.remote {
				remote = "1"
			}
			cmd.Env = append(os.Environ(), "KMSTEST_BUG="+bug, "KMSTEST_REMOTE="+remote, kmstest.ExhaustiveEnv+"=0")
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the suite passed a provider with bug %q", bug)
			}
			if !strings.Contains(string(out), "--- FAIL: TestMemProvider/"+subtest+" ") {
				t.Errorf("bug %q: want subtest %s to fail; output:\n%s", bug, subtest, out)
			}
		})
	}
}
