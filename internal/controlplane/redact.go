package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/cmkdb/cmkdb/internal/kms"
)

// Secrets never leave the control plane: not in an HTTP answer, an event
// (read-only API keys read events), an alert, a webhook body, a directive
// to a node, or a log line. Every KMS answer enters the control plane
// through a provider opened by openProvider, which wraps it in scrubbing:
// that is where error text is built for everything downstream, so a KMS
// that echoes a credential in its message (a wrong secret quoted back, an
// access key in a signature error) is caught once, there. Events, API
// errors and the service's logger scrub again with every secret the
// service has seen, as a second net for text built elsewhere.

// redactedMark replaces a secret.
const redactedMark = "[redacted]"

// minSecretLen is the shortest value scrubbed: replacing "ab" everywhere
// would mangle messages and hide nothing.
const minSecretLen = 4

// secretsOf returns the write-only (credential) values of a provider
// configuration.
func secretsOf(values map[string]string) []string {
	var out []string
	for _, spec := range specs() {
		for _, f := range spec.fields {
			if v := values[f.name]; f.writeOnly && len(v) >= minSecretLen {
				out = append(out, v)
			}
		}
	}
	return out
}

// scrubText replaces every secret in s, longest first (so a secret that
// contains another is replaced whole).
func scrubText(s string, secrets []string) string {
	for _, sec := range secrets {
		if len(sec) >= minSecretLen {
			s = strings.ReplaceAll(s, sec, redactedMark)
		}
	}
	return s
}

// redactor holds every secret the service has been configured with since
// it started; a replaced credential may still appear in a late answer.
type redactor struct {
	mu      sync.RWMutex
	secrets []string // longest first
}

func (r *redactor) add(secrets ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range secrets {
		if len(s) >= minSecretLen && !slices.Contains(r.secrets, s) {
			r.secrets = append(r.secrets, s)
		}
	}
	slices.SortFunc(r.secrets, func(a, b string) int { return len(b) - len(a) })
}

func (r *redactor) scrub(s string) string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return scrubText(s, r.secrets)
}

// Redact returns text with every credential the control plane holds
// replaced. The admin API passes every error body through it.
func (s *Service) Redact(text string) string { return s.red.scrub(text) }

// Logger is the service's logger: every record it writes is scrubbed of
// credentials. Servers around the service (admin API, key service,
// webhooks) log through it.
func (s *Service) Logger() *slog.Logger { return s.log }

// scrubbing is a provider whose errors and statuses carry none of its
// configuration's secrets.
type scrubbing struct {
	p       kms.Provider
	secrets []string
}

func (sp *scrubbing) Wrap(ctx context.Context, key, aad []byte) (kms.Wrapped, error) {
	w, err := sp.p.Wrap(ctx, key, aad)
	return w, scrubError(err, sp.secrets)
}

func (sp *scrubbing) Unwrap(ctx context.Context, w kms.Wrapped, aad []byte) ([]byte, error) {
	k, err := sp.p.Unwrap(ctx, w, aad)
	return k, scrubError(err, sp.secrets)
}

func (sp *scrubbing) Check(ctx context.Context) kms.Status {
	st := sp.p.Check(ctx)
	st.Detail = scrubText(st.Detail, sp.secrets)
	return st
}

// Close closes the wrapped provider.
func (sp *scrubbing) Close() error {
	closeProvider(sp.p)
	return nil
}

// scrubError returns err with its text scrubbed; a *kms.Error keeps its
// operation, key and reason (so errors.Is on reasons and classes still
// works) with Detail and the cause's text scrubbed.
func scrubError(err error, secrets []string) error {
	if err == nil || len(secrets) == 0 {
		return err
	}
	var ke *kms.Error
	if errors.As(err, &ke) {
		out := *ke
		out.Detail = scrubText(ke.Detail, secrets)
		if ke.Err != nil {
			out.Err = scrubbedError{msg: scrubText(ke.Err.Error(), secrets), cause: ke.Err}
		}
		if err.Error() == ke.Error() {
			return &out
		}
		return scrubbedError{msg: scrubText(err.Error(), secrets), cause: &out}
	}
	msg := scrubText(err.Error(), secrets)
	if msg == err.Error() {
		return err
	}
	return scrubbedError{msg: msg, cause: err}
}

// scrubbedError is an error whose text was scrubbed. It unwraps to its
// cause so that errors.Is (context.Canceled, kms reasons) still works.
type scrubbedError struct {
	msg   string
	cause error
}

func (e scrubbedError) Error() string { return e.msg }
func (e scrubbedError) Unwrap() error { return e.cause }

// redactingHandler scrubs every record's message and attributes.
type redactingHandler struct {
	inner slog.Handler
	red   *redactor
}

func (h redactingHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h redactingHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, h.red.scrub(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a))
		return true
	})
	return h.inner.Handle(ctx, out)
}

func (h redactingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	scrubbed := make([]slog.Attr, len(as))
	for i, a := range as {
		scrubbed[i] = h.attr(a)
	}
	return redactingHandler{inner: h.inner.WithAttrs(scrubbed), red: h.red}
}

func (h redactingHandler) WithGroup(name string) slog.Handler {
	return redactingHandler{inner: h.inner.WithGroup(name), red: h.red}
}

// attr scrubs one attribute: strings, errors and anything that prints.
func (h redactingHandler) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, h.red.scrub(v.String()))
	case slog.KindGroup:
		g := v.Group()
		out := make([]any, len(g))
		for i, ga := range g {
			out[i] = h.attr(ga)
		}
		return slog.Group(a.Key, out...)
	case slog.KindAny:
		text := fmt.Sprint(v.Any())
		if scrubbed := h.red.scrub(text); scrubbed != text {
			return slog.String(a.Key, scrubbed)
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
