package transport

import (
	"context"
	"io"
	"log"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// NewHCLogger adapts l to the hclog.Logger raft wants (for
// raft.Config.Logger and the transport). Trace maps to a level below
// slog's Debug; SetLevel is ignored, the slog handler decides.
func NewHCLogger(l *slog.Logger) hclog.Logger {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return &hcLogger{l: l}
}

type hcLogger struct {
	l       *slog.Logger
	name    string
	implied []any
}

const levelTrace = slog.LevelDebug - 4

func slogLevel(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace:
		return levelTrace
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

func (h *hcLogger) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off {
		return
	}
	lv := slogLevel(level)
	if !h.l.Enabled(context.Background(), lv) {
		return
	}
	// hclog arguments are key/value pairs like slog's; an odd one out is
	// kept under a key of its own rather than mangling the record.
	if len(args)%2 == 1 {
		args = append(args[:len(args)-1:len(args)-1], "EXTRA_VALUE_AT_END", args[len(args)-1])
	}
	if h.name != "" {
		args = append([]any{"logger", h.name}, args...)
	}
	h.l.Log(context.Background(), lv, msg, args...)
}

func (h *hcLogger) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *hcLogger) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *hcLogger) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *hcLogger) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *hcLogger) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *hcLogger) enabled(lv slog.Level) bool { return h.l.Enabled(context.Background(), lv) }
func (h *hcLogger) IsTrace() bool              { return h.enabled(levelTrace) }
func (h *hcLogger) IsDebug() bool              { return h.enabled(slog.LevelDebug) }
func (h *hcLogger) IsInfo() bool               { return h.enabled(slog.LevelInfo) }
func (h *hcLogger) IsWarn() bool               { return h.enabled(slog.LevelWarn) }
func (h *hcLogger) IsError() bool              { return h.enabled(slog.LevelError) }

func (h *hcLogger) ImpliedArgs() []any { return h.implied }

func (h *hcLogger) With(args ...any) hclog.Logger {
	if len(args)%2 == 1 {
		args = append(args[:len(args)-1:len(args)-1], "EXTRA_VALUE_AT_END", args[len(args)-1])
	}
	return &hcLogger{l: h.l.With(args...), name: h.name, implied: append(h.implied[:len(h.implied):len(h.implied)], args...)}
}

func (h *hcLogger) Name() string { return h.name }

func (h *hcLogger) Named(name string) hclog.Logger {
	if h.name != "" {
		name = h.name + "." + name
	}
	return h.ResetNamed(name)
}

func (h *hcLogger) ResetNamed(name string) hclog.Logger {
	return &hcLogger{l: h.l, name: name, implied: h.implied}
}

func (h *hcLogger) SetLevel(hclog.Level) {}

func (h *hcLogger) GetLevel() hclog.Level {
	for _, lv := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if h.enabled(slogLevel(lv)) {
			return lv
		}
	}
	return hclog.Off
}

func (h *hcLogger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

func (h *hcLogger) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	level := hclog.Info
	if opts != nil && opts.ForceLevel != hclog.NoLevel {
		level = opts.ForceLevel
	}
	return writerFunc(func(p []byte) (int, error) {
		h.Log(level, strings.TrimRight(string(p), "\n"))
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
