package gcp

import (
	"context"
	"fmt"
	"hash/crc32"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/cmkdb/cmkdb/internal/kms"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc32c(b []byte) *wrapperspb.Int64Value {
	return wrapperspb.Int64(int64(crc32.Checksum(b, castagnoli)))
}

// aadChecksum is sent only with a non-empty aad: the verified flag of an
// empty field is not something to depend on.
func aadChecksum(aad []byte) *wrapperspb.Int64Value {
	if len(aad) == 0 {
		return nil
	}
	return crc32c(aad)
}

// Wrap implements kms.Provider: Encrypt on the pinned version or the key's
// primary, with aad as additional authenticated data.
func (p *Provider) Wrap(ctx context.Context, plaintext, aad []byte) (kms.Wrapped, error) {
	if err := ctx.Err(); err != nil {
		return kms.Wrapped{}, p.ctxError("wrap", p.ref(p.pinned), err)
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	return p.wrap(ctx, "wrap", plaintext, aad)
}

func (p *Provider) wrap(ctx context.Context, op string, plaintext, aad []byte) (kms.Wrapped, error) {
	ref := p.ref(p.pinned)
	req := &kmspb.EncryptRequest{
		Name:                              p.encryptName(),
		Plaintext:                         plaintext,
		AdditionalAuthenticatedData:       aad,
		PlaintextCrc32C:                   crc32c(plaintext),
		AdditionalAuthenticatedDataCrc32C: aadChecksum(aad),
	}
	var out kms.Wrapped
	err := p.retry(ctx, func() error {
		resp, err := p.client.Encrypt(ctx, req)
		if err != nil {
			return p.explain(ctx, op, ref, err, false)
		}
		version, err := p.verifyEncrypt(op, ref, req, resp)
		if err != nil {
			return err
		}
		out = kms.Wrapped{Key: p.ref(version), Ciphertext: resp.GetCiphertext()}
		return nil
	})
	if err != nil {
		return kms.Wrapped{}, err
	}
	return out, nil
}

// verifyEncrypt checks every integrity field of an Encrypt response and
// returns the version that was used.
func (p *Provider) verifyEncrypt(op string, ref kms.KeyRef, req *kmspb.EncryptRequest, resp *kmspb.EncryptResponse) (string, error) {
	switch {
	case !resp.GetVerifiedPlaintextCrc32C():
		return "", p.integrityError(op, ref, "the service did not verify plaintext_crc32c")
	case req.GetAdditionalAuthenticatedDataCrc32C() != nil && !resp.GetVerifiedAdditionalAuthenticatedDataCrc32C():
		return "", p.integrityError(op, ref, "the service did not verify additional_authenticated_data_crc32c")
	case len(resp.GetCiphertext()) == 0:
		return "", p.integrityError(op, ref, "empty ciphertext")
	case resp.GetCiphertextCrc32C() == nil || resp.GetCiphertextCrc32C().GetValue() != crc32c(resp.GetCiphertext()).GetValue():
		return "", p.integrityError(op, ref, "ciphertext_crc32c does not match the ciphertext")
	}
	version, ok := p.versionOf(resp.GetName())
	if !ok || (p.pinned != "" && version != p.pinned) {
		return "", p.integrityError(op, ref, fmt.Sprintf("the response names %q, not a version of %s", sanitize(resp.GetName()), p.encryptName()))
	}
	return version, nil
}

// Unwrap implements kms.Provider: Decrypt on the key (the ciphertext
// carries its version), with the same aad.
func (p *Provider) Unwrap(ctx context.Context, w kms.Wrapped, aad []byte) ([]byte, error) {
	ref := p.ref(w.Key.KeyVersion)
	if err := ctx.Err(); err != nil {
		return nil, p.ctxError("unwrap", ref, err)
	}
	if w.Key.Provider != ProviderName || w.Key.KeyID != p.keyName {
		return nil, fmt.Errorf("gcp kms unwrap: record names key %s, this provider uses %s: %w", w.Key, p.ref(""), kms.ErrDecrypt)
	}
	if len(w.Ciphertext) == 0 {
		return nil, fmt.Errorf("gcp kms unwrap %s: empty ciphertext: %w", ref, kms.ErrDecrypt)
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	return p.unwrap(ctx, "unwrap", ref, w.Ciphertext, aad)
}

func (p *Provider) unwrap(ctx context.Context, op string, ref kms.KeyRef, ciphertext, aad []byte) ([]byte, error) {
	req := &kmspb.DecryptRequest{
		Name:                              p.keyName,
		Ciphertext:                        ciphertext,
		AdditionalAuthenticatedData:       aad,
		CiphertextCrc32C:                  crc32c(ciphertext),
		AdditionalAuthenticatedDataCrc32C: aadChecksum(aad),
	}
	var out []byte
	err := p.retry(ctx, func() error {
		resp, err := p.client.Decrypt(ctx, req)
		if err != nil {
			return p.explain(ctx, op, ref, err, true)
		}
		if resp.GetPlaintextCrc32C() == nil || resp.GetPlaintextCrc32C().GetValue() != crc32c(resp.GetPlaintext()).GetValue() {
			clear(resp.GetPlaintext())
			return p.integrityError(op, ref, "plaintext_crc32c does not match the plaintext")
		}
		out = resp.GetPlaintext()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// explain classifies a failed Encrypt or Decrypt. FAILED_PRECONDITION and
// INVALID_ARGUMENT do not always say what is wrong, so the key is looked
// at: a key of the wrong purpose or a version that is not enabled is a
// verdict on the key; undecryptable input on a sound key is ErrDecrypt.
func (p *Provider) explain(ctx context.Context, op string, ref kms.KeyRef, err error, decrypt bool) error {
	if ctx.Err() != nil {
		return p.ctxError(op, ref, ctx.Err())
	}
	if isChecksumError(err) {
		return p.integrityError(op, ref, "Cloud KMS found the request damaged (CRC32C mismatch)")
	}
	ke := p.classify(ctx, op, ref, err)
	precondition, invalid := isCode(err, codes.FailedPrecondition), isCode(err, codes.InvalidArgument)
	if ke.Reason != kms.ReasonServerError || !(precondition || invalid) {
		return ke
	}
	if r, detail, ok := p.diagnose(ctx, precondition); ok {
		return p.fail(op, ref, r, detail+" ("+ke.Detail+")")
	}
	if decrypt && invalid {
		return fmt.Errorf("gcp kms %s %s: Cloud KMS could not decrypt the record (altered ciphertext, other associated data, or another key's ciphertext): %w",
			op, ref, kms.ErrDecrypt)
	}
	return ke
}

// diagnose looks at the key after an unexplained refusal. It checks the
// purpose, and with versions the state of the version Encrypt would use.
// It reports false when the key looks fine or cannot be read.
func (p *Provider) diagnose(ctx context.Context, versions bool) (kms.Reason, string, bool) {
	ck, err := p.client.GetCryptoKey(ctx, &kmspb.GetCryptoKeyRequest{Name: p.keyName})
	if err != nil {
		return "", "", false
	}
	if ck.GetPurpose() != kmspb.CryptoKey_ENCRYPT_DECRYPT {
		return kms.ReasonWrongKeyType, wrongPurpose(ck.GetPurpose()), true
	}
	if !versions {
		return "", "", false
	}
	v := ck.GetPrimary()
	if p.pinned != "" {
		if v, err = p.client.GetCryptoKeyVersion(ctx, &kmspb.GetCryptoKeyVersionRequest{Name: p.encryptName()}); err != nil {
			return "", "", false
		}
	}
	if v == nil {
		return kms.ReasonKeyDisabled, "the key has no primary version", true
	}
	if r, bad := stateReason(v.GetState()); bad {
		return r, stateDetail(v), true
	}
	return "", "", false
}

func wrongPurpose(pp kmspb.CryptoKey_CryptoKeyPurpose) string {
	return fmt.Sprintf("the key's purpose is %s; a symmetric ENCRYPT_DECRYPT key is required", pp)
}

func stateDetail(v *kmspb.CryptoKeyVersion) string {
	return fmt.Sprintf("key version %s is %s", v.GetName(), v.GetState())
}
