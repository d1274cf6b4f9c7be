package wire

import (
	"crypto/tls"
	"net"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Principal is an authenticated user: the user name and the database that
// holds its credentials (the authentication source).
type Principal struct {
	DB   string
	User string
}

// ConnState is what the server knows about one client connection. Handlers
// read and update it; the auth layer keeps its SASL conversation here. It is
// safe for concurrent use, so that admin commands (currentOp) may inspect
// other connections.
type ConnState struct {
	id          int64
	remote      net.Addr
	local       net.Addr
	tls         *tls.ConnectionState
	connectedAt time.Time

	mu       sync.Mutex
	user     *Principal
	sasl     any
	metadata bson.Raw
}

// NewConnState returns the state of a connection; the server creates one
// per accepted connection, tests may build their own.
func NewConnState(id int64, remote, local net.Addr, tlsState *tls.ConnectionState) *ConnState {
	return &ConnState{id: id, remote: remote, local: local, tls: tlsState, connectedAt: time.Now()}
}

// ID is the server-assigned connection number (hello's connectionId).
func (c *ConnState) ID() int64 { return c.id }

// RemoteAddr is the client's address.
func (c *ConnState) RemoteAddr() net.Addr { return c.remote }

// LocalAddr is the server address the client connected to.
func (c *ConnState) LocalAddr() net.Addr { return c.local }

// TLS is the negotiated TLS state, or nil on a plaintext connection.
func (c *ConnState) TLS() *tls.ConnectionState { return c.tls }

// ConnectedAt is when the connection was accepted.
func (c *ConnState) ConnectedAt() time.Time { return c.connectedAt }

// Authenticated returns the user this connection authenticated as.
func (c *ConnState) Authenticated() (Principal, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.user == nil {
		return Principal{}, false
	}
	return *c.user, true
}

// SetAuthenticated records a successful authentication.
func (c *ConnState) SetAuthenticated(p Principal) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.user = &p
}

// Logout forgets the authenticated user and any SASL conversation.
func (c *ConnState) Logout() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.user = nil
	c.sasl = nil
}

// SASL returns the connection's in-progress SASL conversation, owned and
// typed by the auth layer, or nil.
func (c *ConnState) SASL() any {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sasl
}

// SetSASL stores (or, with nil, clears) the SASL conversation.
func (c *ConnState) SetSASL(conv any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sasl = conv
}

// ClientMetadata returns the "client" document from the handshake, if the
// handler recorded it.
func (c *ConnState) ClientMetadata() bson.Raw {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.metadata
}

// SetClientMetadata records the handshake's "client" document (copied).
func (c *ConnState) SetClientMetadata(doc bson.Raw) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.metadata = append(bson.Raw(nil), doc...)
}
