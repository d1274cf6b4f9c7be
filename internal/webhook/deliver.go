package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"
)

// maxDrain is how much of a response body is read so the connection can be
// reused; webhook responses are not interpreted.
const maxDrain = 64 << 10

func (s *Sender) worker() {
	defer s.workers.Done()
	for j := range s.queue {
		s.queued.Add(-1)
		s.inFlight.Add(1)
		r := s.deliver(j)
		s.inFlight.Add(-1)
		s.finish(j, r)
	}
}

// deliver makes attempts until one succeeds, one fails permanently,
// MaxAttempts is reached, or the Sender is canceled.
func (s *Sender) deliver(j job) Result {
	res := Result{ID: j.d.ID}
	for attempt := 1; ; attempt++ {
		if err := s.ctx.Err(); err != nil {
			res.Outcome = Canceled
			res.Err = fmt.Errorf("webhook: delivery %q: %w", j.d.ID, err)
			return res
		}
		res.Attempts = attempt
		s.attempts.Add(1)
		status, header, err := s.attempt(j)
		res.LastStatus, res.Err = status, err

		switch {
		case err == nil && status >= 200 && status < 300:
			res.Outcome, res.Err = Delivered, nil
			return res
		case err != nil && s.ctx.Err() != nil:
			res.Outcome = Canceled
			return res
		case errors.Is(err, ErrForbiddenAddress):
			// The policy will refuse the address again: no retry.
			res.Outcome = GaveUp
			return res
		case err == nil && !retryable(status):
			res.Outcome = GaveUp
			res.Err = fmt.Errorf("webhook: delivery %q: non-retryable status %d", j.d.ID, status)
			return res
		case err == nil:
			res.Err = fmt.Errorf("webhook: delivery %q: status %d", j.d.ID, status)
		}
		if attempt >= s.opts.MaxAttempts {
			res.Outcome = GaveUp
			return res
		}

		wait := retryPolicy(s.opts.BaseBackoff, s.opts.MaxBackoff).Delay(attempt)
		if ra, ok := parseRetryAfter(header.Get("Retry-After"), time.Now()); ok {
			wait = min(ra, s.opts.MaxBackoff)
		}
		s.log.Debug("webhook attempt failed; retrying",
			slog.String("id", j.d.ID), slog.String("url", redactURL(j.u)),
			slog.Int("attempt", attempt), slog.Int("status", status),
			slog.Any("err", res.Err), slog.Duration("wait", wait))
		if err := s.sleep(s.ctx, wait); err != nil {
			res.Outcome = Canceled
			res.Err = fmt.Errorf("webhook: delivery %q: %w", j.d.ID, err)
			return res
		}
	}
}

// attempt POSTs once and returns the response status and headers; err is
// set only when no response arrived.
func (s *Sender) attempt(j job) (int, http.Header, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.AttemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, j.u.String(), bytes.NewReader(j.d.Body))
	if err != nil {
		return 0, nil, fmt.Errorf("webhook: delivery %q: build request: %w", j.d.ID, redactErr(err, j.u))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "cmkdb-webhook")
	if len(j.d.Secret) > 0 {
		req.Header.Set(SignatureHeader, Signature(j.d.Secret, j.d.Body))
	}
	if j.d.Event != "" {
		req.Header.Set(EventHeader, j.d.Event)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("webhook: delivery %q: %w", j.d.ID, redactErr(err, j.u))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	return resp.StatusCode, resp.Header, nil
}

func (s *Sender) finish(j job, r Result) {
	level := slog.LevelInfo
	switch r.Outcome {
	case Delivered:
		s.delivered.Add(1)
	case GaveUp:
		s.gaveUp.Add(1)
		level = slog.LevelWarn
	case Canceled:
		s.canceled.Add(1)
		level = slog.LevelWarn
	}
	s.log.Log(context.Background(), level, "webhook delivery finished",
		slog.String("id", r.ID), slog.String("url", redactURL(j.u)),
		slog.String("outcome", r.Outcome.String()), slog.Int("attempts", r.Attempts),
		slog.Int("status", r.LastStatus), slog.Any("err", r.Err))
	if s.opts.OnResult != nil {
		s.opts.OnResult(r)
	}
}
