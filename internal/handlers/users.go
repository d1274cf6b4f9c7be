package handlers

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/auth"
	"github.com/cmkdb/cmkdb/internal/docstore"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// Users live, as in mongod, in the admin database's system.users
// collection, one document per user:
//
//	{_id: "<db>.<user>", userId: UUID, user, db,
//	 credentials: {"SCRAM-SHA-256": {iterationCount, salt, storedKey, serverKey}, "SCRAM-SHA-1": {...}},
//	 roles: [{role, db}], customData?}
//
// The admin database is encrypted under its own database key like every
// other, so the SCRAM keys are encrypted at rest. Passwords are never
// stored: only the salted keys auth.NewCredentials derives. The collection
// is reachable only through the user commands (see guardSystemUsers).
const (
	usersDB   = "admin"
	usersColl = "system.users"
)

// Error codes of the user commands that mongoerr does not name.
const (
	userAlreadyExists mongoerr.Code = 51003 // mongod's createUser duplicate ("Location51003")
	roleNotFound      mongoerr.Code = 31
)

// Role is one role grant: role name and the database it applies to.
type Role struct {
	Role string `bson:"role"`
	DB   string `bson:"db"`
}

// userDoc is a system.users document.
type userDoc struct {
	ID          string           `bson:"_id"`
	UserID      bson.Binary      `bson:"userId"`
	User        string           `bson:"user"`
	DB          string           `bson:"db"`
	Credentials auth.Credentials `bson:"credentials"`
	Roles       []Role           `bson:"roles"`
	CustomData  bson.Raw         `bson:"customData,omitempty"`
}

func userID(db, user string) string { return db + "." + user }

// userStore reads and writes system.users through the handler's docstore
// of the admin database. It implements auth.CredentialStore. Writes are
// serialized by mu so that "no users yet" checks (the localhost exception)
// and the insert that follows are atomic.
//
// Its reads and writes run under context.Background(): they touch
// admin.system.users only — a handful of small documents, read by
// authentication before any command context exists — so they run to
// completion; a disable still waits for them through node.Acquire.
type userStore struct {
	h  *Handler
	mu sync.Mutex

	cacheMu sync.RWMutex
	roles   map[wire.Principal][]Role // roles of authenticated users, dropped on any user write
	gen     uint64                    // bumped by invalidate: a lookup that raced a write is not cached
}

func newUserStore(h *Handler) *userStore {
	return &userStore{h: h, roles: map[wire.Principal][]Role{}}
}

// collection returns the users collection; with create it and the admin
// database are created if missing, otherwise a missing one is nil.
func (s *userStore) collection(create bool) (*docstore.Store, *docstore.Collection, func(), error) {
	st, release, err := s.h.store(usersDB, create)
	if err != nil {
		return nil, nil, nil, err
	}
	if st == nil {
		release()
		return nil, nil, func() {}, nil
	}
	coll := st.Collection(usersColl)
	if coll == nil && create {
		if coll, err = st.EnsureCollection(usersColl); err != nil {
			release()
			return nil, nil, nil, err
		}
		if err := ensureAuthSchema(st); err != nil {
			release()
			return nil, nil, nil, err
		}
	}
	return st, coll, release, nil
}

// authSchemaVersion is the version of the user documents' format (SCRAM
// credentials), as mongod 7.0 records it in admin.system.version and
// answers to getParameter: backup tools check it before they restore
// users (mongorestore refuses to mix versions).
const authSchemaVersion = 5

// ensureAuthSchema records the auth schema version beside the users, as
// mongod does ({_id: "authSchema", currentVersion: 5} in
// admin.system.version), so that a dump of admin carries it.
func ensureAuthSchema(st *docstore.Store) error {
	coll, err := st.EnsureCollection("system.version")
	if err != nil {
		return err
	}
	doc, err := bson.Marshal(bson.D{{Key: "_id", Value: "authSchema"}, {Key: "currentVersion", Value: int32(authSchemaVersion)}})
	if err != nil {
		return err
	}
	err = st.Write(context.Background(), func(w *docstore.Writer) error { return w.Insert(coll, doc) })
	if mongoerr.CodeOf(err) == mongoerr.DuplicateKey {
		return nil
	}
	return err
}

// get returns a user's document, or an error wrapping auth.ErrUserNotFound.
func (s *userStore) get(db, user string) (*userDoc, error) {
	st, coll, release, err := s.collection(false)
	if err != nil {
		return nil, err
	}
	defer release()
	notFound := fmt.Errorf("%s@%s: %w", user, db, auth.ErrUserNotFound)
	if coll == nil {
		return nil, notFound
	}
	raw, ok, err := st.Get(coll, idValue(userID(db, user)))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, notFound
	}
	var d userDoc
	if err := bson.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("handlers: decoding user %s@%s: %w", user, db, err)
	}
	return &d, nil
}

// Credentials implements auth.CredentialStore.
func (s *userStore) Credentials(_ context.Context, db, user string) (auth.Credentials, error) {
	d, err := s.get(db, user)
	if err != nil {
		return auth.Credentials{}, err
	}
	return d.Credentials, nil
}

// list returns the users for which keep is true, in _id order.
func (s *userStore) list(keep func(*userDoc) bool) ([]*userDoc, error) {
	st, coll, release, err := s.collection(false)
	if err != nil {
		return nil, err
	}
	defer release()
	if coll == nil {
		return nil, nil
	}
	plan, err := docstore.PlanFor(coll, nil)
	if err != nil {
		return nil, err
	}
	var out []*userDoc
	err = st.Scan(context.Background(), coll, plan, &docstore.Position{}, func(raw bson.Raw) (bool, error) {
		var d userDoc
		if err := bson.Unmarshal(raw, &d); err != nil {
			return false, fmt.Errorf("handlers: decoding a user: %w", err)
		}
		if keep == nil || keep(&d) {
			out = append(out, &d)
		}
		return true, nil
	})
	return out, err
}

// any reports whether at least one user exists.
func (s *userStore) any() (bool, error) {
	st, coll, release, err := s.collection(false)
	if err != nil {
		return false, err
	}
	defer release()
	if coll == nil {
		return false, nil
	}
	plan, err := docstore.PlanFor(coll, nil)
	if err != nil {
		return false, err
	}
	found := false
	err = st.Scan(context.Background(), coll, plan, &docstore.Position{}, func(bson.Raw) (bool, error) {
		found = true
		return false, nil
	})
	return found, err
}

// create inserts a new user. precondition, if set, runs under the write
// lock first (the localhost exception checks there are no users yet).
func (s *userStore) create(d *userDoc, precondition func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.invalidate()
	if precondition != nil {
		if err := precondition(); err != nil {
			return err
		}
	}
	if len(d.UserID.Data) == 0 {
		id := make([]byte, 16)
		_, _ = rand.Read(id)
		id[6], id[8] = id[6]&0x0f|0x40, id[8]&0x3f|0x80 // UUID v4
		d.UserID = bson.Binary{Subtype: bson.TypeBinaryUUID, Data: id}
	}
	d.ID = userID(d.DB, d.User)
	raw, err := bson.Marshal(d)
	if err != nil {
		return fmt.Errorf("handlers: encoding user: %w", err)
	}
	st, coll, release, err := s.collection(true)
	if err != nil {
		return err
	}
	defer release()
	err = st.Write(context.Background(), func(w *docstore.Writer) error { return w.Insert(coll, raw) })
	if mongoerr.CodeOf(err) == mongoerr.DuplicateKey {
		return mongoerr.New(userAlreadyExists, "User \"%s@%s\" already exists", d.User, d.DB)
	}
	return err
}

// update applies change to an existing user and stores the result.
func (s *userStore) update(db, user string, change func(*userDoc) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.invalidate()
	st, coll, release, err := s.collection(false)
	if err != nil {
		return err
	}
	defer release()
	if coll == nil {
		return userNotFound(db, user)
	}
	return st.Write(context.Background(), func(w *docstore.Writer) error {
		old, ok, err := w.Get(coll, idValue(userID(db, user)))
		if err != nil {
			return err
		}
		if !ok {
			return userNotFound(db, user)
		}
		var d userDoc
		if err := bson.Unmarshal(old, &d); err != nil {
			return fmt.Errorf("handlers: decoding user %s@%s: %w", user, db, err)
		}
		if err := change(&d); err != nil {
			return err
		}
		raw, err := bson.Marshal(&d)
		if err != nil {
			return fmt.Errorf("handlers: encoding user: %w", err)
		}
		return w.Replace(coll, old, raw)
	})
}

// drop deletes users; it returns how many. With user == "" every user of
// db goes (dropAllUsersFromDatabase).
func (s *userStore) drop(db, user string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.invalidate()
	var victims []*userDoc
	if user != "" {
		d, err := s.get(db, user)
		if errors.Is(err, auth.ErrUserNotFound) {
			return 0, userNotFound(db, user)
		}
		if err != nil {
			return 0, err
		}
		victims = []*userDoc{d}
	} else {
		var err error
		if victims, err = s.list(func(d *userDoc) bool { return d.DB == db }); err != nil {
			return 0, err
		}
	}
	if len(victims) == 0 {
		return 0, nil
	}
	st, coll, release, err := s.collection(false)
	if err != nil {
		return 0, err
	}
	defer release()
	if coll == nil {
		return 0, userNotFound(db, user)
	}
	n := 0
	err = st.Write(context.Background(), func(w *docstore.Writer) error {
		for _, v := range victims {
			raw, ok, err := w.Get(coll, idValue(v.ID))
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			if err := w.Delete(coll, raw); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// rolesOf returns an authenticated user's roles, cached until the next
// user write. A user dropped since it authenticated has none.
func (s *userStore) rolesOf(p wire.Principal) ([]Role, error) {
	s.cacheMu.RLock()
	r, ok := s.roles[p]
	gen := s.gen
	s.cacheMu.RUnlock()
	if ok {
		return r, nil
	}
	d, err := s.get(p.DB, p.User)
	switch {
	case errors.Is(err, auth.ErrUserNotFound):
		r = []Role{}
	case err != nil:
		return nil, err
	default:
		r = d.Roles
		if r == nil {
			r = []Role{}
		}
	}
	s.cacheMu.Lock()
	if s.gen == gen {
		s.roles[p] = r
	}
	s.cacheMu.Unlock()
	return r, nil
}

func (s *userStore) invalidate() {
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	s.gen++
	clear(s.roles)
}

func userNotFound(db, user string) error {
	return mongoerr.New(mongoerr.UserNotFound, "User '%s@%s' not found", user, db)
}

func idValue(id string) bson.RawValue {
	_, v, _ := bson.MarshalValue(id)
	return bson.RawValue{Type: bson.TypeString, Value: v}
}

// CreateUser creates a user with SCRAM-SHA-1 and SCRAM-SHA-256
// credentials; `cmkdb up --auth` uses it for the first admin user. The
// password is used only to derive the salted keys and is not kept.
func (h *Handler) CreateUser(ctx context.Context, db, user, password string, roles []Role) error {
	if err := validateDBName(db); err != nil {
		return err
	}
	if err := validateUserName(user); err != nil {
		return err
	}
	if err := validateRoles(roles); err != nil {
		return err
	}
	creds, err := newCredentials(user, password, nil)
	if err != nil {
		return err
	}
	return authOf(h).users.create(&userDoc{User: user, DB: db, Credentials: creds, Roles: roles}, nil)
}

// HasUsers reports whether any user exists.
func (h *Handler) HasUsers(context.Context) (bool, error) {
	return authOf(h).users.any()
}
