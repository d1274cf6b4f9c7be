// Package cpproto holds the types a node and the control plane exchange:
// the node's identity, the directive the control plane long-polls to it, the
// report the node sends back, and the errors both sides name. It is the only
// control-plane package a node links, so it imports nothing but kms (for key
// references and reasons) and the standard library; the control plane's
// service, store and cloud SDKs stay out of the node's import graph.
package cpproto

import (
	"errors"
	"strings"
	"time"

	"github.com/cmkdb/cmkdb/internal/kms"
)

// NodeID is a node's identity, taken from its client certificate by the key
// service, never from what the node says about itself.
type NodeID struct {
	GroupID string
	Cluster string
	Name    string
}

// ParseNodeID parses the "group/cluster/name" form used in node certificates.
func ParseNodeID(s string) (NodeID, bool) {
	p := strings.Split(s, "/")
	if len(p) != 3 || p[0] == "" || p[1] == "" || p[2] == "" {
		return NodeID{}, false
	}
	return NodeID{GroupID: p[0], Cluster: p[1], Name: p[2]}, true
}

// String is the certificate form of a node id.
func (id NodeID) String() string { return id.GroupID + "/" + id.Cluster + "/" + id.Name }

// BindAAD binds a node's associated data to its identity: the key service
// wraps and unwraps a managed node's master key under it, so one node
// cannot have another node's master key unwrapped. Whoever opens a managed
// node's keystore directly with the CMK (a snapshot, offline) binds the
// same way.
func BindAAD(id NodeID, aad []byte) []byte {
	b := []byte("cmkdb-node-key/v1\x00" + id.GroupID + "\x00" + id.Cluster + "\x00" + id.Name + "\x00")
	return append(b, aad...)
}

// InGroup is the node's name within its project: unique there, and the key
// the control plane records the node under.
func (id NodeID) InGroup() string { return id.Cluster + "/" + id.Name }

// Node states, as a node reports them and the control plane shows them.
const (
	StateAvailable = "AVAILABLE"
	StateDisabled  = "DISABLED"
)

// Directive is what the control plane wants of a node.
type Directive struct {
	// Gen increases with every change; a node long-polls for a larger one.
	Gen uint64 `json:"gen"`
	// Validity of the cluster's key: VALID, INVALID (drop keys, refuse
	// I/O) or UNREACHABLE (keep the current state).
	Validity string     `json:"validity"`
	Reason   kms.Reason `json:"reason,omitempty"`
	Detail   string     `json:"detail,omitempty"`
	// WrapKey is the key the node's master key must be wrapped with; a node
	// whose master key names another re-wraps it.
	WrapKey kms.KeyRef `json:"wrapKey"`
	// Rotate > the node's last applied rotation asks for a new master key;
	// RotateApplied is the last one the control plane saw applied (a node
	// restarting resumes its count from it).
	Rotate        uint64 `json:"rotate"`
	RotateApplied uint64 `json:"rotateApplied"`
	// Reencrypt > the node's last applied re-encryption asks a standalone
	// node (a one-member cluster) to re-encrypt in place: a fresh key
	// hierarchy under WrapKey, every database copied into it, the old one
	// destroyed. ReencryptApplied is the last one the control plane saw
	// done.
	Reencrypt        uint64 `json:"reencrypt,omitempty"`
	ReencryptApplied uint64 `json:"reencryptApplied,omitempty"`
}

// Reencryption is a node's in-place re-encryption, as it reports it.
type Reencryption struct {
	// Requested is the directive's Reencrypt this is about.
	Requested uint64 `json:"requested"`
	// Phase is COPYING, SWITCHING, DONE or FAILED.
	Phase         string `json:"phase"`
	BytesCopied   int64  `json:"bytesCopied"`
	BytesTotal    int64  `json:"bytesTotal"`
	Keys          int64  `json:"keys"`
	ElapsedMillis int64  `json:"elapsedMillis"`
	Error         string `json:"error,omitempty"`
}

// NodeReport is what a node says about itself.
type NodeReport struct {
	Address            string     `json:"address,omitempty"`
	State              string     `json:"state"`
	Reason             string     `json:"reason,omitempty"`
	MasterKeyVersion   uint32     `json:"masterKeyVersion"`
	MasterKeyCreatedAt time.Time  `json:"masterKeyCreatedAt"`
	CMK                kms.KeyRef `json:"cmk"`
	RotateApplied      uint64     `json:"rotateApplied"`
	// KeystoreGeneration is the generation of the node's keystore file
	// (readable without keys, so reported even while disabled); 0: unknown.
	KeystoreGeneration uint64 `json:"keystoreGeneration,omitempty"`
	// ReencryptApplied is the last in-place re-encryption done;
	// Reencryption the one running or the last one that failed.
	ReencryptApplied uint64        `json:"reencryptApplied,omitempty"`
	Reencryption     *Reencryption `json:"reencryption,omitempty"`
}

// ErrUnknownCluster is returned to nodes of clusters that do not exist.
var ErrUnknownCluster = errors.New("controlplane: the node's cluster does not exist")
