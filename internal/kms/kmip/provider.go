// Package kmip is the kms.Provider for a KMIP server (KMIP 1.2+), through
// github.com/ovh/kmip-go's client over mutual TLS.
//
// The CMK is an Active AES-256 symmetric key on the server. Wrap is a KMIP
// Encrypt with AES-GCM (a random 12-byte IV chosen here, the caller's aad as
// GCM additional data, a 16-byte tag); the stored ciphertext is
// iv || ciphertext || tag. Unwrap is a KMIP Decrypt with the key whose
// unique identifier the record names, so keys wrapped before a rotation (a
// new key, since KMIP servers such as PyKMIP have no ReKey) keep unwrapping
// while the old key stays Active.
package kmip

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ovh/kmip-go"
	"github.com/ovh/kmip-go/kmipclient"
	"github.com/ovh/kmip-go/payloads"
	"github.com/ovh/kmip-go/ttlv"

	"github.com/cmkdb/cmkdb/internal/backoff"
	"github.com/cmkdb/cmkdb/internal/kms"
)

// ProviderName is the KeyRef.Provider of this package.
const ProviderName = "kmip"

const (
	ivLen  = 12
	tagLen = 16
	// keyBits is the only key size accepted for a CMK.
	keyBits = 256
)

// Config configures a KMIP provider.
type Config struct {
	// Address is host:port of the KMIP server (5696 by convention).
	Address string
	// ServerName overrides the name checked in the server certificate
	// (default: the host of Address).
	ServerName string
	// CAFile is the PEM bundle the server certificate must chain to.
	CAFile string
	// ClientCertFile and ClientKeyFile are the client identity (PEM). The
	// key is a secret: it never appears in errors or logs.
	ClientCertFile string
	ClientKeyFile  string
	// KeyID is the Unique Identifier of the current CMK. Either KeyID or
	// KeyName is required; KeyName is resolved to the newest Active key of
	// that name on first use (Wrap, Unwrap or Check) and again at every
	// Check.
	KeyID   string
	KeyName string
	// PreviousKeyIDs are the uids of earlier CMKs (before rotations) whose
	// records this provider may still unwrap. A record naming any other
	// key is refused: a node configured with one CMK does not unwrap what
	// another CMK wrapped.
	PreviousKeyIDs []string
	// Timeout bounds one attempt (dial + request); default 10 s.
	Timeout time.Duration
	// MaxAttempts is the number of attempts for UNREACHABLE-class
	// failures (default 3); INVALID answers are never retried.
	MaxAttempts int
	// Backoff is the first retry delay (default 100 ms), doubled at each
	// retry, with jitter.
	Backoff time.Duration
}

// Provider implements kms.Provider over KMIP.
type Provider struct {
	cfg    Config
	tlsCfg *tls.Config

	mu    sync.Mutex
	keyID string
	// known are the uids this provider may unwrap with.
	known map[string]bool
}

var _ kms.Provider = (*Provider)(nil)

// New validates cfg and loads the TLS material. It never contacts the
// server, not even to resolve KeyName: a node must be able to start while
// its KMIP server is down (it starts DISABLED, UNREACHABLE, and recovers at
// a later Check) or while its key is revoked, exactly as with every other
// provider; the server's answers are classified by Check, Wrap and Unwrap.
// ctx is unused and kept for the callers' sake.
func New(_ context.Context, cfg Config) (*Provider, error) {
	if cfg.Address == "" {
		return nil, configErr("address is required")
	}
	if cfg.KeyID == "" && cfg.KeyName == "" {
		return nil, configErr("keyId or keyName is required")
	}
	if cfg.CAFile == "" || cfg.ClientCertFile == "" || cfg.ClientKeyFile == "" {
		return nil, configErr("caFile, clientCertFile and clientKeyFile are required (KMIP needs mutual TLS)")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 3
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 100 * time.Millisecond
	}
	cert, err := tls.LoadX509KeyPair(cfg.ClientCertFile, cfg.ClientKeyFile)
	if err != nil {
		// The tls package's messages name the PEM problem, never the
		// material; still, do not pass the error through.
		return nil, configErr("cannot load the client certificate and key (" + cfg.ClientCertFile + ", " + cfg.ClientKeyFile + "): not a matching PEM certificate and private key")
	}
	caPEM, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return nil, configErr("cannot read caFile " + cfg.CAFile)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, configErr("caFile " + cfg.CAFile + " holds no PEM certificate")
	}
	serverName := cfg.ServerName
	if serverName == "" {
		host, _, err := net.SplitHostPort(cfg.Address)
		if err != nil {
			return nil, configErr("address must be host:port")
		}
		serverName = host
	}
	p := &Provider{
		cfg: cfg,
		tlsCfg: &tls.Config{
			Certificates: []tls.Certificate{cert},
			RootCAs:      pool,
			ServerName:   serverName,
			MinVersion:   tls.VersionTLS12,
		},
		keyID: cfg.KeyID,
		known: map[string]bool{},
	}
	for _, id := range append([]string{cfg.KeyID}, cfg.PreviousKeyIDs...) {
		if id != "" {
			p.known[id] = true
		}
	}
	return p, nil
}

func configErr(detail string) error {
	return &kms.Error{Op: "configure", Key: kms.KeyRef{Provider: ProviderName}, Reason: kms.ReasonKeyMalformed, Detail: detail}
}

// SetKeyID makes uid the current CMK (after a rotation: a new key was
// created on the server). Records wrapped under earlier keys keep naming
// them and keep unwrapping.
func (p *Provider) SetKeyID(uid string) {
	p.mu.Lock()
	p.keyID = uid
	p.known[uid] = true
	p.mu.Unlock()
}

func (p *Provider) isKnown(uid string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.known[uid]
}

// Close releases nothing: the provider holds no connection between
// operations (see once).
func (p *Provider) Close() error { return nil }

func (p *Provider) current() kms.KeyRef {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.keyID == "" {
		// KeyName has not resolved yet: name the key the way the
		// operator configured it.
		return p.nameRef()
	}
	return kms.KeyRef{Provider: ProviderName, KeyID: p.keyID}
}

func (p *Provider) nameRef() kms.KeyRef {
	return kms.KeyRef{Provider: ProviderName, KeyID: "name:" + p.cfg.KeyName}
}

// resolved returns the current CMK, resolving KeyName first if it never
// resolved (the server was unreachable, or the key missing or revoked, when
// it was last asked).
func (p *Provider) resolved(ctx context.Context) (kms.KeyRef, error) {
	p.mu.Lock()
	have := p.keyID != ""
	p.mu.Unlock()
	if !have {
		uid, err := p.resolveName(ctx)
		if err != nil {
			return p.current(), err
		}
		p.SetKeyID(uid)
	}
	return p.current(), nil
}

// Wrap implements kms.Provider.
func (p *Provider) Wrap(ctx context.Context, plaintext, aad []byte) (kms.Wrapped, error) {
	ref := p.current()
	if err := ctx.Err(); err != nil {
		return kms.Wrapped{}, p.ctxErr("wrap", ref, err)
	}
	ref, err := p.resolved(ctx)
	if err != nil {
		return kms.Wrapped{}, err
	}
	iv := make([]byte, ivLen)
	if _, err := rand.Read(iv); err != nil {
		return kms.Wrapped{}, &kms.Error{Op: "wrap", Key: ref, Reason: kms.ReasonServerError, Detail: "no randomness for the IV"}
	}
	params := kmip.AES_GCM
	req := &payloads.EncryptRequestPayload{
		UniqueIdentifier:                      ref.KeyID,
		CryptographicParameters:               &params,
		Data:                                  clone(plaintext),
		IVCounterNonce:                        iv,
		AuthenticatedEncryptionAdditionalData: nonNil(aad),
	}
	resp, err := p.checked(ctx, "wrap", ref, req)
	if err != nil {
		return kms.Wrapped{}, err
	}
	er, ok := resp.(*payloads.EncryptResponsePayload)
	if !ok || len(er.AuthenticatedEncryptionTag) != tagLen || len(er.Data) != len(plaintext) {
		return kms.Wrapped{}, &kms.Error{Op: "wrap", Key: ref, Reason: kms.ReasonServerError, Detail: "the server's Encrypt response is not an AES-GCM result with a 16-byte tag"}
	}
	ct := make([]byte, 0, ivLen+len(er.Data)+tagLen)
	ct = append(append(append(ct, iv...), er.Data...), er.AuthenticatedEncryptionTag...)
	return kms.Wrapped{Key: ref, Ciphertext: ct}, nil
}

// Unwrap implements kms.Provider.
func (p *Provider) Unwrap(ctx context.Context, w kms.Wrapped, aad []byte) ([]byte, error) {
	ref := w.Key
	if err := ctx.Err(); err != nil {
		return nil, p.ctxErr("unwrap", ref, err)
	}
	if ref.Provider != ProviderName || ref.KeyID == "" || ref.KeyVersion != "" {
		return nil, &kms.Error{Op: "unwrap", Key: ref, Reason: kms.ReasonKeyNotFound, Detail: "the record does not name a KMIP key"}
	}
	if !p.isKnown(ref.KeyID) && p.cfg.KeyName != "" {
		// Keys sharing the configured name are this CMK's versions: ask
		// the server which they are. If it cannot say (unreachable, or no
		// key of the name is usable), that is the answer: calling the
		// record foreign (ErrDecrypt) would make a node whose KMIP server
		// is down at startup refuse to start, as if its data had been
		// wrapped by another key.
		uid, err := p.resolveName(ctx)
		if err == nil {
			p.SetKeyID(uid)
		} else if !p.isKnown(ref.KeyID) {
			return nil, err
		}
	}
	if !p.isKnown(ref.KeyID) {
		return nil, fmt.Errorf("kms unwrap %s: the record names a KMIP key this provider is not configured for (keyId %s, previousKeyIds): %w", ref, p.current().KeyID, kms.ErrDecrypt)
	}
	if len(w.Ciphertext) < ivLen+tagLen {
		return nil, fmt.Errorf("kms unwrap %s: ciphertext too short: %w", ref, kms.ErrDecrypt)
	}
	ct := w.Ciphertext
	params := kmip.AES_GCM
	req := &payloads.DecryptRequestPayload{
		UniqueIdentifier:                      ref.KeyID,
		CryptographicParameters:               &params,
		Data:                                  clone(ct[ivLen : len(ct)-tagLen]),
		IVCounterNonce:                        clone(ct[:ivLen]),
		AuthenticatedEncryptionAdditionalData: nonNil(aad),
		AuthenticatedEncryptionTag:            clone(ct[len(ct)-tagLen:]),
	}
	resp, err := p.checked(ctx, "unwrap", ref, req)
	if err != nil {
		return nil, err
	}
	dr, ok := resp.(*payloads.DecryptResponsePayload)
	if !ok || len(dr.Data) != len(ct)-ivLen-tagLen {
		return nil, &kms.Error{Op: "unwrap", Key: ref, Reason: kms.ReasonServerError, Detail: "unexpected Decrypt response"}
	}
	return dr.Data, nil
}

// Check implements kms.Provider: the key must exist, be Active, be AES-256,
// and answer an encrypt/decrypt probe.
func (p *Provider) Check(ctx context.Context) kms.Status {
	// KeyName is resolved at every Check (not only until it first
	// succeeds) so that a rotation, a new Active key of the name, is
	// followed.
	if p.cfg.KeyName != "" && ctx.Err() == nil {
		uid, err := p.resolveName(ctx)
		if err != nil {
			return kms.StatusFromError(p.current(), err)
		}
		p.SetKeyID(uid)
	}
	ref := p.current()
	if err := ctx.Err(); err != nil {
		return kms.StatusFromError(ref, p.ctxErr("check", ref, err))
	}
	attrs, err := p.attributes(ctx, "check", ref)
	if err != nil {
		return kms.StatusFromError(ref, err)
	}
	probe := make([]byte, 32)
	_, _ = rand.Read(probe)
	aad := []byte("cmkdb kmip check")
	w, err := p.Wrap(ctx, probe, aad)
	if err == nil {
		var out []byte
		out, err = p.Unwrap(ctx, w, aad)
		if err == nil && string(out) != string(probe) {
			err = &kms.Error{Op: "check", Key: ref, Reason: kms.ReasonServerError, Detail: "the encrypt/decrypt probe returned other bytes"}
		}
	}
	st := kms.StatusFromError(ref, err)
	st.LastRotated = attrs.initial
	if st.Validity == kms.Valid {
		st.Detail = "KMIP key is Active, AES-256, and answers encrypt/decrypt"
	}
	return st
}

type keyAttrs struct {
	state   kmip.State
	alg     kmip.CryptographicAlgorithm
	length  int32
	initial time.Time
}

func attrsRequest(uid string) *payloads.GetAttributesRequestPayload {
	return &payloads.GetAttributesRequestPayload{
		UniqueIdentifier: uid,
		AttributeName: []kmip.AttributeName{kmip.AttributeNameState, kmip.AttributeNameCryptographicAlgorithm,
			kmip.AttributeNameCryptographicLength, kmip.AttributeNameInitialDate},
	}
}

func parseAttrs(op string, ref kms.KeyRef, resp kmip.OperationPayload) (keyAttrs, error) {
	var a keyAttrs
	gr, _ := resp.(*payloads.GetAttributesResponsePayload)
	if gr == nil {
		return a, &kms.Error{Op: op, Key: ref, Reason: kms.ReasonServerError, Detail: "unexpected GetAttributes response"}
	}
	for _, at := range gr.Attribute {
		switch at.AttributeName {
		case kmip.AttributeNameState:
			a.state, _ = at.AttributeValue.(kmip.State)
		case kmip.AttributeNameCryptographicAlgorithm:
			a.alg, _ = at.AttributeValue.(kmip.CryptographicAlgorithm)
		case kmip.AttributeNameCryptographicLength:
			a.length, _ = at.AttributeValue.(int32)
		case kmip.AttributeNameInitialDate:
			a.initial, _ = at.AttributeValue.(time.Time)
		}
	}
	return a, validate(op, ref, a)
}

// attributes reads and validates the key's State, algorithm and length.
func (p *Provider) attributes(ctx context.Context, op string, ref kms.KeyRef) (keyAttrs, error) {
	resp, err := p.do(ctx, op, ref, attrsRequest(ref.KeyID))
	if err != nil {
		return keyAttrs{}, err
	}
	return parseAttrs(op, ref, resp[0])
}

// checked sends GetAttributes and req in one KMIP batch (one round trip):
// the key's State and type are verified on every use, since a KMIP server
// would happily encrypt with an AES-128 key, and since PyKMIP refuses a
// key that is not Active with a bare PermissionDenied.
func (p *Provider) checked(ctx context.Context, op string, ref kms.KeyRef, req kmip.OperationPayload) (kmip.OperationPayload, error) {
	resp, err := p.do(ctx, op, ref, attrsRequest(ref.KeyID), req)
	if err != nil {
		return nil, err
	}
	if _, err := parseAttrs(op, ref, resp[0]); err != nil {
		return nil, err
	}
	return resp[1], nil
}

func validate(op string, ref kms.KeyRef, a keyAttrs) error {
	bad := func(r kms.Reason, detail string) error {
		return &kms.Error{Op: op, Key: ref, Reason: r, Detail: detail}
	}
	switch a.state {
	case kmip.StateActive:
	case kmip.StatePreActive:
		return bad(kms.ReasonKeyNotYetActive, "the KMIP key is Pre-Active: it was never activated")
	case kmip.StateDeactivated:
		return bad(kms.ReasonKeyDisabled, "the KMIP key is Deactivated (revoked)")
	case kmip.StateCompromised:
		return bad(kms.ReasonKeyDisabled, "the KMIP key is Compromised (revoked)")
	case kmip.StateDestroyed, kmip.StateDestroyedCompromised:
		return bad(kms.ReasonKeyDeleted, "the KMIP key is Destroyed")
	default:
		return bad(kms.ReasonKeyMalformed, fmt.Sprintf("the KMIP key has no usable State (%v)", a.state))
	}
	if a.alg != kmip.CryptographicAlgorithmAES || a.length != keyBits {
		return bad(kms.ReasonWrongKeyType, fmt.Sprintf("the KMIP key is %v-%d; an AES-256 symmetric key is required", a.alg, a.length))
	}
	return nil
}

// resolveName finds the newest Active AES-256 key named cfg.KeyName. Every
// key of the name becomes one this provider may unwrap with, usable or not,
// so that a record under a revoked version reaches the server and is
// refused with the key's state rather than as a foreign key's.
func (p *Provider) resolveName(ctx context.Context) (string, error) {
	ref := p.nameRef()
	res, err := p.do(ctx, "locate", ref, &payloads.LocateRequestPayload{
		Attribute: []kmip.Attribute{
			{AttributeName: kmip.AttributeNameName, AttributeValue: kmip.Name{NameValue: p.cfg.KeyName, NameType: kmip.NameTypeUninterpretedTextString}},
			{AttributeName: kmip.AttributeNameObjectType, AttributeValue: kmip.ObjectTypeSymmetricKey},
		},
	})
	if err != nil {
		return "", err
	}
	lr, _ := res[0].(*payloads.LocateResponsePayload)
	if lr == nil || len(lr.UniqueIdentifier) == 0 {
		return "", &kms.Error{Op: "locate", Key: ref, Reason: kms.ReasonKeyNotFound, Detail: "no KMIP symmetric key has this name"}
	}
	// Several keys may carry the name (a rotation): the newest Active one
	// is current.
	best, bestDate := "", time.Time{}
	var firstErr error
	for _, uid := range lr.UniqueIdentifier {
		p.mu.Lock()
		p.known[uid] = true
		p.mu.Unlock()
		a, err := p.attributes(ctx, "locate", kms.KeyRef{Provider: ProviderName, KeyID: uid})
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if best == "" || a.initial.After(bestDate) {
			best, bestDate = uid, a.initial
		}
	}
	if best == "" {
		return "", firstErr
	}
	return best, nil
}

// retryPolicy waits Backoff·2^(n-1) after failed attempt n, plus up to
// half as much again of jitter.
func (p *Provider) retryPolicy() backoff.Policy {
	return backoff.Policy{Base: p.cfg.Backoff, Low: 1, High: 1.5}
}

// do sends a batch of operations, retrying UNREACHABLE-class failures with
// exponential backoff and jitter, and classifies the outcome.
func (p *Provider) do(ctx context.Context, op string, ref kms.KeyRef, reqs ...kmip.OperationPayload) ([]kmip.OperationPayload, error) {
	var last error
	for attempt := 0; attempt < p.cfg.MaxAttempts; attempt++ {
		if attempt > 0 && !backoff.Wait(ctx, p.retryPolicy().Delay(attempt)) {
			return nil, p.ctxErr(op, ref, ctx.Err())
		}
		resp, err := p.once(ctx, op, ref, reqs)
		if err == nil {
			return resp, nil
		}
		last = err
		if ctx.Err() != nil {
			return nil, p.ctxErr(op, ref, ctx.Err())
		}
		if !errors.Is(err, kms.ErrUnreachable) {
			return nil, err
		}
	}
	return nil, last
}

func (p *Provider) once(ctx context.Context, op string, ref kms.KeyRef, reqs []kmip.OperationPayload) ([]kmip.OperationPayload, error) {
	actx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	// A connection per operation, never one kept between operations: KMIP
	// calls are few (a Check per interval, Wrap and Unwrap when a node
	// unlocks or rotates), and kmip-go's client races with itself when
	// the server closes a connection it holds (a restarted or idle-timing
	// server): its read loop closes the channel a new request is being
	// sent on, a data race and a possible "send on closed channel" panic.
	c, err := kmipclient.DialContext(actx, p.cfg.Address, kmipclient.WithTlsConfig(p.tlsCfg.Clone()))
	if err != nil {
		return nil, p.transportErr(ctx, op, ref, err)
	}
	defer closeClient(c)
	// Roundtrip rather than Batch: a server that stops at the first
	// failed item (PyKMIP) answers fewer items than were sent, which Batch
	// reports as a bare "Batch count mismatch".
	msg := kmip.NewRequestMessage(c.Version(), reqs...)
	resp, err := c.Roundtrip(actx, &msg)
	if err != nil {
		return nil, p.transportErr(ctx, op, ref, err)
	}
	out := make([]kmip.OperationPayload, len(reqs))
	for i, bi := range resp.BatchItem {
		if i >= len(reqs) {
			break
		}
		if bi.ResultStatus != kmip.ResultStatusSuccess {
			return nil, p.resultErr(ctx, op, ref, reqs[i], bi)
		}
		out[i] = bi.ResponsePayload
	}
	if len(resp.BatchItem) != len(reqs) {
		return nil, &kms.Error{Op: op, Key: ref, Reason: kms.ReasonServerError, Detail: fmt.Sprintf("the KMIP server answered %d batch items for %d requests", len(resp.BatchItem), len(reqs))}
	}
	return out, nil
}

// closeClient closes c. kmip-go's Client.Close dereferences the client's
// connection, which is nil once the client's own reconnect failed (the
// server dropped the connection mid-operation and no longer accepts new
// ones): such a client holds nothing left to close, and the panic would
// take the node down exactly when its KMIP server goes away.
func closeClient(c *kmipclient.Client) {
	defer func() { _ = recover() }()
	_ = c.Close()
}

func (p *Provider) ctxErr(op string, ref kms.KeyRef, err error) error {
	return &kms.Error{Op: op, Key: ref, Reason: kms.ReasonTimeout, Detail: "the caller's context ended before the KMIP server answered", Err: err}
}

// transportErr classifies a failure to talk to the server at all.
func (p *Provider) transportErr(ctx context.Context, op string, ref kms.KeyRef, err error) error {
	if ctx.Err() != nil {
		return p.ctxErr(op, ref, ctx.Err())
	}
	msg := err.Error()
	var (
		alert  tls.AlertError
		verify *tls.CertificateVerificationError
		unkCA  x509.UnknownAuthorityError
		host   x509.HostnameError
	)
	switch {
	case errors.As(err, &verify), errors.As(err, &unkCA), errors.As(err, &host):
		// Our side refused the server's certificate: a configuration
		// problem with the CA, not a network outage.
		return &kms.Error{Op: op, Key: ref, Reason: kms.ReasonCredentialsRejected, Detail: "the KMIP server's certificate is not trusted by caFile: " + redact(msg)}
	case errors.As(err, &alert), strings.Contains(msg, "remote error: tls:"):
		return &kms.Error{Op: op, Key: ref, Reason: kms.ReasonCredentialsRejected, Detail: "the KMIP server rejected the TLS handshake (client certificate not accepted): " + redact(msg)}
	case errors.Is(err, context.DeadlineExceeded), os.IsTimeout(err):
		return &kms.Error{Op: op, Key: ref, Reason: kms.ReasonTimeout, Detail: fmt.Sprintf("no answer from the KMIP server within %v", p.cfg.Timeout)}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrClosedPipe), errors.Is(err, net.ErrClosed):
		return &kms.Error{Op: op, Key: ref, Reason: kms.ReasonNetwork, Detail: "the KMIP server closed the connection: " + redact(msg)}
	}
	var ne net.Error
	var oe *net.OpError
	if errors.As(err, &ne) || errors.As(err, &oe) {
		return &kms.Error{Op: op, Key: ref, Reason: kms.ReasonNetwork, Detail: "cannot reach the KMIP server at " + p.cfg.Address + ": " + redact(msg)}
	}
	return &kms.Error{Op: op, Key: ref, Reason: kms.ReasonServerError, Detail: "KMIP protocol error: " + redact(msg)}
}

// resultErr classifies a KMIP Result Status other than Success.
func (p *Provider) resultErr(ctx context.Context, op string, ref kms.KeyRef, req kmip.OperationPayload, bi kmip.ResponseBatchItem) error {
	detail := fmt.Sprintf("KMIP %s failed: %s", ttlv.EnumStr(bi.Operation), ttlv.EnumStr(bi.ResultReason))
	if bi.ResultMessage != "" {
		detail += " (" + redact(bi.ResultMessage) + ")"
	}
	e := func(r kms.Reason) error { return &kms.Error{Op: op, Key: ref, Reason: r, Detail: detail} }
	switch bi.ResultReason {
	case kmip.ResultReasonItemNotFound:
		return e(kms.ReasonKeyNotFound)
	case kmip.ResultReasonPermissionDenied:
		// The server refused the operation. PyKMIP refuses Encrypt and
		// Decrypt on a key that is not Active with PermissionDenied: ask
		// for the key's attributes to give the precise reason.
		if _, isAttrs := req.(*payloads.GetAttributesRequestPayload); !isAttrs {
			if _, err := p.attributes(ctx, op, ref); err != nil {
				return err
			}
		}
		return e(kms.ReasonPermissionDenied)
	case kmip.ResultReasonAuthenticationNotSuccessful:
		return e(kms.ReasonCredentialsRejected)
	case kmip.ResultReasonCryptographicFailure:
		if _, dec := req.(*payloads.DecryptRequestPayload); dec {
			return fmt.Errorf("kms %s %s: %s: %w", op, ref, detail, kms.ErrDecrypt)
		}
	case kmip.ResultReasonGeneralFailure, kmip.ResultReasonInvalidMessage, kmip.ResultReasonInvalidField:
		if _, dec := req.(*payloads.DecryptRequestPayload); dec {
			// A GCM tag mismatch: PyKMIP answers OperationFailed /
			// GeneralFailure. Make sure it is not the key that is bad.
			if _, err := p.attributes(ctx, op, ref); err != nil {
				return err
			}
			return fmt.Errorf("kms %s %s: %s: %w", op, ref, detail, kms.ErrDecrypt)
		}
	}
	return e(kms.ReasonServerError)
}

// redact keeps server and library messages short; they carry no secrets
// (the client key never leaves tls.Certificate), but stay bounded.
func redact(s string) string {
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

func clone(b []byte) []byte { return append([]byte{}, b...) }

func nonNil(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return clone(b)
}
