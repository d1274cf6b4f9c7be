package raftstore

import (
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/cmkdb/cmkdb/internal/encfs"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// testKeys is a KeySource with one random key: a real encfs without a
// keystore, so tests can close and reopen databases at will.
type testKeys struct{ key []byte }

func newTestKeys(t testing.TB) testKeys {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return testKeys{key: k}
}

func (k testKeys) CurrentKey() (uint32, []byte, error) { return 1, k.key, nil }
func (k testKeys) Key(v uint32) ([]byte, error) {
	if v != 1 {
		return nil, fmt.Errorf("version %d: %w", v, encfs.ErrUnknownKeyVersion)
	}
	return k.key, nil
}

// encFS is an encrypting, private-mode file system over the real disk, as
// storage builds for every database.
func encFS(t testing.TB) vfs.FS {
	return encfs.New(encfs.Private(vfs.Default), "raftstore-test", newTestKeys(t))
}

func openDB(t testing.TB, fs vfs.FS, dir string) *pebble.DB {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{FS: fs, FormatMajorVersion: pebble.FormatNewest, Logger: quietLogger{t}})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func newStore(t testing.TB, db *pebble.DB, prefix string) *Store {
	t.Helper()
	s, err := New(db, []byte(prefix))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// waitFor polls cond until it holds or the deadline (generous: CI machines
// are busy) passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// quietLogger keeps Pebble's informational chatter out of test output.
type quietLogger struct{ t testing.TB }

func (quietLogger) Infof(string, ...any)                {}
func (l quietLogger) Errorf(format string, args ...any) { l.t.Logf(format, args...) }
func (l quietLogger) Fatalf(format string, args ...any) { l.t.Fatalf(format, args...) }
