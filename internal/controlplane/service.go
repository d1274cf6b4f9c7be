// Package controlplane owns projects, clusters and their nodes, the
// encryption-at-rest configuration of each project, the validity checks and
// state machine around its customer master key, node master key rotation,
// alerts, events and the audit log. It is the service behind the admin API
// (package atlasapi) and the node key service (package keyservice); it
// holds every KMS credential, and nodes reach their CMK only through it.
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kms/local"
	"github.com/cmkdb/cmkdb/internal/snapshot"
)

// Defaults of the lifecycle settings.
const (
	DefaultCheckInterval  = 15 * time.Minute
	MinCheckInterval      = 10 * time.Second
	DefaultRotationPeriod = 90 * 24 * time.Hour
	// DefaultRotationAlertDays is the threshold of the automatic
	// *_ENCRYPTION_KEY_NEEDS_ROTATION alert.
	DefaultRotationAlertDays = 90
)

// Notifier delivers an alert notification to a webhook.
type Notifier interface {
	Notify(ctx context.Context, url string, secret []byte, body []byte, id string)
}

// Options configure a Service.
type Options struct {
	// Dir holds the store and the internal key.
	Dir      string
	Logger   *slog.Logger
	Notifier Notifier
	// Now is the clock (tests).
	Now func() time.Time
	// ProviderPaths are the directories provider files (local key files,
	// PKCS#11 modules, KMIP and CA certificates) may be in. None: no
	// provider that needs a file can be configured.
	ProviderPaths []string
	// EventRetention is how many events a project keeps, newest first
	// (zero: DefaultEventRetention).
	EventRetention int
	// AllowPrivateWebhooks accepts webhook URLs on loopback and private
	// addresses (tests, self-hosters); link-local and metadata addresses
	// are refused whatever it says (webhook.CheckURL).
	AllowPrivateWebhooks bool
	// OnCreate runs once when the state is created, before the new store
	// commits (the cpserver creates its CA there): a crash leaves either no
	// state or state with everything OnCreate made.
	OnCreate func() error
	// BaseDir is what relative provider file paths are relative to
	// (paths.go); empty means Dir.
	BaseDir string
	// MinCheckInterval lowers the floor of a project's check interval
	// (cmkdb up --key-check-interval, tests). Zero means MinCheckInterval.
	MinCheckInterval time.Duration
}

// Service is the control plane.
//
// Invariants: every change is written to the store (synced) before it is
// visible in memory or acknowledged; s.mu guards all in-memory state and is
// never held across a KMS call.
type Service struct {
	opts     Options
	log      *slog.Logger // scrubs every record of credentials (redact.go)
	red      *redactor
	st       *store
	internal *local.Provider // wraps the master keys of clusters without customer key management
	// internalRef is the key reference the internal key wraps with.
	internalRef kms.KeyRef
	provisioner Provisioner
	// snapshots is the snapshot store (backup.go); nil: no backups.
	snapshots *snapshot.Store

	mu      sync.Mutex
	org     Org
	groups  map[string]*groupState
	apiKeys map[string]*APIKey // by public key
	// gen counts changes nodes may care about; changed is closed and
	// replaced on every change (long-polls wait on it).
	gen     uint64
	changed chan struct{}

	checkMu   sync.Map // group id → *sync.Mutex: one key check at a time per project
	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

type groupState struct {
	group    Group
	ear      earRecord
	mw       MaintenanceWindow
	clusters map[string]*Cluster
	nodes    map[string]*Node // by cluster/name
	configs  map[string]*AlertConfig
	alerts   map[string]*Alert
	events   []Event
	// provider is opened from ear; prevProvider from ear.Previous.
	provider, prevProvider kms.Provider
	nextCheck              time.Time
}

// Open opens (or creates) the control plane's state in opts.Dir.
func Open(ctx context.Context, opts Options) (*Service, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MinCheckInterval == 0 {
		opts.MinCheckInterval = MinCheckInterval
	}
	internalPath := filepath.Join(opts.Dir, "internal-cmk.json")
	stateDir := filepath.Join(opts.Dir, "state")
	// The internal key is checked before the store opens (a refused start
	// leaves the store untouched) and created only with a new store,
	// before it commits: existing state without it cannot be read
	// (clusters' master keys are wrapped under it), and is never given a
	// new one.
	internal, internalRef, err := openInternalKey(ctx, internalPath)
	if errors.Is(err, os.ErrNotExist) {
		if exists, serr := stateExists(stateDir); serr != nil || exists {
			return nil, &StateError{Path: internalPath, Err: errors.Join(err, serr)}
		}
	} else if err != nil {
		return nil, &StateError{Path: internalPath, Err: err}
	}
	st, err := openStore(stateDir, opts.Logger, func(st *store) error {
		if internal == nil {
			if _, err := local.Create(internalPath); err != nil {
				return fmt.Errorf("controlplane: internal key: %w", err)
			}
		}
		if opts.OnCreate != nil {
			if err := opts.OnCreate(); err != nil {
				return err
			}
		}
		return st.put(map[string]any{orgKey: Org{ID: newID(opts.Now().UTC()), Name: "cmkdb"}})
	})
	if err != nil {
		return nil, err
	}
	if internal == nil {
		if internal, internalRef, err = openInternalKey(ctx, internalPath); err != nil {
			st.close()
			return nil, &StateError{Path: internalPath, Err: err}
		}
	}
	red := &redactor{}
	s := &Service{opts: opts, log: slog.New(redactingHandler{inner: opts.Logger.Handler(), red: red}), red: red,
		st: st, internal: internal, internalRef: internalRef, groups: map[string]*groupState{},
		apiKeys: map[string]*APIKey{}, changed: make(chan struct{}), done: make(chan struct{})}
	// Directive generations start from the clock, not from zero: a node
	// that long-polls with the generation it saw from an earlier run of
	// the control plane (or a fresh agent asking with 0) gets an answer at
	// once instead of waiting out its poll for a change.
	s.gen = uint64(s.now().UnixNano())
	if err := s.load(ctx); err != nil {
		st.close()
		return nil, err
	}
	return s, nil
}

// openInternalKey opens the internal key and proves it wraps; an absent
// file is an error matching os.ErrNotExist.
func openInternalKey(ctx context.Context, path string) (*local.Provider, kms.KeyRef, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, kms.KeyRef{}, err
	}
	p, err := local.Open(path)
	if err != nil {
		return nil, kms.KeyRef{}, err
	}
	ref, err := probeWrap(ctx, p)
	if err != nil {
		return nil, kms.KeyRef{}, err
	}
	return p, ref, nil
}

func (s *Service) now() time.Time { return s.opts.Now().UTC() }

// load reads the store into memory and opens each project's provider.
func (s *Service) load(ctx context.Context) error {
	var org Org
	found := false
	if err := s.st.scan(orgKey, func(_ string, open func(any) error) error { found = true; return open(&org) }); err != nil {
		return err
	}
	if !found {
		// Every store is created with its organization record: a store
		// without one lost state, and is never given a new organization.
		return &StateError{Path: filepath.Join(s.opts.Dir, "state", storeDirName), Err: errors.New("the store has no organization record")}
	}
	s.org = org
	scans := []struct {
		prefix string
		fn     func(key string, open func(any) error) error
	}{
		{"group/", func(_ string, open func(any) error) error {
			var g Group
			if err := open(&g); err != nil {
				return err
			}
			s.groups[g.ID] = newGroupState(g)
			return nil
		}},
		{"ear/", func(k string, open func(any) error) error {
			return s.withLoadedGroup(k, func(gs *groupState) error { return open(&gs.ear) })
		}},
		{"mw/", func(k string, open func(any) error) error {
			return s.withLoadedGroup(k, func(gs *groupState) error { return open(&gs.mw) })
		}},
		{"cluster/", func(k string, open func(any) error) error {
			return s.withLoadedGroup(k, func(gs *groupState) error {
				var c Cluster
				if err := open(&c); err != nil {
					return err
				}
				interruptedMembershipChange(&c)
				gs.clusters[c.Name] = &c
				return nil
			})
		}},
		{"node/", func(k string, open func(any) error) error {
			return s.withLoadedGroup(k, func(gs *groupState) error {
				var n Node
				if err := open(&n); err != nil {
					return err
				}
				gs.nodes[n.Cluster+"/"+n.Name] = &n
				return nil
			})
		}},
		{"alertcfg/", func(k string, open func(any) error) error {
			return s.withLoadedGroup(k, func(gs *groupState) error {
				var c AlertConfig
				if err := open(&c); err != nil {
					return err
				}
				gs.configs[c.ID] = &c
				return nil
			})
		}},
		{"alert/", func(k string, open func(any) error) error {
			return s.withLoadedGroup(k, func(gs *groupState) error {
				var a Alert
				if err := open(&a); err != nil {
					return err
				}
				gs.alerts[a.ID] = &a
				return nil
			})
		}},
		{"event/", func(k string, open func(any) error) error {
			return s.withLoadedGroup(k, func(gs *groupState) error {
				var e Event
				if err := open(&e); err != nil {
					return err
				}
				gs.events = append(gs.events, e)
				return nil
			})
		}},
		{"apikey/", func(_ string, open func(any) error) error {
			var k APIKey
			if err := open(&k); err != nil {
				return err
			}
			s.apiKeys[k.PublicKey] = &k
			return nil
		}},
	}
	for _, sc := range scans {
		if err := s.st.scan(sc.prefix, sc.fn); err != nil {
			return fmt.Errorf("controlplane: load %s: %w", sc.prefix, err)
		}
	}
	if err := s.failInterruptedBackups(); err != nil {
		return fmt.Errorf("controlplane: load backups: %w", err)
	}
	for _, gs := range s.groups {
		if gs.ear.Kind != "" {
			gs.provider = s.openProvider(ctx, gs.ear.Kind, gs.ear.Values)
		}
		if gs.ear.Previous != nil {
			gs.prevProvider = s.openProvider(ctx, gs.ear.Previous.Kind, gs.ear.Previous.Values)
		}
		gs.nextCheck = s.now()
	}
	return nil
}

// withLoadedGroup finds the group named by a "<prefix>/<gid>/…" store key.
func (s *Service) withLoadedGroup(key string, fn func(*groupState) error) error {
	parts := strings.SplitN(key, "/", 3)
	if len(parts) < 2 {
		return fmt.Errorf("malformed key %q", key)
	}
	gs, ok := s.groups[parts[1]]
	if !ok {
		return nil // a leftover of a deleted group
	}
	return fn(gs)
}

func newGroupState(g Group) *groupState {
	return &groupState{group: g, clusters: map[string]*Cluster{}, nodes: map[string]*Node{},
		configs: map[string]*AlertConfig{}, alerts: map[string]*Alert{}}
}

// openProvider opens a configured provider, wrapped so that no error or
// status it produces carries one of the configuration's secrets (see
// redact.go). A provider that cannot even be constructed (a missing
// PKCS#11 module, an unreadable certificate) is represented by one whose
// every call fails with the reason, so the lifecycle treats it like any
// other KMS answer.
func (s *Service) openProvider(ctx context.Context, kind string, values map[string]string) kms.Provider {
	secrets := secretsOf(values)
	s.red.add(secrets...)
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	spec, ok := specByKind(kind)
	if !ok {
		return failing{err: &kms.Error{Op: "open", Reason: kms.ReasonKeyMalformed, Detail: "unknown provider " + kind}}
	}
	p, err := spec.open(ctx, s.resolvedValues(spec, values))
	if err != nil {
		r := kms.ReasonOf(err)
		if r == "" {
			r = kms.ReasonKeyMalformed
		}
		return failing{err: &kms.Error{Op: "open", Reason: r, Detail: scrubText(err.Error(), secrets)}}
	}
	return &scrubbing{p: p, secrets: secrets}
}

// failing is a provider that could not be opened.
type failing struct{ err *kms.Error }

func (f failing) Wrap(context.Context, []byte, []byte) (kms.Wrapped, error) {
	return kms.Wrapped{}, f.err
}
func (f failing) Unwrap(context.Context, kms.Wrapped, []byte) ([]byte, error) {
	return nil, f.err
}
func (f failing) Check(context.Context) kms.Status { return kms.StatusFromError(kms.KeyRef{}, f.err) }

func closeProvider(p kms.Provider) {
	if c, ok := p.(io.Closer); ok {
		_ = c.Close()
	}
}

// SetProvisioner sets what runs new clusters' nodes. Call before Start.
func (s *Service) SetProvisioner(p Provisioner) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.provisioner = p
}

// Close stops background work and closes the store. Calling it again does
// nothing.
func (s *Service) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.done)
		s.wg.Wait()
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, gs := range s.groups {
			closeProvider(gs.provider)
			closeProvider(gs.prevProvider)
		}
		err = s.st.close()
	})
	return err
}

// notifyLocked wakes every node long-poll. Callers hold s.mu.
func (s *Service) notifyLocked() {
	s.gen++
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Service) group(id string) (*groupState, error) {
	gs, ok := s.groups[id]
	if !ok {
		if !isID(id) {
			return nil, apiErr(400, "INVALID_GROUP_ID", "An invalid group ID %s was specified.", id)
		}
		return nil, notFound("group", id)
	}
	return gs, nil
}

// Org returns the organization.
func (s *Service) Org() Org {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.org
}
