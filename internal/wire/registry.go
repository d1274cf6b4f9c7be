package wire

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// ErrDuplicateCommand is returned by Register for a name already taken.
var ErrDuplicateCommand = errors.New("command already registered")

// Registry is a minimal Handler that dispatches on the command name, for
// servers that need nothing but dispatch (the wire and auth packages'
// tests). A node's commands are described by internal/handlers' command
// table instead, which also carries their aliases, authentication,
// privileges and help. Names are case-sensitive, as in mongod, except that
// "isMaster" and "ismaster" are the same command (both spellings are in use
// by drivers).
type Registry struct {
	mu   sync.RWMutex
	cmds map[string]HandlerFunc
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry {
	return &Registry{cmds: map[string]HandlerFunc{}}
}

// canonicalName folds the one case-insensitive alias mongod has.
func canonicalName(name string) string {
	if name == "ismaster" {
		return "isMaster"
	}
	return name
}

// Register adds a command. Registering "isMaster" also serves "ismaster".
func (r *Registry) Register(name string, h HandlerFunc) error {
	if name == "" || h == nil {
		return fmt.Errorf("wire: register %q: empty name or nil handler", name)
	}
	name = canonicalName(name)
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.cmds[name]; ok {
		return fmt.Errorf("wire: register %q: %w", name, ErrDuplicateCommand)
	}
	r.cmds[name] = h
	return nil
}

// Lookup returns the handler for a command name.
func (r *Registry) Lookup(name string) (HandlerFunc, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	h, ok := r.cmds[canonicalName(name)]
	return h, ok
}

// Names returns the registered command names, sorted (for listCommands).
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.cmds))
	for n := range r.cmds {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Handle implements Handler: unknown commands fail with CommandNotFound and
// mongod's message.
func (r *Registry) Handle(ctx context.Context, c *ConnState, req *Request) (bson.Raw, error) {
	h, ok := r.Lookup(req.Name)
	if !ok {
		return nil, mongoerr.New(mongoerr.CommandNotFound, "no such command: '%s'", req.Name)
	}
	return h(ctx, c, req)
}
