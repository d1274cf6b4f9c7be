package cli

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cmkdb/cmkdb/internal/durable"
	"github.com/cmkdb/cmkdb/internal/handlers"
	"github.com/cmkdb/cmkdb/internal/node"
	"github.com/cmkdb/cmkdb/internal/tlsutil"
)

// securityFlags are the TLS and authentication flags of `up` (and of any
// command that serves through serve).
type securityFlags struct {
	tls               bool
	tlsCertFile       string
	tlsKeyFile        string
	tlsCAFile         string
	auth              bool
	adminUser         string
	adminPasswordFile string
}

func (f *securityFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.BoolVar(&f.tls, "tls", false, "serve TLS only; without --tls-cert-file, creates DIR/tls/{ca.pem,server.pem,server-key.pem} (a local CA whose key is discarded, and a server certificate for localhost, 127.0.0.1, ::1)")
	fl.StringVar(&f.tlsCertFile, "tls-cert-file", "", "PEM server certificate (implies --tls; needs --tls-key-file)")
	fl.StringVar(&f.tlsKeyFile, "tls-key-file", "", "PEM private key of --tls-cert-file")
	fl.StringVar(&f.tlsCAFile, "tls-ca-file", "", "PEM CA certificates: clients must present a certificate signed by one of them (mutual TLS)")
	fl.BoolVar(&f.auth, "auth", false, "require SCRAM authentication; on first run creates --admin-user with role root and a random password written only to DIR/up.json. "+
		"While no user exists, a client on localhost may create the first user in admin (the localhost exception)")
	fl.StringVar(&f.adminUser, "admin-user", "admin", "name of the administrator --auth creates on first run")
	fl.StringVar(&f.adminPasswordFile, "admin-password-file", "", "file holding the password of the administrator --auth creates (instead of a random one written to up.json)")
}

// serverTLS returns the listener's TLS configuration (nil without TLS) and
// the CA file clients should trust ("" when it is not ours to tell).
func (f *securityFlags) serverTLS(l node.Layout, bind string) (*tls.Config, string, error) {
	if f.tlsCertFile != "" || f.tlsKeyFile != "" {
		cfg, err := tlsutil.ServerConfig(f.tlsCertFile, f.tlsKeyFile, f.tlsCAFile)
		return cfg, "", err
	}
	if !f.tls {
		if f.tlsCAFile != "" {
			return nil, "", errors.New("--tls-ca-file needs --tls or --tls-cert-file")
		}
		return nil, "", nil
	}
	var extra []string
	if ip := net.ParseIP(bind); ip != nil && ip.IsUnspecified() {
		if host, err := os.Hostname(); err == nil {
			extra = append(extra, host)
		}
	} else if bind != "" {
		extra = append(extra, bind)
	}
	files, created, err := tlsutil.EnsureLocal(filepath.Join(l.Dir, "tls"), extra...)
	if err != nil {
		return nil, "", err
	}
	if created {
		slog.Info("created a local CA and server certificate", "ca", files.CAFile, "cert", files.CertFile)
	}
	cfg, err := tlsutil.ServerConfig(files.CertFile, files.KeyFile, f.tlsCAFile)
	if err != nil {
		return nil, "", err
	}
	ca, err := filepath.Abs(files.CAFile)
	return cfg, ca, err
}

// adminCredentials are the administrator --auth created, as up.json
// records them (never inside the connection string).
type adminCredentials struct {
	user, password string // password "" when not to be written
	passwordFile   string
}

// ensureAdmin creates the first administrator when --auth is set and no
// user exists, and returns what up.json should record. The random
// password of an earlier run is recovered from the previous up.json, the
// only place it was written.
//
// A random password reaches up.json before the user is created, so a
// crash in between cannot leave a user whose password nobody knows: the
// next run finds no user, reads the password back and creates it.
// connString is the connection string for the provisional up.json.
func (f *securityFlags) ensureAdmin(ctx context.Context, h *handlers.Handler, l node.Layout, connString string) (adminCredentials, error) {
	if !f.auth {
		return adminCredentials{}, nil
	}
	creds := adminCredentials{user: f.adminUser}
	if f.adminPasswordFile != "" {
		pw, err := readPasswordFile(f.adminPasswordFile)
		if err != nil {
			return adminCredentials{}, err
		}
		creds.password, creds.passwordFile = pw, f.adminPasswordFile
	} else {
		creds.password = previousPassword(l, f.adminUser)
	}
	exists, err := h.HasUsers(ctx)
	if err != nil {
		slog.Warn("cannot check for users (is the node disabled?): no administrator created", "err", err)
		return f.forUpInfo(creds), nil
	}
	if exists {
		return f.forUpInfo(creds), nil
	}
	if creds.passwordFile == "" && creds.password == "" {
		b := make([]byte, 24)
		_, _ = rand.Read(b)
		creds.password = base64.RawURLEncoding.EncodeToString(b)
		js, _ := json.MarshalIndent(upInfo{ConnectionString: connString, Dir: l.Dir, PID: os.Getpid(), State: "STARTING",
			Auth: true, AdminUser: creds.user, AdminPassword: creds.password}, "", "  ")
		if err := durable.WriteFile(l.UpFile(), append(js, '\n'), 0o600); err != nil {
			return adminCredentials{}, err
		}
	}
	if err := h.CreateUser(ctx, "admin", f.adminUser, creds.password, []handlers.Role{{Role: "root", DB: "admin"}}); err != nil {
		return adminCredentials{}, fmt.Errorf("creating the administrator: %w", err)
	}
	slog.Info("created the administrator", "user", f.adminUser, "db", "admin", "credentials", l.UpFile())
	return f.forUpInfo(creds), nil
}

// forUpInfo drops a password the user keeps in their own file: it is not
// copied into up.json.
func (f *securityFlags) forUpInfo(c adminCredentials) adminCredentials {
	if c.passwordFile != "" {
		c.password = ""
	}
	return c
}

func readPasswordFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--admin-password-file: %w", err)
	}
	pw := strings.TrimRight(string(b), "\r\n")
	clear(b)
	if pw == "" {
		return "", errors.New("--admin-password-file: the file is empty")
	}
	return pw, nil
}

// previousPassword returns user's password from an existing up.json, or
// "". up.json files written before connection strings lost their
// credentials kept it in the connection string: it is read from there
// too, so upgrading never loses the only copy of a generated password.
func previousPassword(l node.Layout, user string) string {
	b, err := os.ReadFile(l.UpFile())
	if err != nil {
		return ""
	}
	var prev upInfo
	if json.Unmarshal(b, &prev) != nil {
		return ""
	}
	if prev.AdminPassword != "" && prev.AdminUser == user {
		return prev.AdminPassword
	}
	u, err := url.Parse(prev.ConnectionString)
	if err != nil || u.User == nil || u.User.Username() != user {
		return ""
	}
	pw, _ := u.User.Password()
	return pw
}

// connectionString is the mongodb:// URI clients use. It never carries
// credentials (up.json holds them as separate fields); with auth it names
// the admin database as the authentication source. A wildcard bind
// address is reached through 127.0.0.1.
func connectionString(bind string, port int, auth, tlsOn bool, caFile string) string {
	host := bind
	if ip := net.ParseIP(bind); bind == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	u := url.URL{Scheme: "mongodb", Host: net.JoinHostPort(host, strconv.Itoa(port)), Path: "/"}
	q := []string{}
	if auth {
		q = append(q, "authSource=admin")
	}
	if tlsOn {
		q = append(q, "tls=true")
		if caFile != "" {
			q = append(q, "tlsCAFile="+url.QueryEscape(caFile))
		}
	}
	u.RawQuery = strings.Join(q, "&")
	return u.String()
}
