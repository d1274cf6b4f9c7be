package local

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/cmkdb/cmkdb/internal/kms"
)

const (
	formatVersion = 1
	materialSize  = 32 // AES-256
	// maxFileSize bounds what a read allocates: a key file with thousands
	// of versions is a few hundred KiB; anything larger is not a key file.
	maxFileSize = 1 << 20
	maxKeyIDLen = 128
	checksumTag = "sha256:"
)

// State is the lifecycle state recorded in a key file.
type State string

const (
	StateEnabled         State = "enabled"
	StateDisabled        State = "disabled"
	StateDeleted         State = "deleted"
	StatePendingDeletion State = "pending_deletion"
)

func (s State) known() bool {
	switch s {
	case StateEnabled, StateDisabled, StateDeleted, StatePendingDeletion:
		return true
	}
	return false
}

// keyFile is the on-disk form. It holds key material, so it is only ever
// short-lived: parsed for one call, then wiped.
type keyFile struct {
	Format    int          `json:"format"`
	KeyID     string       `json:"keyId"`
	State     State        `json:"state"`
	NotBefore *time.Time   `json:"notBefore,omitempty"`
	ExpiresAt *time.Time   `json:"expiresAt,omitempty"`
	Versions  []keyVersion `json:"versions"`
	// Checksum catches accidental corruption (a torn copy, a bad editor
	// save, a flipped bit) so it is reported as KEY_MALFORMED instead of
	// silently becoming another key or state. It is not a MAC: whoever can
	// write this file owns the key anyway.
	Checksum string `json:"checksum"`
}

type keyVersion struct {
	Version   int       `json:"version"`
	CreatedAt time.Time `json:"createdAt"`
	Material  []byte    `json:"material"`
}

// String and GoString keep material out of anything that formats these
// structs (%v, %+v, %#v in a log line or a test failure).
func (v keyVersion) String() string {
	return fmt.Sprintf("{version %d created %s material [REDACTED]}", v.Version, v.CreatedAt.Format(time.RFC3339))
}

func (v keyVersion) GoString() string { return v.String() }

func (f keyFile) String() string {
	return fmt.Sprintf("{key %s state %s versions %v}", f.KeyID, f.State, f.Versions)
}

func (f keyFile) GoString() string { return f.String() }

// wipe zeroes the material. Best effort: the AES key schedule and buffers
// inside encoding/json and crypto/sha256 are out of reach.
func (f *keyFile) wipe() {
	if f == nil {
		return
	}
	for i := range f.Versions {
		m := f.Versions[i].Material
		// To cap: the base64 decoder allocates a little more than it fills.
		clear(m[:cap(m)])
	}
}

func (f *keyFile) current() *keyVersion {
	var cur *keyVersion
	for i := range f.Versions {
		if cur == nil || f.Versions[i].Version > cur.Version {
			cur = &f.Versions[i]
		}
	}
	return cur
}

func (f *keyFile) version(n int) *keyVersion {
	for i := range f.Versions {
		if f.Versions[i].Version == n {
			return &f.Versions[i]
		}
	}
	return nil
}

// malformedError is every reason a key file is rejected. It matches
// kms.ErrKeyMalformed, so the provider and the admin commands classify it
// without string matching.
type malformedError struct {
	msg string
	err error
}

func (e *malformedError) Error() string {
	if e.err != nil {
		return "malformed key file: " + e.msg + ": " + e.err.Error()
	}
	return "malformed key file: " + e.msg
}

func (e *malformedError) Unwrap() error { return e.err }

func (e *malformedError) Is(target error) bool { return target == kms.ErrKeyMalformed }

func malformed(format string, args ...any) error {
	return &malformedError{msg: fmt.Sprintf(format, args...)}
}

// parseKeyFile decodes and verifies a key file. On error nothing it decoded
// survives: partial material is wiped.
func parseKeyFile(data []byte) (*keyFile, error) {
	f := new(keyFile)
	// json.Unmarshal scans data in place, unlike json.Decoder which copies
	// it (material included) into a buffer we could not wipe. Unknown
	// fields are ignored: they are outside the checksum and change nothing.
	if err := json.Unmarshal(data, f); err != nil {
		f.wipe()
		// The decoder's message quotes at most a type name and an offset,
		// never the input.
		return nil, &malformedError{msg: "not valid key file JSON", err: err}
	}
	if err := f.validate(); err != nil {
		f.wipe()
		return nil, err
	}
	if sum := f.checksum(); f.Checksum != sum {
		f.wipe()
		return nil, malformed("checksum mismatch: the file is corrupted or was edited by hand")
	}
	return f, nil
}

func (f *keyFile) validate() error {
	if f.Format != formatVersion {
		return malformed("unsupported format version %d (this cmkdb reads version %d)", f.Format, formatVersion)
	}
	if err := validKeyID(f.KeyID); err != nil {
		return err
	}
	if !f.State.known() {
		return malformed("unknown state %q", truncate(string(f.State)))
	}
	for _, t := range []*time.Time{f.NotBefore, f.ExpiresAt} {
		if t != nil {
			if err := validTime(*t); err != nil {
				return err
			}
			*t = t.UTC()
		}
	}
	if len(f.Versions) == 0 {
		return malformed("no key versions")
	}
	seen := make(map[int]bool, len(f.Versions))
	for i := range f.Versions {
		v := &f.Versions[i]
		if v.Version < 1 {
			return malformed("key version %d: versions start at 1", v.Version)
		}
		if seen[v.Version] {
			return malformed("key version %d appears twice", v.Version)
		}
		seen[v.Version] = true
		if err := validTime(v.CreatedAt); err != nil {
			return fmt.Errorf("key version %d: %w", v.Version, err)
		}
		v.CreatedAt = v.CreatedAt.UTC()
		if len(v.Material) != materialSize {
			return malformed("key version %d: material is %d bytes, want %d", v.Version, len(v.Material), materialSize)
		}
	}
	return nil
}

func validKeyID(id string) error {
	if id == "" || len(id) > maxKeyIDLen {
		return malformed("key id must be 1 to %d characters", maxKeyIDLen)
	}
	// The id is printed in errors, statuses and key references: keep it to
	// characters that cannot forge log lines or break a path.
	for _, c := range []byte(id) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
		if !ok {
			return malformed("key id %q has characters outside [A-Za-z0-9._-]", truncate(id))
		}
	}
	return nil
}

// validTime rejects times that cannot be written back after normalising to
// UTC (RFC 3339 allows only four-digit years), so every file accepted can be
// re-serialised.
func validTime(t time.Time) error {
	if t.IsZero() {
		return malformed("missing time")
	}
	if y := t.UTC().Year(); y < 1 || y > 9999 {
		return malformed("time %d is out of range", y)
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// checksum hashes the fields, length-prefixed, rather than the JSON text: it
// is independent of whitespace and of how a time zone was spelt, and it never
// puts the material through an encoder buffer.
func (f *keyFile) checksum() string {
	h := sha256.New()
	var buf [8]byte
	u64 := func(v uint64) {
		binary.BigEndian.PutUint64(buf[:], v)
		h.Write(buf[:])
	}
	bytesField := func(b []byte) {
		u64(uint64(len(b)))
		h.Write(b)
	}
	timeField := func(t *time.Time) {
		if t == nil {
			u64(0)
			return
		}
		u64(1)
		u64(uint64(t.Unix()))
		u64(uint64(t.Nanosecond()))
	}
	bytesField([]byte("cmkdb local key file v1"))
	u64(uint64(f.Format))
	bytesField([]byte(f.KeyID))
	bytesField([]byte(f.State))
	timeField(f.NotBefore)
	timeField(f.ExpiresAt)
	u64(uint64(len(f.Versions)))
	for i := range f.Versions {
		v := &f.Versions[i]
		u64(uint64(v.Version))
		timeField(&v.CreatedAt)
		bytesField(v.Material)
	}
	return checksumTag + hex.EncodeToString(h.Sum(nil))
}

// marshal seals the checksum and encodes the file. The caller wipes the
// returned bytes after writing them.
func (f *keyFile) marshal() ([]byte, error) {
	f.Checksum = f.checksum()
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode key file: %w", err)
	}
	return append(b, '\n'), nil
}

// errNotRegular: something other than a file (a directory, a FIFO that
// would block the read forever) sits at the key path.
var errNotRegular = errors.New("not a regular file")

// readKeyFile reads the key file into a buffer sized once, so no
// reallocation leaves copies of the material behind.
func readKeyFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "read", Path: path, Err: errNotRegular}
	}
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	// Size from the opened file: writers replace the file by rename, so
	// this inode never changes size under us.
	if fi, err = fh.Stat(); err != nil {
		return nil, err
	}
	if fi.Size() > maxFileSize {
		return nil, &fs.PathError{Op: "read", Path: path, Err: malformed("%d bytes, larger than any key file", fi.Size())}
	}
	buf := make([]byte, fi.Size()+1)
	n, err := io.ReadFull(fh, buf)
	switch {
	case err == io.ErrUnexpectedEOF || err == io.EOF:
		return buf[:n], nil
	case err != nil:
		clear(buf)
		return nil, err
	default:
		clear(buf)
		return nil, &fs.PathError{Op: "read", Path: path, Err: malformed("the file grew while being read")}
	}
}
