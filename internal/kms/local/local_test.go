package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kms/kmstest"
)

func newKey(t *testing.T) (string, *Provider) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cmk.json")
	if _, err := Create(path); err != nil {
		t.Fatal(err)
	}
	p, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, p
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cmk.json")
	in, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if m := mode(t, path); m != 0o600 {
		t.Errorf("key file mode %v, want 0600", m)
	}
	if !regexp.MustCompile(`^local-[0-9a-f]{16}$`).MatchString(in.Key.KeyID) {
		t.Errorf("key id %q", in.Key.KeyID)
	}
	if in.Key.Provider != "local" || in.Key.KeyVersion != "1" || in.State != StateEnabled || len(in.Versions) != 1 {
		t.Errorf("Info = %+v", in)
	}
	// The documented format, as a reader of the file sees it.
	raw, _ := os.ReadFile(path)
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"format", "keyId", "state", "versions", "checksum"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("key file has no %q", k)
		}
	}
	if _, err := Create(path); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Create over an existing key file: %v, want fs.ErrExist", err)
	}
	in2, _ := Inspect(path)
	if in2.Key != in.Key {
		t.Errorf("failed Create changed the key: %v -> %v", in.Key, in2.Key)
	}
	if _, err := Create(filepath.Join(t.TempDir(), "cmk.json")); err != nil {
		t.Fatal(err)
	}
}

func TestRotateKeepsVersionsAndMode(t *testing.T) {
	path, p := newKey(t)
	w1, err := p.Wrap(ctx(t), []byte("0123456789abcdef"), nil)
	if err != nil {
		t.Fatal(err)
	}
	before := p.Check(ctx(t))
	time.Sleep(2 * time.Millisecond)
	in, err := Rotate(path)
	if err != nil {
		t.Fatal(err)
	}
	if in.Key.KeyVersion != "2" || len(in.Versions) != 2 {
		t.Fatalf("after rotation: %+v", in)
	}
	if m := mode(t, path); m != 0o600 {
		t.Errorf("mode after rotation %v", m)
	}
	st := p.Check(ctx(t))
	if st.Key != in.Key || !st.LastRotated.After(before.LastRotated) || !st.LastRotated.Equal(in.LastRotated()) {
		t.Errorf("Check after rotation: key %v last rotated %v (before %v)", st.Key, st.LastRotated, before.LastRotated)
	}
	if got, err := p.Unwrap(ctx(t), w1, nil); err != nil || string(got) != "0123456789abcdef" {
		t.Fatalf("old version: %v", err)
	}
}

func TestTransitions(t *testing.T) {
	type op struct {
		name string
		fn   func(string) (Info, error)
	}
	var (
		enable   = op{"enable", Enable}
		disable  = op{"disable", Disable}
		del      = op{"delete", Delete}
		schedule = op{"schedule", ScheduleDeletion}
		restore  = op{"restore", Restore}
		rotate   = op{"rotate", Rotate}
	)
	cases := []struct {
		from State
		op   op
		want State // "" means ErrState
	}{
		{StateEnabled, enable, StateEnabled},
		{StateEnabled, disable, StateDisabled},
		{StateEnabled, del, StateDeleted},
		{StateEnabled, schedule, StatePendingDeletion},
		{StateEnabled, restore, ""},
		{StateEnabled, rotate, StateEnabled},
		{StateDisabled, enable, StateEnabled},
		{StateDisabled, disable, StateDisabled},
		{StateDisabled, rotate, StateDisabled},
		{StateDisabled, restore, ""},
		{StateDeleted, enable, ""},
		{StateDeleted, disable, ""},
		{StateDeleted, rotate, ""},
		{StateDeleted, schedule, ""},
		{StateDeleted, del, StateDeleted},
		{StateDeleted, restore, StateEnabled},
		{StatePendingDeletion, enable, ""},
		{StatePendingDeletion, rotate, ""},
		{StatePendingDeletion, del, StateDeleted},
		{StatePendingDeletion, restore, StateEnabled},
	}
	into := map[State]func(string) (Info, error){
		StateEnabled: Inspect, StateDisabled: Disable, StateDeleted: Delete, StatePendingDeletion: ScheduleDeletion,
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s/%s", c.from, c.op.name), func(t *testing.T) {
			path, _ := newKey(t)
			if _, err := into[c.from](path); err != nil {
				t.Fatal(err)
			}
			in, err := c.op.fn(path)
			if c.want == "" {
				if !errors.Is(err, ErrState) {
					t.Fatalf("err = %v, want ErrState", err)
				}
				if now, _ := Inspect(path); now.State != c.from {
					t.Fatalf("refused operation changed state to %s", now.State)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if in.State != c.want {
				t.Fatalf("state %s, want %s", in.State, c.want)
			}
		})
	}
}

func TestSetValidity(t *testing.T) {
	path, p := newKey(t)
	now := time.Now()
	if _, err := SetValidity(path, now.Add(time.Hour), now); err == nil {
		t.Error("expiry before activation accepted")
	}
	in, err := SetValidity(path, now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if in.NotBefore.IsZero() || in.ExpiresAt.IsZero() {
		t.Fatalf("window not recorded: %+v", in)
	}
	if st := p.Check(ctx(t)); st.Validity != kms.Valid {
		t.Fatalf("inside the window: %v %s", st.Validity, st.Reason)
	}
	// The clock moves past expiry without anyone touching the file.
	p.now = func() time.Time { return now.Add(2 * time.Hour) }
	if st := p.Check(ctx(t)); st.Reason != kms.ReasonKeyExpired {
		t.Fatalf("after expiry: %v %s", st.Validity, st.Reason)
	}
	p.now = func() time.Time { return now.Add(-2 * time.Hour) }
	if st := p.Check(ctx(t)); st.Reason != kms.ReasonKeyNotYetActive {
		t.Fatalf("before activation: %v %s", st.Validity, st.Reason)
	}
}

// validFile returns the bytes of a freshly created key file.
func validFile(t testing.TB) []byte {
	path := filepath.Join(t.TempDir(), "cmk.json")
	if _, err := Create(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// edit decodes a valid file, changes it, and re-encodes it, optionally with
// a recomputed checksum (to reach validation behind the checksum).
func edit(t testing.TB, reseal bool, change func(m map[string]any)) []byte {
	var m map[string]any
	if err := json.Unmarshal(validFile(t), &m); err != nil {
		t.Fatal(err)
	}
	change(m)
	b, _ := json.Marshal(m)
	if !reseal {
		return b
	}
	f := new(keyFile)
	if err := json.Unmarshal(b, f); err != nil {
		t.Fatal(err)
	}
	out, err := f.marshal()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func version0(m map[string]any) map[string]any {
	return m["versions"].([]any)[0].(map[string]any)
}

func TestCorruptFile(t *testing.T) {
	good := validFile(t)
	cases := []struct {
		name, want string
		data       []byte
	}{
		{"empty", "JSON", nil},
		{"torn", "JSON", good[:len(good)/2]},
		{"not json", "JSON", []byte("-----BEGIN PRIVATE KEY-----")},
		{"json null", "format", []byte("null")},
		{"trailing garbage", "JSON", append(bytes.Clone(good), "x"...)},
		{"state edited", "checksum", edit(t, false, func(m map[string]any) { m["state"] = "disabled" })},
		{"material edited", "checksum", edit(t, false, func(m map[string]any) {
			version0(m)["material"] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
		})},
		{"checksum removed", "checksum", edit(t, false, func(m map[string]any) { delete(m, "checksum") })},
		{"format 2", "format version 2", edit(t, true, func(m map[string]any) { m["format"] = 2 })},
		{"unknown state", "unknown state", edit(t, true, func(m map[string]any) { m["state"] = "revoked" })},
		{"bad key id", "key id", edit(t, true, func(m map[string]any) { m["keyId"] = "a\nb" })},
		{"no versions", "no key versions", edit(t, true, func(m map[string]any) { m["versions"] = []any{} })},
		{"short material", "16 bytes", edit(t, true, func(m map[string]any) { version0(m)["material"] = "AAAAAAAAAAAAAAAAAAAAAA==" })},
		{"bad base64", "JSON", edit(t, false, func(m map[string]any) { version0(m)["material"] = "!!" })},
		{"version 0", "start at 1", edit(t, true, func(m map[string]any) { version0(m)["version"] = 0 })},
		{"duplicate version", "twice", edit(t, true, func(m map[string]any) {
			vs := m["versions"].([]any)
			m["versions"] = append(vs, vs[0])
		})},
		{"no createdAt", "missing time", edit(t, true, func(m map[string]any) { delete(version0(m), "createdAt") })},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cmk.json")
			if err := os.WriteFile(path, c.data, 0o600); err != nil {
				t.Fatal(err)
			}
			p, _ := Open(path)
			st := p.Check(ctx(t))
			if st.Validity != kms.Invalid || st.Reason != kms.ReasonKeyMalformed {
				t.Fatalf("Check = %v %s (%s)", st.Validity, st.Reason, st.Detail)
			}
			if !strings.Contains(st.Detail, c.want) || !strings.Contains(st.Detail, path) {
				t.Errorf("detail %q should name the file and say %q", st.Detail, c.want)
			}
			if _, err := p.Wrap(ctx(t), make([]byte, 32), nil); !errors.Is(err, kms.ErrKeyMalformed) {
				t.Errorf("Wrap: %v", err)
			}
			// Admin commands refuse to rewrite (and so hide) a corrupt file.
			if _, err := Rotate(path); !errors.Is(err, kms.ErrKeyMalformed) {
				t.Errorf("Rotate on a corrupt file: %v", err)
			}
			if now, _ := os.ReadFile(path); !bytes.Equal(now, c.data) {
				t.Error("a corrupt key file was rewritten")
			}
		})
	}
}

func TestReadFailures(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("x"), 0o600)
	cases := []struct {
		name, path string
		want       kms.Reason
	}{
		{"missing", filepath.Join(dir, "none.json"), kms.ReasonKeyNotFound},
		{"missing dir", filepath.Join(dir, "nodir", "cmk.json"), kms.ReasonKeyNotFound},
		{"parent is a file", filepath.Join(file, "cmk.json"), kms.ReasonKeyNotFound},
		{"a directory", dir, kms.ReasonKeyMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, _ := Open(c.path)
			st := p.Check(ctx(t))
			if st.Reason != c.want || st.Validity != c.want.Validity() {
				t.Fatalf("Check = %v %s (%s), want %s", st.Validity, st.Reason, st.Detail, c.want)
			}
		})
	}
	t.Run("mode 000", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root reads files whatever their mode; the conformance suite injects EACCES instead")
		}
		path, p := newKey(t)
		os.Chmod(path, 0)
		if st := p.Check(ctx(t)); st.Reason != kms.ReasonPermissionDenied {
			t.Fatalf("Check = %v %s", st.Validity, st.Reason)
		}
	})
	t.Run("fifo", func(t *testing.T) {
		// Reading a FIFO would block forever; it is not a key file.
		path := filepath.Join(t.TempDir(), "cmk.json")
		if err := mkfifo(path); err != nil {
			t.Skip("no FIFOs here:", err)
		}
		p, _ := Open(path)
		if st := p.Check(ctx(t)); st.Reason != kms.ReasonKeyMalformed {
			t.Fatalf("Check = %v %s", st.Validity, st.Reason)
		}
	})
	t.Run("last key named", func(t *testing.T) {
		path, p := newKey(t)
		key := p.Check(ctx(t)).Key
		os.Remove(path)
		if st := p.Check(ctx(t)); st.Key != key || !strings.Contains(st.Detail, key.KeyID) {
			t.Fatalf("a vanished key file should still be reported under the key last seen: %+v", st)
		}
	})
}

func TestUnwrapNamesItsKey(t *testing.T) {
	_, p := newKey(t)
	w, err := p.Wrap(ctx(t), make([]byte, 32), []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	_, other := newKey(t)
	refs := map[string]func(kms.KeyRef) kms.KeyRef{
		"other provider": func(r kms.KeyRef) kms.KeyRef { r.Provider = "aws"; return r },
		"unknown version": func(r kms.KeyRef) kms.KeyRef {
			r.KeyVersion = "7"
			return r
		},
		"version not a number": func(r kms.KeyRef) kms.KeyRef { r.KeyVersion = "v1"; return r },
		"no version":           func(r kms.KeyRef) kms.KeyRef { r.KeyVersion = ""; return r },
	}
	for name, f := range refs {
		tw := kms.Wrapped{Key: f(w.Key), Ciphertext: w.Ciphertext}
		if _, err := p.Unwrap(ctx(t), tw, []byte("a")); !errors.Is(err, kms.ErrKeyNotFound) {
			t.Errorf("%s: %v, want KEY_NOT_FOUND", name, err)
		}
	}
	_, err = other.Unwrap(ctx(t), w, []byte("a"))
	if !errors.Is(err, kms.ErrKeyNotFound) || !strings.Contains(err.Error(), w.Key.KeyID) {
		t.Errorf("another key file: %v, want KEY_NOT_FOUND naming %s", err, w.Key.KeyID)
	}
}

// The AAD encoding must be injective: moving bytes between the key id and
// the caller's aad must change it.
func TestAdditionalDataBoundaries(t *testing.T) {
	seen := map[string]string{}
	for _, c := range []struct {
		id  string
		ver int
		aad string
	}{
		{"ab", 1, "c"}, {"a", 1, "bc"}, {"abc", 1, ""}, {"ab", 2, "c"}, {"ab", 1, "c\x00"}, {"", 1, "abc"},
	} {
		ad := string(additionalData(c.id, c.ver, []byte(c.aad)))
		name := fmt.Sprintf("%q/%d/%q", c.id, c.ver, c.aad)
		if prev, ok := seen[ad]; ok {
			t.Errorf("%s and %s give the same additional data", prev, name)
		}
		seen[ad] = name
	}
}

// Leftover temporary files from a crashed writer are never read and are
// cleaned by the next admin command; readers only ever see a whole file.
func TestLeftoverTempFiles(t *testing.T) {
	path, p := newKey(t)
	junk := filepath.Join(filepath.Dir(path), tempPrefix(path)+"12345")
	if err := os.WriteFile(junk, []byte(`{"format":1,"torn`), 0o600); err != nil {
		t.Fatal(err)
	}
	if st := p.Check(ctx(t)); st.Validity != kms.Valid {
		t.Fatalf("a leftover temp file disturbed the key: %v %s", st.Validity, st.Reason)
	}
	if _, err := Rotate(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(junk); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("leftover temp file not cleaned: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want only the key file", names)
	}
}

// Readers racing with rewrites see the old file or the new one, never a
// partial one; concurrent admin commands lose no rotation.
func TestAtomicRewrite(t *testing.T) {
	path, p := newKey(t)
	const rotations, writers = 20, 4
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for range 4 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if st := p.Check(context.Background()); st.Validity != kms.Valid {
					t.Errorf("reader saw %v %s (%s)", st.Validity, st.Reason, st.Detail)
					return
				}
			}
		}()
	}
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rotations {
				if _, err := Rotate(path); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	in, err := Inspect(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := 1 + writers*rotations; len(in.Versions) != want || in.Key.KeyVersion != fmt.Sprint(want) {
		t.Errorf("%d versions, current %s; want %d: a concurrent rotation was lost", len(in.Versions), in.Key.KeyVersion, want)
	}
}

func TestRedaction(t *testing.T) {
	f, err := parseKeyFile(validFile(t))
	if err != nil {
		t.Fatal(err)
	}
	m := bytes.Clone(f.Versions[0].Material)
	for _, s := range []string{
		fmt.Sprint(f), fmt.Sprintf("%+v", f), fmt.Sprintf("%#v", f), fmt.Sprintf("%v", *f),
		fmt.Sprint(f.Versions[0]), fmt.Sprintf("%+v", f.Versions), fmt.Sprintf("%#v", f.Versions),
	} {
		kmstest.AssertNoSecret(t, "formatted key file", s, m)
	}
	f.wipe()
	if !bytes.Equal(f.Versions[0].Material, make([]byte, materialSize)) {
		t.Error("wipe left material")
	}
}

func TestOpen(t *testing.T) {
	if _, err := Open(""); err == nil {
		t.Error("Open(\"\") succeeded")
	}
	dir := t.TempDir()
	t.Chdir(dir)
	Create("cmk.json")
	p, err := Open("cmk.json")
	if err != nil {
		t.Fatal(err)
	}
	if p.Path() != filepath.Join(dir, "cmk.json") {
		t.Errorf("Path() = %s", p.Path())
	}
}
