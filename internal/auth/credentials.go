package auth

import (
	"crypto/md5"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/xdg-go/scram"
	"github.com/xdg-go/stringprep"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// Mechanism is a SASL mechanism name as sent in saslStart.
type Mechanism string

// The supported mechanisms.
const (
	SCRAMSHA1   Mechanism = "SCRAM-SHA-1"
	SCRAMSHA256 Mechanism = "SCRAM-SHA-256"
)

// Iteration counts and salt lengths mongod uses for new credentials.
const (
	IterationsSHA256 = 15000
	IterationsSHA1   = 10000
	saltLenSHA256    = 28
	saltLenSHA1      = 16
)

// DefaultMechanisms returns the mechanisms credentials are created for
// when the caller names none, as createUser does.
func DefaultMechanisms() []Mechanism { return []Mechanism{SCRAMSHA1, SCRAMSHA256} }

// ErrUnsupportedMechanism is returned for a mechanism this package does
// not implement.
var ErrUnsupportedMechanism = errors.New("unsupported authentication mechanism")

// ErrInvalidPassword is returned for a password SASLprep rejects.
var ErrInvalidPassword = errors.New("invalid password")

// Credentials are a user's stored SCRAM keys, one set per mechanism (the
// keys depend on the hash). Nil means no credentials for that mechanism.
type Credentials struct {
	SHA1   *scram.StoredCredentials
	SHA256 *scram.StoredCredentials
}

// NewCredentials derives credentials for user/password, with a fresh random
// salt per mechanism. mechs defaults to DefaultMechanisms().
//
// SCRAM-SHA-256 uses the SASLprepped password; SCRAM-SHA-1 uses MongoDB's
// legacy digest hex(MD5(user + ":mongo:" + password)) as the password,
// which is what drivers send for that mechanism.
func NewCredentials(user, password string, mechs ...Mechanism) (Credentials, error) {
	if len(mechs) == 0 {
		mechs = DefaultMechanisms()
	}
	var c Credentials
	for _, m := range mechs {
		kf := scram.KeyFactors{Iters: iterations(m)}
		salt := make([]byte, saltLen(m))
		_, _ = rand.Read(salt) // crypto/rand.Read never fails (it crashes instead)
		kf.Salt = string(salt)
		sc, err := derive(m, user, password, kf)
		if err != nil {
			return Credentials{}, err
		}
		switch m {
		case SCRAMSHA1:
			c.SHA1 = &sc
		case SCRAMSHA256:
			c.SHA256 = &sc
		}
	}
	return c, nil
}

// derive computes the stored keys of a password under given key factors.
func derive(m Mechanism, user, password string, kf scram.KeyFactors) (scram.StoredCredentials, error) {
	var client *scram.Client
	var err error
	switch m {
	case SCRAMSHA256:
		prepped, perr := stringprep.SASLprep.Prepare(password)
		if perr != nil {
			// The error text of stringprep quotes the input: keep it out.
			return scram.StoredCredentials{}, fmt.Errorf("auth: SASLprep: %w", ErrInvalidPassword)
		}
		client, err = scram.SHA256.NewClientUnprepped(user, prepped, "")
	case SCRAMSHA1:
		client, err = scram.SHA1.NewClientUnprepped(user, mongoPasswordDigest(user, password), "")
	default:
		return scram.StoredCredentials{}, fmt.Errorf("auth: %q: %w", m, ErrUnsupportedMechanism)
	}
	if err != nil {
		return scram.StoredCredentials{}, fmt.Errorf("auth: %s client: %w", m, err)
	}
	sc, err := client.GetStoredCredentialsWithError(kf)
	if err != nil {
		return scram.StoredCredentials{}, fmt.Errorf("auth: deriving %s keys: %w", m, err)
	}
	return sc, nil
}

// mongoPasswordDigest is MongoDB's pre-SCRAM password hash, still the
// SCRAM-SHA-1 password.
func mongoPasswordDigest(user, password string) string {
	sum := md5.Sum([]byte(user + ":mongo:" + password))
	return hex.EncodeToString(sum[:])
}

func iterations(m Mechanism) int {
	if m == SCRAMSHA1 {
		return IterationsSHA1
	}
	return IterationsSHA256
}

func saltLen(m Mechanism) int {
	if m == SCRAMSHA1 {
		return saltLenSHA1
	}
	return saltLenSHA256
}

// For returns the credentials for mechanism m.
func (c Credentials) For(m Mechanism) (scram.StoredCredentials, bool) {
	var sc *scram.StoredCredentials
	switch m {
	case SCRAMSHA1:
		sc = c.SHA1
	case SCRAMSHA256:
		sc = c.SHA256
	}
	if sc == nil {
		return scram.StoredCredentials{}, false
	}
	return *sc, true
}

// Mechanisms lists the mechanisms c has credentials for, in mongod's order.
func (c Credentials) Mechanisms() []Mechanism {
	var out []Mechanism
	if c.SHA1 != nil {
		out = append(out, SCRAMSHA1)
	}
	if c.SHA256 != nil {
		out = append(out, SCRAMSHA256)
	}
	return out
}

// storedDoc is mongod's on-disk form of one mechanism's credentials, as
// usersInfo {showCredentials: true} shows it.
type storedDoc struct {
	IterationCount int32  `bson:"iterationCount"`
	Salt           string `bson:"salt"`
	StoredKey      string `bson:"storedKey"`
	ServerKey      string `bson:"serverKey"`
}

type credentialsDoc struct {
	SHA1   *storedDoc `bson:"SCRAM-SHA-1,omitempty"`
	SHA256 *storedDoc `bson:"SCRAM-SHA-256,omitempty"`
}

// MarshalBSON encodes c in mongod's format: {"SCRAM-SHA-256":
// {iterationCount, salt, storedKey, serverKey}, ...} with base64 strings.
func (c Credentials) MarshalBSON() ([]byte, error) {
	enc := func(sc *scram.StoredCredentials) *storedDoc {
		if sc == nil {
			return nil
		}
		b64 := base64.StdEncoding.EncodeToString
		return &storedDoc{
			IterationCount: int32(sc.Iters),
			Salt:           b64([]byte(sc.Salt)),
			StoredKey:      b64(sc.StoredKey),
			ServerKey:      b64(sc.ServerKey),
		}
	}
	return bson.Marshal(credentialsDoc{SHA1: enc(c.SHA1), SHA256: enc(c.SHA256)})
}

// UnmarshalBSON decodes the format MarshalBSON writes.
func (c *Credentials) UnmarshalBSON(b []byte) error {
	var d credentialsDoc
	if err := bson.Unmarshal(b, &d); err != nil {
		return fmt.Errorf("auth: decoding credentials: %w", err)
	}
	dec := func(m Mechanism, sd *storedDoc) (*scram.StoredCredentials, error) {
		if sd == nil {
			return nil, nil
		}
		salt, err1 := base64.StdEncoding.DecodeString(sd.Salt)
		stored, err2 := base64.StdEncoding.DecodeString(sd.StoredKey)
		server, err3 := base64.StdEncoding.DecodeString(sd.ServerKey)
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, fmt.Errorf("auth: decoding %s credentials: %w", m, err)
		}
		if sd.IterationCount <= 0 || len(salt) == 0 || len(stored) == 0 || len(server) == 0 {
			return nil, fmt.Errorf("auth: decoding %s credentials: missing fields", m)
		}
		return &scram.StoredCredentials{
			KeyFactors: scram.KeyFactors{Salt: string(salt), Iters: int(sd.IterationCount)},
			StoredKey:  stored,
			ServerKey:  server,
		}, nil
	}
	sha1, err := dec(SCRAMSHA1, d.SHA1)
	if err != nil {
		return err
	}
	sha256, err := dec(SCRAMSHA256, d.SHA256)
	if err != nil {
		return err
	}
	*c = Credentials{SHA1: sha1, SHA256: sha256}
	return nil
}
