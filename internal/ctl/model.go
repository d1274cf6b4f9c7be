package ctl

import "time"

// The resources ctl reads, declared here rather than borrowed from the
// server's packages: ctl is a client of the API's JSON, and only the fields
// it shows matter. Fields the server adds later pass through --json as the
// server wrote them.

// Group is a project.
type Group struct {
	ID           string    `json:"id"`
	Name         string    `json:"name"`
	ClusterCount int       `json:"clusterCount"`
	Created      time.Time `json:"created"`
}

// Cluster is a cluster with cmkdb's encryptionAtRestStatus.
type Cluster struct {
	Name                     string    `json:"name"`
	StateName                string    `json:"stateName"`
	EncryptionAtRestProvider string    `json:"encryptionAtRestProvider"`
	EncryptionAtRestStatus   EARStatus `json:"encryptionAtRestStatus"`
	ConnectionStrings        struct {
		Standard string `json:"standard"`
	} `json:"connectionStrings"`
	RotationRequestedAt time.Time         `json:"masterKeyRotationRequestedAt"`
	ReplicationFactor   int               `json:"replicationFactor"`
	MembershipChange    *MembershipChange `json:"membershipChange"`
}

// EARStatus says whether a cluster may use its keys.
type EARStatus struct {
	State  string    `json:"state"`
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
}

// Node is a data node as it last reported itself.
type Node struct {
	Name               string    `json:"name"`
	State              string    `json:"state"`
	Reason             string    `json:"reason"`
	MasterKeyVersion   uint32    `json:"masterKeyVersion"`
	MasterKeyCreatedAt time.Time `json:"masterKeyCreatedAt"`
	CMK                KeyRef    `json:"cmk"`
	LastSeen           time.Time `json:"lastSeen"`
}

// KeyRef names a CMK version.
type KeyRef struct {
	Provider   string `json:"provider"`
	KeyID      string `json:"keyId"`
	KeyVersion string `json:"keyVersion"`
}

func (r KeyRef) String() string {
	switch {
	case r.KeyID == "":
		return ""
	case r.KeyVersion == "":
		return r.Provider + ":" + r.KeyID
	}
	return r.Provider + ":" + r.KeyID + "@" + r.KeyVersion
}

// KeyStatus is cmkdb's read-only verdict on a project's key.
type KeyStatus struct {
	Validity     string    `json:"validity"`
	Reachable    *bool     `json:"reachable"`
	Reason       string    `json:"reason"`
	Detail       string    `json:"detail"`
	CheckedAt    time.Time `json:"checkedAt"`
	Since        time.Time `json:"since"`
	Key          string    `json:"key"`
	KeyRotatedAt time.Time `json:"keyRotatedAt"`
}

// EARSettings are the project's key lifecycle settings.
type EARSettings struct {
	ValidityCheckIntervalSeconds int64 `json:"validityCheckIntervalSeconds"`
	MasterKeyRotationDays        int64 `json:"masterKeyRotationDays"`
}

// Alert is an open or closed alert.
type Alert struct {
	ID            string     `json:"id"`
	EventTypeName string     `json:"eventTypeName"`
	Status        string     `json:"status"`
	Created       time.Time  `json:"created"`
	Resolved      *time.Time `json:"resolved"`
	ClusterName   string     `json:"clusterName"`
	Detail        string     `json:"detail"`
}

// AlertConfig is an alert configuration.
type AlertConfig struct {
	ID            string `json:"id"`
	EventTypeName string `json:"eventTypeName"`
	Enabled       bool   `json:"enabled"`
	Threshold     *struct {
		Operator  string `json:"operator"`
		Threshold int    `json:"threshold"`
		Units     string `json:"units"`
	} `json:"threshold"`
	Notifications []struct {
		TypeName string `json:"typeName"`
	} `json:"notifications"`
}

// Event is one entry of the event feed and audit log.
type Event struct {
	ID            string    `json:"id"`
	EventTypeName string    `json:"eventTypeName"`
	Created       time.Time `json:"created"`
	ClusterName   string    `json:"clusterName"`
	PublicKey     string    `json:"publicKey"`
	Detail        string    `json:"detail"`
}

// MaintenanceWindow is the project's maintenance window.
type MaintenanceWindow struct {
	DayOfWeek     int       `json:"dayOfWeek"`
	HourOfDay     int       `json:"hourOfDay"`
	StartASAP     bool      `json:"startASAP"`
	DeferredUntil time.Time `json:"deferredUntil"`
}
