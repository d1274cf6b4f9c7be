package controlplane

import (
	"time"

	"github.com/cmkdb/cmkdb/internal/cpproto"
	"github.com/cmkdb/cmkdb/internal/kms"
)

// Org is the one organization a control plane serves.
type Org struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// Group is a project ("group" in the Atlas API).
type Group struct {
	ID           string    `json:"id"`
	Name         string    `json:"name"`
	OrgID        string    `json:"orgId"`
	Created      time.Time `json:"created"`
	ClusterCount int       `json:"clusterCount"`
}

// earRecord is a project's encryption-at-rest configuration and what the
// control plane knows about its key. Values holds the provider object's
// attributes, secrets included; it is sealed in the store and never leaves
// the control plane except to open the provider.
type earRecord struct {
	Kind   string            `json:"kind,omitempty"` // "" when customer key management is off
	Values map[string]string `json:"values,omitempty"`
	Key    KeyState          `json:"key"`
	// Previous is the configuration being replaced by a CMK change: it keeps
	// unwrapping until every node's master key is re-wrapped.
	Previous *earPrevious `json:"previous,omitempty"`
	Settings EARSettings  `json:"settings"`
}

type earPrevious struct {
	Kind   string            `json:"kind"`
	Values map[string]string `json:"values"`
}

// EARSettings are cmkdb's per-project lifecycle settings.
type EARSettings struct {
	// CheckInterval is how often the key is checked (default 15 min).
	CheckInterval time.Duration `json:"checkInterval"`
	// RotationPeriod is the longest a node master key lives (default 90 days).
	RotationPeriod time.Duration `json:"rotationPeriod"`
}

// KeyState is the last verdict on a project's key.
type KeyState struct {
	// Validity is VALID or INVALID once checked; "" before the first answer.
	Validity string `json:"validity,omitempty"`
	// Unreachable is set while the KMS does not answer; Validity keeps the
	// last answer it gave.
	Unreachable bool       `json:"unreachable,omitempty"`
	Reason      kms.Reason `json:"reason,omitempty"`
	Detail      string     `json:"detail,omitempty"`
	CheckedAt   time.Time  `json:"checkedAt"`
	Since       time.Time  `json:"since"`
	// Key is the CMK version the provider wraps with now, as a wrap names
	// it; nodes re-wrap until their master key names the same.
	Key kms.KeyRef `json:"key"`
	// CheckKey is the key as the last check named it; when a check names
	// another, a probe wrap refreshes Key (a new primary version).
	CheckKey kms.KeyRef `json:"checkKey"`
	// RotatedAt is when the key id or version last changed (rotation age).
	RotatedAt time.Time `json:"rotatedAt"`
}

// MaintenanceWindow is Atlas's project maintenance window; node master key
// rotations run inside it when it is set.
type MaintenanceWindow struct {
	DayOfWeek int  `json:"dayOfWeek"` // 1 = Sunday … 7 = Saturday; 0 = not set
	HourOfDay int  `json:"hourOfDay"`
	StartASAP bool `json:"startASAP"`
	// DeferredUntil postpones a due rotation (POST maintenanceWindow/defer).
	DeferredUntil time.Time `json:"deferredUntil,omitzero"`
}

// Cluster is a cluster description: the Atlas fields a client sets and reads,
// plus cmkdb's read-only encryptionAtRestStatus.
type Cluster struct {
	ID                       string            `json:"id"`
	GroupID                  string            `json:"groupId"`
	Name                     string            `json:"name"`
	ClusterType              string            `json:"clusterType"`
	MongoDBVersion           string            `json:"mongoDBVersion"`
	MongoDBMajorVersion      string            `json:"mongoDBMajorVersion"`
	EncryptionAtRestProvider string            `json:"encryptionAtRestProvider"`
	ProviderSettings         *ProviderSettings `json:"providerSettings,omitempty"`
	DiskSizeGB               *float64          `json:"diskSizeGB,omitempty"`
	// ReplicationFactor is how many members the cluster runs, each with
	// its own keys (1, or a replica set of 3, 5 or 7). A replica set's
	// count changes through UpdateCluster (membership.go).
	ReplicationFactor int `json:"replicationFactor"`
	// MembershipChange is a member count change in progress (or failed).
	MembershipChange       *MembershipChange `json:"membershipChange,omitempty"`
	StateName              string            `json:"stateName"`
	Paused                 bool              `json:"paused"`
	ConnectionStrings      ConnectionStrings `json:"connectionStrings"`
	CreateDate             time.Time         `json:"createDate"`
	EncryptionAtRestStatus EARStatus         `json:"encryptionAtRestStatus"`
	// RotationRequestedAt asks for a rolling rotation of every node's
	// master key created before it (the manual rotation action).
	RotationRequestedAt time.Time `json:"masterKeyRotationRequestedAt,omitzero"`
	// PendingChanges holds updates accepted while the cluster is disabled;
	// they apply when it is available again.
	PendingChanges *ClusterPatch `json:"pendingChanges,omitempty"`
	// BackupEnabled turns scheduled snapshots on (backup_schedule.go). The
	// API accepts it as backupEnabled or providerBackupEnabled and shows
	// both.
	BackupEnabled         bool `json:"backupEnabled"`
	ProviderBackupEnabled bool `json:"providerBackupEnabled"`
	// PitEnabled keeps the oplog archive of a replica set with backups
	// on (continuous cloud backup): point-in-time restores (pitr.go).
	PitEnabled bool `json:"pitEnabled"`
}

// ProviderSettings is the cloud and size of a cluster (informational here).
type ProviderSettings struct {
	ProviderName     string `json:"providerName,omitempty"`
	InstanceSizeName string `json:"instanceSizeName,omitempty"`
	RegionName       string `json:"regionName,omitempty"`
}

// ConnectionStrings of a cluster: its nodes' addresses.
type ConnectionStrings struct {
	Standard string `json:"standard,omitempty"`
}

// EARStatus says whether a cluster may use its keys.
type EARStatus struct {
	State  string    `json:"state"` // AVAILABLE | DISABLED
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since"`
}

// ClusterPatch is a cluster update; nil fields are unchanged.
type ClusterPatch struct {
	EncryptionAtRestProvider *string           `json:"encryptionAtRestProvider,omitempty"`
	ProviderSettings         *ProviderSettings `json:"providerSettings,omitempty"`
	DiskSizeGB               *float64          `json:"diskSizeGB,omitempty"`
	Paused                   *bool             `json:"paused,omitempty"`
	MongoDBMajorVersion      *string           `json:"mongoDBMajorVersion,omitempty"`
	// ReplicationFactor changes a replica set's member count (3, 5 or 7)
	// through the provisioner's Resizer (membership.go).
	ReplicationFactor *int `json:"replicationFactor,omitempty"`
	// BackupEnabled and ProviderBackupEnabled (the same switch) turn
	// scheduled snapshots on or off.
	BackupEnabled         *bool `json:"backupEnabled,omitempty"`
	ProviderBackupEnabled *bool `json:"providerBackupEnabled,omitempty"`
	PitEnabled            *bool `json:"pitEnabled,omitempty"`
}

// Node is a data node of a cluster, as it last reported itself.
type Node struct {
	Name    string `json:"name"`
	GroupID string `json:"groupId"`
	Cluster string `json:"cluster"`
	Address string `json:"address,omitempty"`
	// State is AVAILABLE or DISABLED.
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
	// The node master key: version, when it was created, the CMK wrapping it.
	MasterKeyVersion   uint32     `json:"masterKeyVersion"`
	MasterKeyCreatedAt time.Time  `json:"masterKeyCreatedAt"`
	CMK                kms.KeyRef `json:"cmk"`
	LastSeen           time.Time  `json:"lastSeen"`
	// RotateRequested > RotateApplied asks the node to rotate its master key.
	RotateRequested uint64 `json:"rotateRequested"`
	RotateApplied   uint64 `json:"rotateApplied"`
	// ReencryptRequested > ReencryptApplied asks the node to re-encrypt in
	// place (a one-member cluster); Reencryption is its last report of it.
	ReencryptRequested uint64                `json:"reencryptRequested,omitempty"`
	ReencryptApplied   uint64                `json:"reencryptApplied,omitempty"`
	Reencryption       *cpproto.Reencryption `json:"reencryption,omitempty"`
	// KeystoreGeneration is the highest keystore generation the node has
	// reported; Rollback, when set, says the node presented a lower one
	// (an older copy of its keystore was put back). Such a node is told
	// INVALID and its unwraps are refused until it reports a generation at
	// least as high again (the newest keystore restored).
	KeystoreGeneration uint64 `json:"keystoreGeneration,omitempty"`
	Rollback           string `json:"rollback,omitempty"`
}

// Event is one entry of a project's event feed and audit log.
type Event struct {
	ID            string    `json:"id"`
	GroupID       string    `json:"groupId"`
	EventTypeName string    `json:"eventTypeName"`
	Created       time.Time `json:"created"`
	ClusterName   string    `json:"clusterName,omitempty"`
	// PublicKey is the API key that caused an audit event, if any.
	PublicKey string `json:"publicKey,omitempty"`
	Detail    string `json:"detail,omitempty"`
}

// AlertConfig is an Atlas alert configuration.
type AlertConfig struct {
	ID               string         `json:"id"`
	GroupID          string         `json:"groupId"`
	EventTypeName    string         `json:"eventTypeName"`
	Enabled          bool           `json:"enabled"`
	Threshold        *Threshold     `json:"threshold,omitempty"`
	Notifications    []Notification `json:"notifications"`
	Matchers         []any          `json:"matchers"`
	Created          time.Time      `json:"created"`
	Updated          time.Time      `json:"updated"`
	SeverityOverride string         `json:"severityOverride,omitempty"`
}

// Threshold of an alert configuration (days for rotation alerts).
type Threshold struct {
	Operator  string `json:"operator"`
	Threshold int    `json:"threshold"`
	Units     string `json:"units"`
}

// Notification says where an alert goes. Only WEBHOOK delivers here; the
// other Atlas types are accepted and recorded.
type Notification struct {
	TypeName      string   `json:"typeName"`
	IntervalMin   int      `json:"intervalMin,omitempty"`
	DelayMin      *int     `json:"delayMin,omitempty"`
	WebhookURL    string   `json:"webhookUrl,omitempty"`
	WebhookSecret string   `json:"webhookSecret,omitempty"`
	EmailAddress  string   `json:"emailAddress,omitempty"`
	Roles         []string `json:"roles,omitempty"`
}

// Alert is an open or closed alert.
type Alert struct {
	ID            string     `json:"id"`
	GroupID       string     `json:"groupId"`
	AlertConfigID string     `json:"alertConfigId"`
	EventTypeName string     `json:"eventTypeName"`
	Status        string     `json:"status"` // OPEN | CLOSED
	Created       time.Time  `json:"created"`
	Updated       time.Time  `json:"updated"`
	Resolved      *time.Time `json:"resolved,omitempty"`
	ClusterName   string     `json:"clusterName,omitempty"`
	Detail        string     `json:"detail,omitempty"`
}

// Role names, as Atlas spells them.
const (
	RoleOrgOwner            = "ORG_OWNER"
	RoleOrgReadOnly         = "ORG_READ_ONLY"
	RoleGroupOwner          = "GROUP_OWNER"
	RoleGroupReadOnly       = "GROUP_READ_ONLY"
	RoleGroupClusterManager = "GROUP_CLUSTER_MANAGER"
)

// RoleAssignment grants a role on the org (OrgID) or one project (GroupID).
type RoleAssignment struct {
	RoleName string `json:"roleName"`
	OrgID    string `json:"orgId,omitempty"`
	GroupID  string `json:"groupId,omitempty"`
}

// APIKey is a programmatic API key. PrivateKey is sealed in the store and
// shown once, in the answer to its creation.
type APIKey struct {
	ID         string           `json:"id"`
	Desc       string           `json:"desc"`
	PublicKey  string           `json:"publicKey"`
	PrivateKey string           `json:"privateKey,omitempty"`
	Roles      []RoleAssignment `json:"roles"`
}
