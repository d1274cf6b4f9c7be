package transport

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestHCLogger(t *testing.T) {
	b := &logBuffer{}
	h := NewHCLogger(slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if h.IsDebug() || !h.IsInfo() || h.GetLevel() != hclog.Info {
		t.Fatalf("levels: debug %v info %v level %v", h.IsDebug(), h.IsInfo(), h.GetLevel())
	}
	h.Debug("hidden")
	n := h.Named("raft").Named("net").With("peer", "m2")
	if n.Name() != "raft.net" {
		t.Fatalf("name %q", n.Name())
	}
	n.Warn("slow", "took", 3, "odd")
	h.StandardLogger(nil).Print("from the standard logger")
	out := b.String()
	for _, want := range []string{"level=WARN msg=slow peer=m2 logger=raft.net took=3 EXTRA_VALUE_AT_END=odd", "level=INFO msg=\"from the standard logger\""} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "hidden") {
		t.Errorf("a debug line passed an info handler:\n%s", out)
	}
	NewHCLogger(nil).Error("discarded")
}
