package gcptest

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"regexp"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Google's messages for the faults the server injects and the errors it
// reports, as Cloud KMS returns them.
const (
	msgUnavailable   = "The service is currently unavailable."
	msgInternal      = "Internal error encountered."
	msgQuota         = "Quota exceeded for quota metric 'Cryptographic requests' and limit 'Cryptographic requests per minute' of service 'cloudkms.googleapis.com' for consumer 'project_number:%d'."
	msgDecryptFailed = "Decryption failed: verify that 'name' refers to the correct CryptoKey."
	msgDenied        = "Permission '%s' denied on resource '%s' (or it may not exist)."
	msgNotEnabled    = "%s is not enabled, current state is: %s."
	msgChecksum      = "The checksum in field %s did not match the data in field %s."
	msgBadName       = "Resource name [%s] does not match any known pattern."
	// Not seen verbatim: Cloud KMS refuses Encrypt/Decrypt on a key of
	// another purpose with FAILED_PRECONDITION naming the purpose.
	msgWrongPurpose = "%s has purpose %s, but this operation requires a key with purpose ENCRYPT_DECRYPT."
)

// maxData is Cloud KMS's limit on plaintext and on additional
// authenticated data (64 KiB).
const maxData = 64 * 1024

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc(b []byte) int64 { return int64(crc32.Checksum(b, castagnoli)) }

var nameRE = regexp.MustCompile(`^(projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+)(?:/cryptoKeyVersions/([0-9]+))?$`)

// splitName parses a cryptoKey or cryptoKeyVersion resource name.
func splitName(name string) (keyName string, version int, ok bool) {
	m := nameRE.FindStringSubmatch(name)
	if m == nil {
		return "", 0, false
	}
	if m[2] != "" {
		n, err := strconv.Atoi(m[2])
		if err != nil || n < 1 {
			return "", 0, false
		}
		version = n
	}
	return m[1], version, true
}

// intercept records the call, applies the injected faults, and
// authenticates, in that order: a stalled or failing front end answers
// before it looks at credentials; quota is charged to an authenticated
// caller.
func (s *Server) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	method := info.FullMethod[strings.LastIndex(info.FullMethod, "/")+1:]
	md, _ := metadata.FromIncomingContext(ctx)
	call := Call{
		Method:        method,
		RequestParams: first(md, "x-goog-request-params"),
		APIClient:     first(md, "x-goog-api-client"),
		UserAgent:     first(md, "user-agent"),
		Token:         strings.TrimPrefix(first(md, "authorization"), "Bearer "),
	}
	s.mu.Lock()
	s.calls[method]++
	s.last = call
	s.mu.Unlock()

	if !s.Faults.WaitStall(ctx) {
		if ctx.Err() != nil {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		return nil, status.Error(codes.Unavailable, msgUnavailable)
	}
	st := s.Faults.State()
	switch fault := codeOf(st.Failure); fault {
	case codes.OK:
	case codes.Unavailable:
		return nil, status.Error(codes.Unavailable, msgUnavailable)
	case codes.Internal:
		return nil, status.Error(codes.Internal, msgInternal)
	default:
		return nil, status.Error(fault, fault.String())
	}
	principal, err := s.authenticate(ctx)
	s.mu.Lock()
	s.last.Principal = principal
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if st.Throttled {
		return nil, status.Errorf(codes.ResourceExhausted, msgQuota, s.projectNumber())
	}
	return handler(ctx, req)
}

// projectNumber is a stable number for the project, as quota errors name
// the consumer by number.
func (s *Server) projectNumber() uint64 {
	return 100000000000 + uint64(crc32.ChecksumIEEE([]byte(s.opts.Project)))
}

// allowed is the IAM check. It comes before the lookup, so a denied caller
// cannot tell a missing resource from a forbidden one. Call with s.mu held.
func (s *Server) allowed(perm, resource string) error {
	if s.Faults.Denied(perm) {
		return status.Errorf(codes.PermissionDenied, msgDenied, perm, resource)
	}
	return nil
}

// key looks a cryptoKey up. Call with s.mu held.
func (s *Server) key(keyName string) (*cryptoKey, error) {
	k := s.keys[keyName]
	if k == nil || k.hidden {
		return nil, status.Errorf(codes.NotFound, "CryptoKey %s not found.", keyName)
	}
	return k, nil
}

func checksum(field string, data []byte, sum *wrapperspb.Int64Value) error {
	if sum != nil && sum.GetValue() != crc(data) {
		return status.Errorf(codes.InvalidArgument, msgChecksum, field+"_crc32c", field)
	}
	return nil
}

// take reports whether the pending corruption is c, consuming one use.
// Call with s.mu held.
func (s *Server) take(c Corruption) bool {
	if s.corrupt != c || s.corruptN == 0 {
		return false
	}
	if s.corruptN > 0 {
		s.corruptN--
	}
	return true
}

// GetCryptoKey implements kmspb.KeyManagementServiceServer.
func (s *Server) GetCryptoKey(_ context.Context, req *kmspb.GetCryptoKeyRequest) (*kmspb.CryptoKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.allowed(PermGetKey, req.GetName()); err != nil {
		return nil, err
	}
	keyName, v, ok := splitName(req.GetName())
	if !ok || v != 0 {
		return nil, status.Errorf(codes.InvalidArgument, msgBadName, req.GetName())
	}
	k, err := s.key(keyName)
	if err != nil {
		return nil, err
	}
	return keyProto(k), nil
}

// GetCryptoKeyVersion implements kmspb.KeyManagementServiceServer.
func (s *Server) GetCryptoKeyVersion(_ context.Context, req *kmspb.GetCryptoKeyVersionRequest) (*kmspb.CryptoKeyVersion, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.allowed(PermGetVersion, req.GetName()); err != nil {
		return nil, err
	}
	keyName, n, ok := splitName(req.GetName())
	if !ok || n == 0 {
		return nil, status.Errorf(codes.InvalidArgument, msgBadName, req.GetName())
	}
	k, err := s.key(keyName)
	if err != nil {
		return nil, err
	}
	v := k.version(n)
	if v == nil {
		return nil, status.Errorf(codes.NotFound, "CryptoKeyVersion %s not found.", req.GetName())
	}
	return versionProto(k, v), nil
}

// Encrypt implements kmspb.KeyManagementServiceServer: on the key's primary
// version, or on the version the name gives.
func (s *Server) Encrypt(_ context.Context, req *kmspb.EncryptRequest) (*kmspb.EncryptResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.allowed(PermEncrypt, req.GetName()); err != nil {
		return nil, err
	}
	keyName, n, ok := splitName(req.GetName())
	if !ok {
		return nil, status.Errorf(codes.InvalidArgument, msgBadName, req.GetName())
	}
	k, err := s.key(keyName)
	if err != nil {
		return nil, err
	}
	if k.purpose != kmspb.CryptoKey_ENCRYPT_DECRYPT {
		return nil, status.Errorf(codes.FailedPrecondition, msgWrongPurpose, k.name, k.purpose)
	}
	if n == 0 {
		n = k.primary
	}
	v := k.version(n)
	if v == nil {
		return nil, status.Errorf(codes.NotFound, "CryptoKeyVersion %s not found.", k.versionName(n))
	}
	pt, aad := req.GetPlaintext(), req.GetAdditionalAuthenticatedData()
	switch {
	case len(pt) > maxData:
		return nil, status.Errorf(codes.InvalidArgument, "The plaintext must be at most %d bytes.", maxData)
	case len(aad) > maxData:
		return nil, status.Errorf(codes.InvalidArgument, "The additional authenticated data must be at most %d bytes.", maxData)
	}
	if err := checksum("plaintext", pt, req.GetPlaintextCrc32C()); err != nil {
		return nil, err
	}
	if err := checksum("additional_authenticated_data", aad, req.GetAdditionalAuthenticatedDataCrc32C()); err != nil {
		return nil, err
	}
	if v.state != kmspb.CryptoKeyVersion_ENABLED {
		return nil, status.Errorf(codes.FailedPrecondition, msgNotEnabled, k.versionName(n), v.state)
	}
	ct := seal(k, v, pt, aad)
	resp := &kmspb.EncryptResponse{
		Name:                    k.versionName(n),
		Ciphertext:              ct,
		CiphertextCrc32C:        wrapperspb.Int64(crc(ct)),
		VerifiedPlaintextCrc32C: req.GetPlaintextCrc32C() != nil,
		VerifiedAdditionalAuthenticatedDataCrc32C: req.GetAdditionalAuthenticatedDataCrc32C() != nil,
		ProtectionLevel: kmspb.ProtectionLevel_SOFTWARE,
	}
	switch {
	case s.take(CorruptCiphertextCRC):
		resp.CiphertextCrc32C = wrapperspb.Int64(resp.CiphertextCrc32C.GetValue() ^ 1)
	case s.take(CorruptVerifiedPlaintext):
		resp.VerifiedPlaintextCrc32C = false
	case s.take(CorruptVerifiedAAD):
		resp.VerifiedAdditionalAuthenticatedDataCrc32C = false
	case s.take(CorruptName):
		resp.Name = s.KeyRingName() + "/cryptoKeys/another-key/cryptoKeyVersions/1"
	}
	return resp, nil
}

// Decrypt implements kmspb.KeyManagementServiceServer: the name is the
// key; the ciphertext says which version made it.
func (s *Server) Decrypt(_ context.Context, req *kmspb.DecryptRequest) (*kmspb.DecryptResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.allowed(PermDecrypt, req.GetName()); err != nil {
		return nil, err
	}
	keyName, n, ok := splitName(req.GetName())
	if !ok || n != 0 {
		return nil, status.Errorf(codes.InvalidArgument, msgBadName, req.GetName())
	}
	k, err := s.key(keyName)
	if err != nil {
		return nil, err
	}
	if k.purpose != kmspb.CryptoKey_ENCRYPT_DECRYPT {
		return nil, status.Errorf(codes.FailedPrecondition, msgWrongPurpose, k.name, k.purpose)
	}
	ct, aad := req.GetCiphertext(), req.GetAdditionalAuthenticatedData()
	if len(aad) > maxData {
		return nil, status.Errorf(codes.InvalidArgument, "The additional authenticated data must be at most %d bytes.", maxData)
	}
	if err := checksum("ciphertext", ct, req.GetCiphertextCrc32C()); err != nil {
		return nil, err
	}
	if err := checksum("additional_authenticated_data", aad, req.GetAdditionalAuthenticatedDataCrc32C()); err != nil {
		return nil, err
	}
	vn, nonce, sealed, ok := parseCiphertext(ct)
	v := k.version(vn)
	if !ok || v == nil {
		return nil, status.Error(codes.InvalidArgument, msgDecryptFailed)
	}
	if v.state != kmspb.CryptoKeyVersion_ENABLED {
		return nil, status.Errorf(codes.FailedPrecondition, msgNotEnabled, k.versionName(vn), v.state)
	}
	pt, err := newGCM(v.material).Open(nil, nonce, sealed, gcmAAD(k.name, vn, aad))
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, msgDecryptFailed)
	}
	resp := &kmspb.DecryptResponse{
		Plaintext:       pt,
		PlaintextCrc32C: wrapperspb.Int64(crc(pt)),
		UsedPrimary:     vn == k.primary,
		ProtectionLevel: kmspb.ProtectionLevel_SOFTWARE,
	}
	if s.take(CorruptPlaintextCRC) {
		resp.PlaintextCrc32C = wrapperspb.Int64(resp.PlaintextCrc32C.GetValue() ^ 1)
	}
	return resp, nil
}

// The ciphertext: a format byte, the version number, the GCM nonce, then
// the sealed plaintext and tag. GCM authenticates the key name, the
// version and the caller's AAD, so a ciphertext only opens under the key
// and version that made it.
const (
	ctFormat = 0x01
	nonceLen = 12
	ctHeader = 1 + 4 + nonceLen
)

func seal(k *cryptoKey, v *keyVersion, pt, aad []byte) []byte {
	out := make([]byte, ctHeader, ctHeader+len(pt)+16)
	out[0] = ctFormat
	binary.BigEndian.PutUint32(out[1:5], uint32(v.n))
	rand.Read(out[5:ctHeader])
	return newGCM(v.material).Seal(out, out[5:ctHeader], pt, gcmAAD(k.name, v.n, aad))
}

func parseCiphertext(ct []byte) (version int, nonce, sealed []byte, ok bool) {
	if len(ct) < ctHeader+16 || ct[0] != ctFormat || len(ct) > maxData+ctHeader+16 {
		return 0, nil, nil, false
	}
	return int(binary.BigEndian.Uint32(ct[1:5])), ct[5:ctHeader], ct[ctHeader:], true
}

func gcmAAD(keyName string, version int, aad []byte) []byte {
	b := []byte("gcptest/v1")
	for _, f := range [][]byte{[]byte(keyName), []byte(strconv.Itoa(version)), aad} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}

func newGCM(key []byte) cipher.AEAD {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(fmt.Sprintf("gcptest: %v", err)) // keys are always 32 bytes
	}
	g, err := cipher.NewGCM(block)
	if err != nil {
		panic(fmt.Sprintf("gcptest: %v", err))
	}
	return g
}

func algorithm(p kmspb.CryptoKey_CryptoKeyPurpose) kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm {
	switch p {
	case kmspb.CryptoKey_ENCRYPT_DECRYPT:
		return kmspb.CryptoKeyVersion_GOOGLE_SYMMETRIC_ENCRYPTION
	case kmspb.CryptoKey_ASYMMETRIC_SIGN:
		return kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256
	case kmspb.CryptoKey_ASYMMETRIC_DECRYPT:
		return kmspb.CryptoKeyVersion_RSA_DECRYPT_OAEP_2048_SHA256
	case kmspb.CryptoKey_MAC:
		return kmspb.CryptoKeyVersion_HMAC_SHA256
	case kmspb.CryptoKey_RAW_ENCRYPT_DECRYPT:
		return kmspb.CryptoKeyVersion_AES_256_GCM
	}
	return kmspb.CryptoKeyVersion_CRYPTO_KEY_VERSION_ALGORITHM_UNSPECIFIED
}

func keyProto(k *cryptoKey) *kmspb.CryptoKey {
	ck := &kmspb.CryptoKey{
		Name:       k.name,
		Purpose:    k.purpose,
		CreateTime: timestamppb.New(k.created),
		VersionTemplate: &kmspb.CryptoKeyVersionTemplate{
			ProtectionLevel: kmspb.ProtectionLevel_SOFTWARE,
			Algorithm:       algorithm(k.purpose),
		},
		DestroyScheduledDuration: durationpb.New(30 * 24 * time.Hour),
	}
	if v := k.version(k.primary); v != nil && k.purpose == kmspb.CryptoKey_ENCRYPT_DECRYPT {
		ck.Primary = versionProto(k, v)
	}
	return ck
}

func versionProto(k *cryptoKey, v *keyVersion) *kmspb.CryptoKeyVersion {
	pv := &kmspb.CryptoKeyVersion{
		Name:            k.versionName(v.n),
		State:           v.state,
		ProtectionLevel: kmspb.ProtectionLevel_SOFTWARE,
		Algorithm:       algorithm(k.purpose),
		CreateTime:      timestamppb.New(v.created),
	}
	switch v.state {
	case kmspb.CryptoKeyVersion_PENDING_GENERATION:
	case kmspb.CryptoKeyVersion_DESTROY_SCHEDULED:
		pv.GenerateTime = pv.CreateTime
		pv.DestroyTime = timestamppb.New(time.Now().Add(30 * 24 * time.Hour))
	case kmspb.CryptoKeyVersion_DESTROYED:
		pv.GenerateTime = pv.CreateTime
		pv.DestroyTime = timestamppb.Now()
		pv.DestroyEventTime = pv.DestroyTime
	default:
		pv.GenerateTime = pv.CreateTime
	}
	return pv
}
