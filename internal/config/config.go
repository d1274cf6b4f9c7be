// Package config reads a node's configuration file (`cmkdb node --config
// FILE`): where its data lives, where it listens, and which KMS holds its
// customer master key. Unknown fields are errors, so a typo never silently
// falls back to a default.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kms/providers"
)

// Config is a node's configuration. Zero values take the defaults below.
type Config struct {
	// Dir is the node's data directory.
	Dir string `json:"dir"`
	// Bind and Port are where the MongoDB wire protocol listens.
	Bind string `json:"bind,omitempty"`
	Port int    `json:"port,omitempty"`
	// KeyCheckInterval is how often the node checks its CMK ("15m").
	KeyCheckInterval Duration `json:"keyCheckInterval,omitempty"`
	// KMS selects and configures the provider holding the CMK.
	KMS KMS `json:"kms"`
	// TLS and Auth configure the listener.
	TLS  *TLS  `json:"tls,omitempty"`
	Auth *Auth `json:"auth,omitempty"`
	// Replication makes the node a member of a replica set.
	Replication *Replication `json:"replication,omitempty"`
	// InsecureNoEncryption stores the node's data unencrypted. It exists
	// only so `cmkdb bench` can measure what encryption costs a replica
	// set (`cmkdb up --nodes N --insecure-no-encryption` writes it into
	// each member's file); a directory must always be opened the same way.
	InsecureNoEncryption bool `json:"insecureNoEncryption,omitempty"`
	// SnapshotDir is the snapshot store the node may write checkpoints
	// into when its control plane asks (cmkdbCheckpoint); empty: none.
	SnapshotDir string `json:"snapshotDir,omitempty"`
}

// Replication makes the node a member of a replica set. Every member is
// given the same setName and members; me names this one. Members reach
// each other's raft listeners over mutual TLS: certFile/keyFile are this
// member's certificate (server and client use, common name
// cmkdb-member/<project>/<setName>/<me>), caFile the CA that issued
// every member's (the control plane's).
type Replication struct {
	SetName  string       `json:"setName"`
	Project  string       `json:"project"`
	Me       string       `json:"me"`
	Members  []ReplMember `json:"members"`
	CertFile string       `json:"certFile"`
	KeyFile  string       `json:"keyFile"`
	CAFile   string       `json:"caFile"`
	// RaftBind is where this member's raft listener binds (default: the
	// host and port of its raftAddr).
	RaftBind string `json:"raftBind,omitempty"`
	// Join says this member is added to a running set by its primary
	// (the admin API raising the member count) instead of bootstrapping
	// one with members: it waits for its initial sync.
	Join bool `json:"join,omitempty"`
	// Snapshots of the raft log: taken once snapshotThreshold entries
	// (default 8192) accumulated, checked every snapshotInterval
	// (default "2m"), keeping trailingLogs entries (default 10240) for
	// members that lag; a member further behind is sent a snapshot.
	SnapshotThreshold uint64   `json:"snapshotThreshold,omitempty"`
	SnapshotInterval  Duration `json:"snapshotInterval,omitzero"`
	TrailingLogs      uint64   `json:"trailingLogs,omitempty"`
	// The oplog (local.oplog.rs) keeps at most oplogSizeMB megabytes of
	// entries (default 1024) and none older than oplogRetentionHours
	// (default 24; both may have fractions): whichever removes more, oldest
	// first. Read when the member starts (OplogLimits).
	OplogSizeMB         float64 `json:"oplogSizeMB,omitempty"`
	OplogRetentionHours float64 `json:"oplogRetentionHours,omitempty"`
}

// ReplMember is one member: its name, its MongoDB address (what drivers
// connect to) and its raft address.
type ReplMember struct {
	Name     string `json:"name"`
	Host     string `json:"host"`
	RaftAddr string `json:"raftAddr"`
}

// KMS names one provider and its settings.
//
// The settings of the KMS providers ({"provider": "aws", "aws": {…}}) are
// described by the provider packages and read through kms/providers, the
// same registry the control plane's API uses: a block holds string values
// (a JSON array of strings for list settings, such as kmip's
// previousKeyIds), and credentials are given as files ("…File"), never
// inline. Blocks for providers other than Provider are checked for shape
// and otherwise ignored.
type KMS struct {
	Provider string
	// Settings is the block of the selected provider, by its names in the
	// file.
	Settings map[string]string
	// ControlPlane makes the node a managed node: its master key is
	// wrapped and unwrapped by the control plane's key service, which alone
	// holds the KMS credentials.
	ControlPlane *ControlPlaneKMS
}

// UnmarshalJSON reads the kms object, refusing unknown members.
func (k *KMS) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	blocks := map[string]map[string]string{}
	for name, msg := range raw {
		switch name {
		case "provider":
			if err := json.Unmarshal(msg, &k.Provider); err != nil {
				return fmt.Errorf("kms.provider must be a string")
			}
		case "controlPlane":
			dec := json.NewDecoder(bytes.NewReader(msg))
			dec.DisallowUnknownFields()
			k.ControlPlane = &ControlPlaneKMS{}
			if err := dec.Decode(k.ControlPlane); err != nil {
				return fmt.Errorf("kms.controlPlane: %w", err)
			}
		default:
			if _, ok := providers.ByName(name); !ok {
				return fmt.Errorf("json: unknown field %q in kms", name)
			}
			block, err := decodeBlock(name, msg)
			if err != nil {
				return err
			}
			blocks[name] = block
		}
	}
	k.Settings = blocks[k.Provider]
	return nil
}

// MarshalJSON writes the kms object as UnmarshalJSON reads it.
func (k KMS) MarshalJSON() ([]byte, error) {
	m := map[string]any{"provider": k.Provider}
	if k.ControlPlane != nil {
		m["controlPlane"] = k.ControlPlane
	}
	if k.Settings != nil {
		block := map[string]any{}
		s, _ := providers.ByName(k.Provider)
		for key, v := range k.Settings {
			block[key] = v
			for _, f := range s.Fields {
				if f.List && f.NodeName() == key {
					block[key] = kms.SplitList(v)
				}
			}
		}
		m[k.Provider] = block
	}
	return json.Marshal(m)
}

// decodeBlock reads a provider block: string values, or arrays of strings
// joined with commas (which the strings themselves may not hold).
func decodeBlock(name string, msg json.RawMessage) (map[string]string, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(msg, &obj); err != nil || obj == nil {
		return nil, fmt.Errorf("kms.%s must be an object", name)
	}
	out := make(map[string]string, len(obj))
	for key, v := range obj {
		var str string
		if json.Unmarshal(v, &str) == nil {
			out[key] = str
			continue
		}
		var list []string
		if err := json.Unmarshal(v, &list); err != nil {
			return nil, fmt.Errorf("kms.%s.%s must be a string or an array of strings", name, key)
		}
		for _, e := range list {
			if e == "" || strings.Contains(e, ",") {
				return nil, fmt.Errorf("kms.%s.%s: %q: list entries are non-empty and hold no comma", name, key, e)
			}
		}
		out[key] = strings.Join(list, ",")
	}
	return out, nil
}

// ControlPlaneKMS is the control plane's key service, reached over mutually
// authenticated TLS.
type ControlPlaneKMS struct {
	URL      string `json:"url"`
	CAFile   string `json:"caFile"`
	CertFile string `json:"certFile"`
	KeyFile  string `json:"keyFile"`
	// GroupID and Cluster say which project and cluster the node belongs
	// to; the control plane checks them against the client certificate.
	GroupID string `json:"groupId"`
	Cluster string `json:"cluster"`
}

// TLS is the listener's certificate.
type TLS struct {
	CertFile string `json:"certFile"`
	KeyFile  string `json:"keyFile"`
	// CAFile, when set, requires client certificates signed by it.
	CAFile string `json:"caFile,omitempty"`
}

// Auth turns authentication on. On first start the node creates
// AdminUser (default "admin") with role root, with the password in
// AdminPasswordFile, or a random one written only to DIR/up.json.
type Auth struct {
	Enabled           bool   `json:"enabled"`
	AdminUser         string `json:"adminUser,omitempty"`
	AdminPasswordFile string `json:"adminPasswordFile,omitempty"`
}

// Duration is a time.Duration written as "15m" in JSON.
type Duration struct{ time.Duration }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"15m\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.Duration.String()) }

// Defaults.
const (
	DefaultBind             = "127.0.0.1"
	DefaultPort             = 27017
	DefaultKeyCheckInterval = 15 * time.Minute
	MinKeyCheckInterval     = time.Second
)

// ErrInvalid is matched by every configuration error.
var ErrInvalid = errors.New("invalid configuration")

// Load reads and parses a configuration file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes and validates a configuration, filling in defaults.
func Parse(data []byte) (*Config, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the configuration object", ErrInvalid)
	}
	if c.Bind == "" {
		c.Bind = DefaultBind
	}
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if c.KeyCheckInterval.Duration == 0 {
		c.KeyCheckInterval.Duration = DefaultKeyCheckInterval
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return &c, nil
}

func (c *Config) validate() error {
	switch {
	case c.Dir == "":
		return errors.New("dir is required")
	case c.Port < 0 || c.Port > 65535:
		return fmt.Errorf("port %d out of range", c.Port)
	case c.KeyCheckInterval.Duration < MinKeyCheckInterval:
		return fmt.Errorf("keyCheckInterval %s is below the minimum %s", c.KeyCheckInterval.Duration, MinKeyCheckInterval)
	}
	if c.TLS != nil && (c.TLS.CertFile == "" || c.TLS.KeyFile == "") {
		return errors.New("tls needs certFile and keyFile")
	}
	if r := c.Replication; r != nil {
		if err := r.validate(); err != nil {
			return fmt.Errorf("replication: %w", err)
		}
		if c.Auth != nil && c.Auth.Enabled && c.Auth.AdminPasswordFile == "" {
			return errors.New("replication with auth needs auth.adminPasswordFile: every member must know the administrator the primary creates")
		}
	}
	switch c.KMS.Provider {
	case "":
		return errors.New("kms.provider is required")
	case "controlplane":
		k := c.KMS.ControlPlane
		if k == nil || k.URL == "" || k.CAFile == "" || k.CertFile == "" || k.KeyFile == "" || k.GroupID == "" || k.Cluster == "" {
			return errors.New("kms.controlPlane needs url, caFile, certFile, keyFile, groupId and cluster")
		}
		return nil
	}
	if c.KMS.Settings == nil {
		if _, ok := providers.ByName(c.KMS.Provider); ok {
			return fmt.Errorf("the %s provider needs kms.%s", c.KMS.Provider, c.KMS.Provider)
		}
	}
	return providers.CheckNode(c.KMS.Provider, c.KMS.Settings)
}

func (r *Replication) validate() error {
	switch {
	case r.SetName == "" || r.Project == "" || r.Me == "":
		return errors.New("setName, project and me are required")
	case r.CertFile == "" || r.KeyFile == "" || r.CAFile == "":
		return errors.New("certFile, keyFile and caFile are required (members authenticate each other with mutual TLS)")
	case len(r.Members) == 0 || len(r.Members) > 7:
		return fmt.Errorf("a replica set has 1 to 7 members, not %d", len(r.Members))
	}
	me := false
	for _, m := range r.Members {
		if m.Name == "" || m.Host == "" || m.RaftAddr == "" {
			return fmt.Errorf("member %q needs name, host and raftAddr", m.Name)
		}
		for _, a := range []string{m.Host, m.RaftAddr} {
			if _, _, err := net.SplitHostPort(a); err != nil {
				return fmt.Errorf("member %q: %q is not host:port", m.Name, a)
			}
		}
		me = me || m.Name == r.Me
	}
	if !me {
		return fmt.Errorf("me (%q) is not one of the members", r.Me)
	}
	return CheckOplogLimits(r.OplogSizeMB, r.OplogRetentionHours)
}
