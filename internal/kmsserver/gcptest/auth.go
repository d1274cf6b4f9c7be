package gcptest

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Google's messages for a request without, or with unusable, credentials.
const (
	msgMissingCredential = "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."
	msgInvalidCredential = "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."
)

// What a self-signed JWT may be addressed to. The official Go client (via
// cloud.google.com/go/auth, with the KMS client's EnableJwtWithScope) sends
// the KMS default scopes and an empty aud; other clients send the service
// audience instead.
const kmsAudience = "https://cloudkms.googleapis.com/"

var acceptedScopes = []string{
	"https://www.googleapis.com/auth/cloud-platform",
	"https://www.googleapis.com/auth/cloudkms",
}

// clockSkew is how far iat may be in the future, and exp in the past.
const clockSkew = 5 * time.Minute

// maxJWTLifetime is the longest exp - iat Google accepts for a
// self-signed JWT.
const maxJWTLifetime = time.Hour

// ServiceAccount is an issued service account key.
type ServiceAccount struct {
	Email string
	// KeyID is the private_key_id (the JWT kid).
	KeyID string
	// JSON is the key file, as the Cloud console downloads it.
	JSON []byte
	// PrivateKeyDER is the PKCS#8 key, for leak checks in tests.
	PrivateKeyDER []byte
}

type saKey struct {
	email    string
	pub      *rsa.PublicKey
	disabled bool
}

// NewServiceAccount creates a service account (name@project.iam...) with a
// fresh RSA-2048 key and returns its key JSON. Every service account may do
// everything unless a permission is denied (Deny).
func (s *Server) NewServiceAccount(name string) (ServiceAccount, error) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return ServiceAccount{}, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return ServiceAccount{}, err
	}
	email := fmt.Sprintf("%s@%s.iam.gserviceaccount.com", name, s.opts.Project)
	kid := randHex(20)
	clientID, _ := rand.Int(rand.Reader, new(big.Int).Exp(big.NewInt(10), big.NewInt(21), nil))
	// The fields and their order are those of a key file downloaded from
	// the Cloud console. token_uri is Google's: the official client signs
	// its own JWTs for Cloud KMS and never exchanges them.
	js, err := json.MarshalIndent(struct {
		Type                    string `json:"type"`
		ProjectID               string `json:"project_id"`
		PrivateKeyID            string `json:"private_key_id"`
		PrivateKey              string `json:"private_key"`
		ClientEmail             string `json:"client_email"`
		ClientID                string `json:"client_id"`
		AuthURI                 string `json:"auth_uri"`
		TokenURI                string `json:"token_uri"`
		AuthProviderX509CertURL string `json:"auth_provider_x509_cert_url"`
		ClientX509CertURL       string `json:"client_x509_cert_url"`
		UniverseDomain          string `json:"universe_domain"`
	}{
		Type:                    "service_account",
		ProjectID:               s.opts.Project,
		PrivateKeyID:            kid,
		PrivateKey:              string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		ClientEmail:             email,
		ClientID:                fmt.Sprintf("1%020d", clientID),
		AuthURI:                 "https://accounts.google.com/o/oauth2/auth",
		TokenURI:                "https://oauth2.googleapis.com/token",
		AuthProviderX509CertURL: "https://www.googleapis.com/oauth2/v1/certs",
		ClientX509CertURL:       "https://www.googleapis.com/robot/v1/metadata/x509/" + url.PathEscape(email),
		UniverseDomain:          "googleapis.com",
	}, "", "  ")
	if err != nil {
		return ServiceAccount{}, err
	}
	s.mu.Lock()
	s.accounts[kid] = &saKey{email: email, pub: &priv.PublicKey}
	s.mu.Unlock()
	return ServiceAccount{Email: email, KeyID: kid, JSON: append(js, '\n'), PrivateKeyDER: der}, nil
}

// DisableServiceAccountKey disables (or re-enables) a key, as `gcloud iam
// service-accounts keys disable` does: JWTs it signed are refused.
func (s *Server) DisableServiceAccountKey(keyID string, disabled bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.accounts[keyID]
	if !ok {
		return fmt.Errorf("gcptest: no service account key %q", keyID)
	}
	k.disabled = disabled
	return nil
}

// authenticate verifies the bearer JWT in the request metadata and returns
// the service account it identifies.
func (s *Server) authenticate(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	auth := first(md, "authorization")
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || tok == "" {
		return "", status.Error(codes.Unauthenticated, msgMissingCredential)
	}
	email, err := s.verifyJWT(tok, time.Now())
	if err != nil {
		return "", status.Error(codes.Unauthenticated, msgInvalidCredential)
	}
	return email, nil
}

type jwtHeader struct {
	Alg string `json:"alg"`
	Typ string `json:"typ"`
	Kid string `json:"kid"`
}

type jwtClaims struct {
	Iss   string `json:"iss"`
	Sub   string `json:"sub"`
	Aud   string `json:"aud"`
	Scope string `json:"scope"`
	Iat   int64  `json:"iat"`
	Exp   int64  `json:"exp"`
}

// verifyJWT checks a self-signed service account JWT. The error says why,
// for the server's own tests; clients only ever see Google's message.
func (s *Server) verifyJWT(tok string, now time.Time) (string, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "", fmt.Errorf("not a JWS")
	}
	var h jwtHeader
	var c jwtClaims
	if err := decodeSegment(parts[0], &h); err != nil {
		return "", fmt.Errorf("header: %w", err)
	}
	if err := decodeSegment(parts[1], &c); err != nil {
		return "", fmt.Errorf("claims: %w", err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return "", fmt.Errorf("signature encoding: %w", err)
	}
	if h.Alg != "RS256" {
		return "", fmt.Errorf("alg %q", h.Alg)
	}
	s.mu.Lock()
	k := s.accounts[h.Kid]
	var key saKey
	if k != nil {
		key = *k
	}
	s.mu.Unlock()
	if k == nil {
		return "", fmt.Errorf("unknown kid")
	}
	if key.disabled {
		return "", fmt.Errorf("key disabled")
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(key.pub, crypto.SHA256, digest[:], sig); err != nil {
		return "", fmt.Errorf("signature: %w", err)
	}
	if c.Iss != key.email || c.Sub != key.email {
		return "", fmt.Errorf("iss/sub %q/%q is not the key's account", c.Iss, c.Sub)
	}
	scoped := slices.ContainsFunc(strings.Fields(c.Scope), func(sc string) bool { return slices.Contains(acceptedScopes, sc) })
	switch {
	case c.Aud == kmsAudience:
	case c.Aud == "" && scoped:
	default:
		return "", fmt.Errorf("audience %q / scope %q not for Cloud KMS", c.Aud, c.Scope)
	}
	iat, exp := time.Unix(c.Iat, 0), time.Unix(c.Exp, 0)
	switch {
	case c.Iat == 0 || c.Exp == 0:
		return "", fmt.Errorf("iat/exp missing")
	case iat.After(now.Add(clockSkew)):
		return "", fmt.Errorf("issued in the future")
	case !exp.After(now.Add(-clockSkew)):
		return "", fmt.Errorf("expired")
	case exp.Sub(iat) > maxJWTLifetime:
		return "", fmt.Errorf("lifetime %v over %v", exp.Sub(iat), maxJWTLifetime)
	}
	return key.email, nil
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func first(md metadata.MD, k string) string {
	if v := md.Get(k); len(v) > 0 {
		return v[0]
	}
	return ""
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
