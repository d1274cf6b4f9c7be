package testenv

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func TestScale(t *testing.T) {
	base := 1.0
	if race {
		base = raceFactor
	}
	for _, tc := range []struct {
		env  string
		want float64
	}{
		{"", base},
		{"3", 3 * base},
		{"0.5", 0.5 * base},
		{"0", base},
		{"-2", base},
		{"fast", base},
		{"1e9", base},
	} {
		t.Run(tc.env, func(t *testing.T) {
			t.Setenv(ScaleEnv, tc.env)
			if got := Scale(); got != tc.want {
				t.Fatalf("Scale() with %s=%q = %v, want %v", ScaleEnv, tc.env, got, tc.want)
			}
			if got, want := Timeout(10*time.Second), time.Duration(tc.want*float64(10*time.Second)); got != want {
				t.Fatalf("Timeout(10s) = %v, want %v", got, want)
			}
		})
	}
}

func TestPoll(t *testing.T) {
	errNotYet := errors.New("not yet")
	for _, tc := range []struct {
		name    string
		trueAt  int // call that first returns nil; 0: never
		d       time.Duration
		wantErr bool
	}{
		{"at once", 1, time.Minute, false},
		{"after some calls", 5, time.Minute, false},
		{"never", 0, 50 * time.Millisecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			err := Poll(context.Background(), tc.d, func() error {
				calls++
				if tc.trueAt > 0 && calls >= tc.trueAt {
					return nil
				}
				return errNotYet
			})
			if (err != nil) != tc.wantErr {
				t.Fatalf("Poll = %v after %d calls, want error %v", err, calls, tc.wantErr)
			}
			if tc.wantErr && !errors.Is(err, errNotYet) {
				t.Fatalf("Poll error %v does not wrap the condition's last error", err)
			}
			if !tc.wantErr && calls != tc.trueAt {
				t.Fatalf("Poll called the condition %d times, want %d", calls, tc.trueAt)
			}
		})
	}
}

func TestPollStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Poll(ctx, time.Hour, func() error { return errors.New("never") }); err == nil {
		t.Fatal("Poll with a cancelled context succeeded")
	}
}

func TestRAMDir(t *testing.T) {
	var dir string
	t.Run("use", func(t *testing.T) {
		dir = RAMDir(t)
		st, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if !st.IsDir() || st.Mode().Perm() != 0o700 {
			t.Fatalf("%s: mode %v, want a 0700 directory", dir, st.Mode())
		}
		if err := os.WriteFile(dir+"/f", []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	})
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s still there after the test: %v", dir, err)
	}
}

func TestUseRAMTempDir(t *testing.T) {
	var ram string
	t.Run("use", func(t *testing.T) {
		UseRAMTempDir(t)
		ram = os.Getenv("TMPDIR")
		dir := t.TempDir()
		if !strings.HasPrefix(dir, ram+string(os.PathSeparator)) {
			t.Fatalf("t.TempDir() = %s, not under TMPDIR %s", dir, ram)
		}
	})
	if os.Getenv("TMPDIR") == ram {
		t.Fatal("TMPDIR still points at the RAM directory after the test")
	}
	if _, err := os.Stat(ram); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s still there after the test: %v", ram, err)
	}
}
