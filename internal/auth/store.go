package auth

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// ErrUserNotFound is what a CredentialStore returns (possibly wrapped) for
// a user that does not exist.
var ErrUserNotFound = errors.New("user not found")

// CredentialStore looks users up. The node implements it over its system
// database; MemoryStore serves tests.
type CredentialStore interface {
	// Credentials returns the stored credentials of user in database db,
	// or an error wrapping ErrUserNotFound.
	Credentials(ctx context.Context, db, user string) (Credentials, error)
}

type userKey struct{ db, user string }

// MemoryStore is an in-memory CredentialStore, safe for concurrent use.
type MemoryStore struct {
	mu    sync.RWMutex
	users map[userKey]Credentials
}

// NewMemoryStore returns an empty store.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{users: map[userKey]Credentials{}}
}

// Put stores credentials for db/user, replacing any.
func (s *MemoryStore) Put(db, user string, c Credentials) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[userKey{db, user}] = c
}

// AddUser derives credentials from password and stores them.
func (s *MemoryStore) AddUser(db, user, password string, mechs ...Mechanism) error {
	c, err := NewCredentials(user, password, mechs...)
	if err != nil {
		return err
	}
	s.Put(db, user, c)
	return nil
}

// Delete removes db/user.
func (s *MemoryStore) Delete(db, user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.users, userKey{db, user})
}

// Credentials implements CredentialStore.
func (s *MemoryStore) Credentials(_ context.Context, db, user string) (Credentials, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.users[userKey{db, user}]
	if !ok {
		return Credentials{}, fmt.Errorf("auth: %s.%s: %w", db, user, ErrUserNotFound)
	}
	return c, nil
}
