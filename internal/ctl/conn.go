package ctl

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// DefaultDir is where `cmkdb up` keeps its data and up.json.
const DefaultDir = "./cmkdb-data"

// Options say how to reach the admin API and how to print.
type Options struct {
	// Dir holds up.json, written by `cmkdb up`: the API URL, an API key and
	// the project. It is read only when APIURL is empty.
	Dir string
	// APIURL, PublicKey and PrivateKeyFile name another control plane (or
	// another key). The private key is read from a file so that it never
	// appears in shell history or in the process list.
	APIURL         string
	PublicKey      string
	PrivateKeyFile string
	// CAFile is the CA bundle to trust for an https API URL; by default
	// up.json's tlsCAFile, else the system roots.
	CAFile string
	// Group is the project, by id or name; by default up.json's groupId,
	// else the only project the key can read.
	Group string
	// JSON prints the API's resources instead of tables.
	JSON bool

	Stdout io.Writer
	Stderr io.Writer
	// Transport carries the requests under the digest layer; nil means a
	// clone of http.DefaultTransport.
	Transport http.RoundTripper
}

// upFile is the part of DIR/up.json ctl reads.
type upFile struct {
	APIURL        string `json:"apiUrl"`
	APIPublicKey  string `json:"apiPublicKey"`
	APIPrivateKey string `json:"apiPrivateKey"`
	GroupID       string `json:"groupId"`
	TLSCAFile     string `json:"tlsCAFile"`
}

// conn is a resolved connection: where, as whom, which project by default.
type conn struct {
	apiURL       string
	publicKey    string
	privateKey   string
	caFile       string
	defaultGroup string
	// source says where the credentials came from, for error hints.
	source string
}

// resolve works out the connection from the flags and up.json. An explicit
// API URL never borrows up.json's key: that would hand the local key to
// whatever server the URL names.
func resolve(o Options) (conn, error) {
	havePub, haveFile := o.PublicKey != "", o.PrivateKeyFile != ""
	if havePub != haveFile {
		return conn{}, errors.New("--public-key and --private-key-file go together")
	}
	var c conn
	if o.APIURL != "" {
		if !havePub {
			return conn{}, errors.New("--api-url needs --public-key and --private-key-file")
		}
		c = conn{apiURL: o.APIURL, caFile: o.CAFile}
	} else {
		dir := o.Dir
		if dir == "" {
			dir = DefaultDir
		}
		up, path, err := readUpFile(dir)
		if err != nil {
			return conn{}, err
		}
		if up.APIURL == "" {
			return conn{}, fmt.Errorf("%s has no apiUrl: it was not written by `cmkdb up` (pass --api-url, --public-key and --private-key-file)", path)
		}
		c = conn{apiURL: up.APIURL, defaultGroup: up.GroupID, caFile: o.CAFile, source: path}
		if c.caFile == "" && strings.HasPrefix(up.APIURL, "https:") {
			c.caFile = up.TLSCAFile
		}
		if !havePub {
			if up.APIPublicKey == "" || up.APIPrivateKey == "" {
				return conn{}, fmt.Errorf("%s has no API key (pass --public-key and --private-key-file)", path)
			}
			c.publicKey, c.privateKey = up.APIPublicKey, up.APIPrivateKey
			return c, nil
		}
	}
	c.publicKey, c.source = o.PublicKey, o.PrivateKeyFile
	priv, err := readSecretFile(o.PrivateKeyFile, o.Stderr)
	if err != nil {
		return conn{}, fmt.Errorf("--private-key-file: %w", err)
	}
	c.privateKey = priv
	return c, nil
}

func readUpFile(dir string) (upFile, string, error) {
	path := filepath.Join(dir, "up.json")
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return upFile{}, path, fmt.Errorf("%s does not exist: run `cmkdb up` (or pass --dir, or --api-url with --public-key and --private-key-file)", path)
	}
	if err != nil {
		return upFile{}, path, fmt.Errorf("reading %s: %w", path, err)
	}
	var up upFile
	if err := json.Unmarshal(b, &up); err != nil {
		return upFile{}, path, fmt.Errorf("reading %s: %w", path, err)
	}
	return up, path, nil
}

// maxSecretFile bounds a secret file: the largest real one, a GCP service
// account key, is a few KiB. A larger file is a wrong path, not a secret.
const maxSecretFile = 64 << 10

// readSecretFile reads a secret from path, without its trailing newline
// (editors and `echo` add one). A file others can read gets a warning on
// warn: the secret is only as safe as the file.
func readSecretFile(path string, warn io.Writer) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", path)
	}
	if runtime.GOOS != "windows" && st.Mode().Perm()&0o077 != 0 && warn != nil {
		fmt.Fprintf(warn, "warning: %s is readable by other users (mode %v); chmod 600 it\n", path, st.Mode().Perm())
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return "", err
	}
	if len(b) > maxSecretFile {
		return "", fmt.Errorf("%s is larger than %d bytes", path, maxSecretFile)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

// baseTransport returns the transport under the digest layer, trusting
// caFile when one is named.
func baseTransport(o Options, caFile string) (http.RoundTripper, error) {
	if o.Transport != nil {
		return o.Transport, nil
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", caFile)
		}
		t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return t, nil
}
