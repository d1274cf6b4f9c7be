package apiauth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"time"
)

// A nonce is base64url(issued[8] || random[12] || mac[16]) where mac is a
// truncated HMAC-SHA256 of the first 20 bytes under a key only this process
// knows. Nothing is stored per issued nonce, so unauthenticated clients
// cannot grow server state by asking for challenges.
const (
	nonceTimeLen  = 8
	nonceRandLen  = 12
	nonceIDLen    = nonceTimeLen + nonceRandLen
	nonceMACLen   = 16 // 128 bits is ample against forgery; keeps the header short
	nonceRawLen   = nonceIDLen + nonceMACLen
	nonceKeyLen   = 32
	nonceLifetime = 5 * time.Minute
)

var errForgedNonce = errors.New("nonce not issued by this server")

// nonceID identifies a nonce in the replay table; the MAC is not needed once
// the nonce is known to be authentic.
type nonceID [nonceIDLen]byte

type nonceMinter struct {
	key [nonceKeyLen]byte
}

func newNonceMinter() *nonceMinter {
	m := &nonceMinter{}
	// crypto/rand.Read never fails (it aborts the program instead).
	_, _ = rand.Read(m.key[:])
	return m
}

func (m *nonceMinter) mint(now time.Time) string {
	var raw [nonceRawLen]byte
	binary.BigEndian.PutUint64(raw[:nonceTimeLen], uint64(now.UnixNano()))
	_, _ = rand.Read(raw[nonceTimeLen:nonceIDLen])
	copy(raw[nonceIDLen:], m.mac(raw[:nonceIDLen]))
	return base64.RawURLEncoding.EncodeToString(raw[:])
}

// verify checks that nonce was minted with this key and returns when it was
// issued. Expiry is left to the caller, which must first know whether the
// digest itself is right before it may answer stale=true.
func (m *nonceMinter) verify(nonce string) (nonceID, time.Time, error) {
	var id nonceID
	if base64.RawURLEncoding.DecodedLen(len(nonce)) != nonceRawLen {
		return id, time.Time{}, errForgedNonce
	}
	raw, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || len(raw) != nonceRawLen {
		return id, time.Time{}, errForgedNonce
	}
	if !hmac.Equal(raw[nonceIDLen:], m.mac(raw[:nonceIDLen])) {
		return id, time.Time{}, errForgedNonce
	}
	copy(id[:], raw[:nonceIDLen])
	issued := time.Unix(0, int64(binary.BigEndian.Uint64(raw[:nonceTimeLen])))
	return id, issued, nil
}

func (m *nonceMinter) mac(b []byte) []byte {
	h := hmac.New(sha256.New, m.key[:])
	h.Write(b)
	return h.Sum(nil)[:nonceMACLen]
}
