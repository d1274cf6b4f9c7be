package gcp

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"

	"github.com/cmkdb/cmkdb/internal/kms"
)

// Check implements kms.Provider: it reads the key (purpose) and the
// version in use (state, creation time), then proves the permissions with
// an Encrypt/Decrypt round trip of a random probe.
func (p *Provider) Check(ctx context.Context) kms.Status {
	st := p.check(ctx)
	st.CheckedAt = time.Now().UTC()
	return st
}

// statusOf turns an error into a Status whose Detail is the error's own
// explanation.
func statusOf(ref kms.KeyRef, err error) kms.Status {
	var ke *kms.Error
	if errors.As(err, &ke) {
		return kms.Status{Validity: ke.Validity(), Reason: ke.Reason, Detail: ke.Detail, Key: ke.Key}
	}
	return kms.StatusFromError(ref, err)
}

// versionInfo is what the metadata says of the version in use.
type versionInfo struct {
	version string
	created time.Time
}

func (p *Provider) check(ctx context.Context) kms.Status {
	ref := p.ref(p.pinned)
	if err := ctx.Err(); err != nil {
		return statusOf(ref, p.ctxError("check", ref, err))
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	info, note, err := p.metadata(ctx)
	if err != nil {
		return statusOf(ref, err)
	}
	if info.version != "" {
		ref = p.ref(info.version)
	}
	probe := make([]byte, 32)
	rand.Read(probe)
	aad := []byte("cmkdb-check-probe")
	w, err := p.wrap(ctx, "check", probe, aad)
	if err != nil {
		return statusOf(ref, err)
	}
	got, err := p.unwrap(ctx, "check", w.Key, w.Ciphertext, aad)
	if errors.Is(err, kms.ErrDecrypt) {
		err = p.fail("check", w.Key, kms.ReasonServerError, "the probe Cloud KMS encrypted did not decrypt")
	}
	if err != nil {
		return statusOf(ref, err)
	}
	if !bytes.Equal(got, probe) {
		return statusOf(ref, p.fail("check", w.Key, kms.ReasonServerError, "the probe decrypted to different bytes"))
	}
	if info.version == "" {
		ref = w.Key
	}
	return kms.Status{Validity: kms.Valid, Key: ref, Detail: note, LastRotated: info.created}
}

// metadata reads the key and the version in use. Reading metadata needs
// cloudkms.cryptoKeys.get and cloudkms.cryptoKeyVersions.get, which the
// least-privilege role (roles/cloudkms.cryptoKeyEncrypterDecrypter) does
// not grant: a denial here is not a verdict, the probe decides, and the
// note says what could not be checked.
func (p *Provider) metadata(ctx context.Context) (versionInfo, string, error) {
	ref := p.ref(p.pinned)
	var ck *kmspb.CryptoKey
	err := p.retry(ctx, func() error {
		var err error
		if ck, err = p.client.GetCryptoKey(ctx, &kmspb.GetCryptoKeyRequest{Name: p.keyName}); err != nil {
			return p.classify(ctx, "check", ref, err)
		}
		return nil
	})
	if errors.Is(err, kms.ErrPermissionDenied) {
		return versionInfo{}, "key metadata not readable (cloudkms.cryptoKeys.get denied): version state and rotation date not checked; " +
			"grant roles/cloudkms.viewer on the key to report them", nil
	}
	if err != nil {
		return versionInfo{}, "", err
	}
	if ck.GetPurpose() != kmspb.CryptoKey_ENCRYPT_DECRYPT {
		return versionInfo{}, "", p.fail("check", ref, kms.ReasonWrongKeyType, wrongPurpose(ck.GetPurpose()))
	}
	name := p.encryptName()
	if p.pinned == "" {
		name = ck.GetPrimary().GetName()
	}
	if name == "" {
		return versionInfo{}, "", p.fail("check", ref, kms.ReasonKeyDisabled, "the key has no primary version: no version can encrypt")
	}
	var v *kmspb.CryptoKeyVersion
	err = p.retry(ctx, func() error {
		var err error
		if v, err = p.client.GetCryptoKeyVersion(ctx, &kmspb.GetCryptoKeyVersionRequest{Name: name}); err != nil {
			return p.classify(ctx, "check", ref, err)
		}
		return nil
	})
	note := ""
	if errors.Is(err, kms.ErrPermissionDenied) && ck.GetPrimary() != nil && p.pinned == "" {
		// The key's own answer includes its primary version.
		v, err = ck.GetPrimary(), nil
		note = "cloudkms.cryptoKeyVersions.get denied: the primary version's state comes from the key"
	}
	if errors.Is(err, kms.ErrPermissionDenied) {
		return versionInfo{}, "key version metadata not readable (cloudkms.cryptoKeyVersions.get denied): version state and rotation date not checked", nil
	}
	if err != nil {
		return versionInfo{}, "", err
	}
	version, ok := p.versionOf(v.GetName())
	if !ok {
		return versionInfo{}, "", p.fail("check", ref, kms.ReasonServerError, "Cloud KMS described another key's version")
	}
	ref = p.ref(version)
	if r, bad := stateReason(v.GetState()); bad {
		return versionInfo{}, "", p.fail("check", ref, r, stateDetail(v))
	}
	info := versionInfo{version: version}
	if t := v.GetCreateTime(); t != nil {
		info.created = t.AsTime().UTC()
	}
	return info, note, nil
}
