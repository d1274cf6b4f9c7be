package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"
)

// Limits advertised to clients in hello and enforced on every read.
const (
	// MaxMessageSizeBytes is the largest wire message accepted.
	MaxMessageSizeBytes = 48_000_000
	// MaxBSONObjectSize is the largest user document accepted.
	MaxBSONObjectSize = 16 * 1024 * 1024
	// MaxBSONInternalSize is the largest reply document sent: like mongod,
	// command replies may exceed the user limit by 16 KiB of envelope so a
	// maximal document can still be returned inside a cursor batch.
	MaxBSONInternalSize = MaxBSONObjectSize + 16*1024
	// MaxWriteBatchSize is the write batch limit advertised in hello.
	MaxWriteBatchSize = 100_000
	// HeaderLen is the size of the standard message header.
	HeaderLen = 16
)

// ErrInvalidLength reports a message length outside [HeaderLen, max]. The
// stream cannot be resynchronised after it, so the connection must close.
var ErrInvalidLength = errors.New("invalid message length")

// Header is the standard message header shared by all opcodes.
type Header struct {
	MessageLength int32
	RequestID     int32
	ResponseTo    int32
	OpCode        wiremessage.OpCode
}

// Message is one framed wire message, not yet interpreted.
type Message struct {
	Header Header
	// Raw is the whole message, header included; the OP_MSG checksum covers
	// it, so it is kept intact.
	Raw []byte
}

// Body returns the bytes after the header.
func (m *Message) Body() []byte { return m.Raw[HeaderLen:] }

// ReadMessage reads exactly one message from r. maxSize <= 0 means
// MaxMessageSizeBytes. It returns io.EOF if r ends cleanly before the first
// byte, io.ErrUnexpectedEOF if it ends mid-message, and an error wrapping
// ErrInvalidLength if the length prefix is out of range; the length is
// checked before anything is allocated, so a hostile prefix costs nothing.
func ReadMessage(r io.Reader, maxSize int) (*Message, error) {
	if maxSize <= 0 {
		maxSize = MaxMessageSizeBytes
	}
	var hdr [HeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:4]); err != nil {
		return nil, err
	}
	n := int32(binary.LittleEndian.Uint32(hdr[:4]))
	if n < HeaderLen || int64(n) > int64(maxSize) {
		return nil, fmt.Errorf("wire: message length %d outside [%d, %d]: %w", n, HeaderLen, maxSize, ErrInvalidLength)
	}
	raw, err := readBody(r, hdr[:4], int(n))
	if err != nil {
		return nil, fmt.Errorf("wire: reading %d-byte message: %w", n, err)
	}
	return &Message{Header: readHeader(raw), Raw: raw}, nil
}

// initialAlloc is the most ReadMessage allocates before the bytes arrive.
const initialAlloc = 64 << 10

// readBody reads the rest of an n-byte message whose first bytes are
// prefix. The buffer grows as data arrives rather than being sized from the
// untrusted length up front, so a client announcing 48 MB and sending
// nothing costs 64 KiB, not 48 MB, per connection.
func readBody(r io.Reader, prefix []byte, n int) ([]byte, error) {
	raw := make([]byte, len(prefix), min(n, initialAlloc))
	copy(raw, prefix)
	for len(raw) < n {
		chunk := min(n-len(raw), max(len(raw), initialAlloc))
		raw = slices.Grow(raw, chunk)
		if _, err := io.ReadFull(r, raw[len(raw):len(raw)+chunk]); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		raw = raw[:len(raw)+chunk]
	}
	return raw, nil
}

// readHeader decodes the header of raw, which must be at least HeaderLen long.
func readHeader(raw []byte) Header {
	return Header{
		MessageLength: int32(binary.LittleEndian.Uint32(raw[0:])),
		RequestID:     int32(binary.LittleEndian.Uint32(raw[4:])),
		ResponseTo:    int32(binary.LittleEndian.Uint32(raw[8:])),
		OpCode:        wiremessage.OpCode(int32(binary.LittleEndian.Uint32(raw[12:]))),
	}
}

// finishMessage patches the length of the message that starts at dst[start].
func finishMessage(dst []byte, start int) []byte {
	binary.LittleEndian.PutUint32(dst[start:], uint32(len(dst)-start))
	return dst
}

// readInt32 reads a little-endian int32 from the front of src.
func readInt32(src []byte) (int32, []byte, bool) {
	if len(src) < 4 {
		return 0, src, false
	}
	return int32(binary.LittleEndian.Uint32(src)), src[4:], true
}

// readCString reads a NUL-terminated string from the front of src.
func readCString(src []byte) (string, []byte, bool) {
	for i, b := range src {
		if b == 0 {
			return string(src[:i]), src[i+1:], true
		}
	}
	return "", src, false
}
