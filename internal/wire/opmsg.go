package wire

import (
	"encoding/binary"
	"hash/crc32"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// requiredFlagMask covers OP_MSG flag bits 0-15: a receiver must reject a
// message with a required bit it does not understand, while bits 16-31 are
// optional and ignored.
const requiredFlagMask wiremessage.MsgFlag = 0xffff

// knownRequiredFlags are the required bits this server understands.
const knownRequiredFlags = wiremessage.ChecksumPresent | wiremessage.MoreToCome

// DocumentSequence is an OP_MSG kind-1 section: documents sent outside the
// body (e.g. the "documents" of an insert) so that a batch is not limited by
// the 16 MiB document size.
type DocumentSequence struct {
	Identifier string
	Documents  []bsoncore.Document
}

// OpMsg is a parsed OP_MSG.
type OpMsg struct {
	Flags     wiremessage.MsgFlag
	Body      bsoncore.Document
	Sequences []DocumentSequence
}

// MoreToCome reports whether the sender expects no reply.
func (m *OpMsg) MoreToCome() bool { return m.Flags&wiremessage.MoreToCome != 0 }

// ParseOpMsg parses and validates an OP_MSG: flags, checksum, sections and
// every document in them. Errors are *mongoerr.Error values fit to send back.
func ParseOpMsg(m *Message) (*OpMsg, error) {
	body := m.Body()
	f, rest, ok := readInt32(body)
	if !ok {
		return nil, mongoerr.New(mongoerr.ProtocolError, "OP_MSG is too short to hold its flag bits")
	}
	flags := wiremessage.MsgFlag(uint32(f))
	if unknown := flags & requiredFlagMask &^ knownRequiredFlags; unknown != 0 {
		return nil, mongoerr.New(mongoerr.ProtocolError, "OP_MSG has unknown required flag bits 0x%x", uint32(unknown))
	}
	if flags&wiremessage.ChecksumPresent != 0 {
		if len(rest) < 4 {
			return nil, mongoerr.New(mongoerr.ProtocolError, "OP_MSG is too short to hold its checksum")
		}
		covered := m.Raw[:len(m.Raw)-4]
		want := binary.LittleEndian.Uint32(m.Raw[len(m.Raw)-4:])
		if crc32c(covered) != want {
			return nil, mongoerr.New(mongoerr.ProtocolError, "OP_MSG checksum does not match contents")
		}
		rest = rest[:len(rest)-4]
	}

	msg := &OpMsg{Flags: flags}
	seen := map[string]bool{}
	for len(rest) > 0 {
		kind := wiremessage.SectionType(rest[0])
		rest = rest[1:]
		switch kind {
		case wiremessage.SingleDocument:
			if msg.Body != nil {
				return nil, mongoerr.New(mongoerr.ProtocolError, "OP_MSG has more than one body section")
			}
			doc, err := readSectionDocument(rest)
			if err != nil {
				return nil, err
			}
			msg.Body = doc
			rest = rest[len(doc):]
		case wiremessage.DocumentSequence:
			seq, n, err := readSequence(rest)
			if err != nil {
				return nil, err
			}
			if seen[seq.Identifier] {
				return nil, mongoerr.New(mongoerr.ProtocolError, "OP_MSG has duplicate document sequence %q", seq.Identifier)
			}
			seen[seq.Identifier] = true
			msg.Sequences = append(msg.Sequences, seq)
			rest = rest[n:]
		default:
			return nil, mongoerr.New(mongoerr.ProtocolError, "OP_MSG has unknown section kind %d", kind)
		}
	}
	if msg.Body == nil {
		return nil, mongoerr.New(mongoerr.ProtocolError, "OP_MSG has no body section")
	}
	return msg, nil
}

// readSectionDocument reads and validates one client document at the front
// of src.
func readSectionDocument(src []byte) (bsoncore.Document, error) {
	return readDocument(src, MaxBSONObjectSize)
}

// readDocument reads and validates one document of at most maxSize bytes at
// the front of src.
func readDocument(src []byte, maxSize int32) (bsoncore.Document, error) {
	l, _, ok := readInt32(src)
	if !ok || l < 5 || int64(l) > int64(len(src)) {
		return nil, mongoerr.New(mongoerr.InvalidBSON, "OP_MSG section document is truncated")
	}
	if l > maxSize {
		return nil, mongoerr.New(mongoerr.BSONObjectTooLarge, "document of %d bytes exceeds the %d-byte limit", l, maxSize)
	}
	doc := bsoncore.Document(src[:l])
	if err := ValidateDocument(doc); err != nil {
		return nil, err
	}
	return doc, nil
}

// readSequence reads a kind-1 section (int32 size, identifier, documents) at
// the front of src and returns it with the number of bytes consumed.
func readSequence(src []byte) (DocumentSequence, int, error) {
	size, _, ok := readInt32(src)
	if !ok || size < 5 || int64(size) > int64(len(src)) {
		return DocumentSequence{}, 0, mongoerr.New(mongoerr.ProtocolError, "OP_MSG document sequence is truncated")
	}
	id, docs, ok := readCString(src[4:size])
	if !ok || id == "" {
		return DocumentSequence{}, 0, mongoerr.New(mongoerr.ProtocolError, "OP_MSG document sequence has no identifier")
	}
	seq := DocumentSequence{Identifier: id}
	for len(docs) > 0 {
		doc, err := readSectionDocument(docs)
		if err != nil {
			return DocumentSequence{}, 0, err
		}
		seq.Documents = append(seq.Documents, doc)
		docs = docs[len(doc):]
	}
	return seq, int(size), nil
}

// Command returns the body with every document sequence appended as an array
// field named by its identifier, the single document commands are written
// against. A sequence whose identifier is also a body field is an error, as
// in mongod.
func (m *OpMsg) Command() (bsoncore.Document, error) {
	if len(m.Sequences) == 0 {
		return m.Body, nil
	}
	size := len(m.Body)
	for _, s := range m.Sequences {
		if _, err := m.Body.LookupErr(s.Identifier); err == nil {
			return nil, mongoerr.New(mongoerr.ProtocolError, "OP_MSG document sequence %q duplicates a field of the body", s.Identifier)
		}
		size += len(s.Identifier) + 6
		for i, d := range s.Documents {
			size += len(d) + 12 + digits(i)
		}
	}
	dst := make([]byte, 0, size)
	idx, dst := bsoncore.AppendDocumentStart(dst)
	dst = append(dst, m.Body[4:len(m.Body)-1]...)
	var key []byte
	for _, s := range m.Sequences {
		aidx, d := bsoncore.AppendArrayElementStart(dst, s.Identifier)
		dst = d
		for i, doc := range s.Documents {
			key = appendIndexKey(key[:0], i)
			dst = append(dst, byte(bsoncore.TypeEmbeddedDocument))
			dst = append(dst, key...)
			dst = append(dst, 0)
			dst = append(dst, doc...)
		}
		dst, _ = bsoncore.AppendArrayEnd(dst, aidx)
	}
	dst, _ = bsoncore.AppendDocumentEnd(dst, idx)
	return dst, nil
}

func digits(i int) int {
	n := 1
	for i >= 10 {
		i /= 10
		n++
	}
	return n
}

func appendIndexKey(dst []byte, i int) []byte {
	var buf [20]byte
	p := len(buf)
	for {
		p--
		buf[p] = byte('0' + i%10)
		i /= 10
		if i == 0 {
			break
		}
	}
	return append(dst, buf[p:]...)
}

// AppendOpMsg appends a complete OP_MSG to dst. If flags has ChecksumPresent
// the CRC-32C is computed and appended.
func AppendOpMsg(dst []byte, requestID, responseTo int32, flags wiremessage.MsgFlag, body []byte, seqs ...DocumentSequence) []byte {
	start := len(dst)
	_, dst = wiremessage.AppendHeaderStart(dst, requestID, responseTo, wiremessage.OpMsg)
	dst = wiremessage.AppendMsgFlags(dst, flags)
	dst = wiremessage.AppendMsgSectionType(dst, wiremessage.SingleDocument)
	dst = append(dst, body...)
	for _, s := range seqs {
		dst = wiremessage.AppendMsgSectionType(dst, wiremessage.DocumentSequence)
		sidx := len(dst)
		dst = append(dst, 0, 0, 0, 0)
		dst = append(dst, s.Identifier...)
		dst = append(dst, 0)
		for _, d := range s.Documents {
			dst = append(dst, d...)
		}
		binary.LittleEndian.PutUint32(dst[sidx:], uint32(len(dst)-sidx))
	}
	if flags&wiremessage.ChecksumPresent != 0 {
		dst = append(dst, 0, 0, 0, 0) // length must count the checksum before it is computed
		dst = finishMessage(dst, start)
		sum := crc32c(dst[start : len(dst)-4])
		binary.LittleEndian.PutUint32(dst[len(dst)-4:], sum)
		return dst
	}
	return finishMessage(dst, start)
}

// crc32c is the OP_MSG checksum: CRC-32C (Castagnoli) of the whole message
// before the checksum field. MakeTable returns a shared, lazily built table
// for Castagnoli, so this allocates nothing after the first call.
func crc32c(b []byte) uint32 {
	return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli))
}
