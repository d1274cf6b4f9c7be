package node

import (
	"context"
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kms/local"
)

func TestDisableDropsKeysAndEnableRestores(t *testing.T) {
	ctx := context.Background()
	l := Layout{Dir: t.TempDir()}
	cmk, _, err := local.Ensure(l.LocalKeyPath())
	if err != nil {
		t.Fatal(err)
	}
	n, err := Open(ctx, l, cmk, Options{CacheSize: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	eng, ks, release, err := n.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	db, err := eng.CreateDatabase("app")
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set([]byte("k"), []byte("v"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	release()

	// The key is revoked: the check says INVALID and the node disables.
	if _, err := local.Disable(l.LocalKeyPath()); err != nil {
		t.Fatal(err)
	}
	st := cmk.Check(ctx)
	if st.Validity != kms.Invalid || st.Reason != kms.ReasonKeyDisabled {
		t.Fatalf("check after disable: %+v", st)
	}
	n.ApplyCheck(ctx, st)
	if s := n.State(); s.Available || s.Cause != kms.ReasonKeyDisabled {
		t.Fatalf("state after INVALID check: %v", s)
	}
	if ks.Loaded() {
		t.Fatal("keys are still in memory while disabled")
	}
	_, _, _, err = n.Acquire()
	var de *DisabledError
	if !errors.Is(err, ErrDisabled) || !errors.As(err, &de) {
		t.Fatalf("Acquire while disabled: %v", err)
	}

	// An unreachable answer changes nothing.
	n.ApplyCheck(ctx, kms.Status{Validity: kms.Unreachable, Reason: kms.ReasonTimeout})
	if n.State().Available {
		t.Fatal("UNREACHABLE re-enabled a disabled node")
	}

	// The key comes back: the next check re-enables, the data is there.
	if _, err := local.Enable(l.LocalKeyPath()); err != nil {
		t.Fatal(err)
	}
	n.ApplyCheck(ctx, cmk.Check(ctx))
	eng, _, release, err = n.Acquire()
	if err != nil {
		t.Fatalf("node not re-enabled: %v", err)
	}
	defer release()
	db, err = eng.Database("app")
	if err != nil {
		t.Fatal(err)
	}
	v, closer, err := db.Get([]byte("k"))
	if err != nil || string(v) != "v" {
		t.Fatalf("data after re-enable: %q %v", v, err)
	}
	closer.Close()
}

func TestStartWhileKeyInvalidStartsDisabled(t *testing.T) {
	ctx := context.Background()
	l := Layout{Dir: t.TempDir()}
	cmk, _, _ := local.Ensure(l.LocalKeyPath())
	n, err := Open(ctx, l, cmk, Options{})
	if err != nil {
		t.Fatal(err)
	}
	n.Close()
	local.ScheduleDeletion(l.LocalKeyPath())
	n, err = Open(ctx, l, cmk, Options{})
	if err != nil {
		t.Fatalf("open with a pending-deletion key should start disabled, got %v", err)
	}
	defer n.Close()
	if s := n.State(); s.Available || s.Cause != kms.ReasonKeyPendingDeletion {
		t.Fatalf("state: %v", s)
	}
	local.Restore(l.LocalKeyPath())
	n.ApplyCheck(ctx, cmk.Check(ctx))
	if !n.State().Available {
		t.Fatalf("not available after restore: %v", n.State())
	}
}
