package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // verifying what Atlas receivers verify
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// receiver is an httptest webhook endpoint whose answer to the n-th request
// (0-based) is chosen by respond. It records every request it saw.
type receiver struct {
	srv *httptest.Server

	mu   sync.Mutex
	reqs []seenRequest
}

type seenRequest struct {
	method string
	header http.Header
	body   []byte
	query  string
}

func newReceiver(t *testing.T, respond func(n int, w http.ResponseWriter, r *http.Request)) *receiver {
	t.Helper()
	rc := &receiver{}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		n := len(rc.reqs)
		rc.reqs = append(rc.reqs, seenRequest{r.Method, r.Header.Clone(), body, r.URL.RawQuery})
		rc.mu.Unlock()
		respond(n, w, r)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) requests() []seenRequest {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]seenRequest(nil), rc.reqs...)
}

// statuses answers each request with the next status, repeating the last.
func statuses(codes ...int) func(int, http.ResponseWriter, *http.Request) {
	return func(n int, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(codes[min(n, len(codes)-1)])
	}
}

// harness wraps a Sender whose backoff sleeps are recorded instead of
// slept, so tests assert on chosen delays and attempt counts, never on
// elapsed time.
type harness struct {
	s       *Sender
	results chan Result

	mu    sync.Mutex
	waits []time.Duration
}

func newHarness(t *testing.T, opts Options) *harness {
	t.Helper()
	h := &harness{results: make(chan Result, 100)}
	opts.OnResult = func(r Result) { h.results <- r }
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	opts.AllowPrivate = true // the receivers are on loopback
	h.s = New(opts)
	h.s.sleep = func(ctx context.Context, d time.Duration) error {
		h.mu.Lock()
		h.waits = append(h.waits, d)
		h.mu.Unlock()
		return ctx.Err()
	}
	t.Cleanup(func() { _ = h.s.Close(context.Background()) })
	return h
}

func (h *harness) recordedWaits() []time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]time.Duration(nil), h.waits...)
}

func (h *harness) result(t *testing.T) Result {
	t.Helper()
	select {
	case r := <-h.results:
		return r
	case <-time.After(10 * time.Second): // a hang guard, not a timing assertion
		t.Fatal("no result reported")
		return Result{}
	}
}

func wantSignature(secret, body []byte) string {
	m := hmac.New(sha1.New, secret)
	m.Write(body)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func TestDeliveryOutcomes(t *testing.T) {
	const maxAttempts = 4
	tests := []struct {
		name         string
		codes        []int
		wantOutcome  Outcome
		wantAttempts int
		wantStatus   int
	}{
		{"immediate success", []int{200}, Delivered, 1, 200},
		{"204 counts as success", []int{204}, Delivered, 1, 204},
		{"one 500 then success", []int{500, 200}, Delivered, 2, 200},
		{"three failures then success", []int{503, 502, 429, 201}, Delivered, 4, 201},
		{"400 is not retried", []int{400, 200}, GaveUp, 1, 400},
		{"404 is not retried", []int{404, 200}, GaveUp, 1, 404},
		{"redirect is not followed", []int{302, 200}, GaveUp, 1, 302},
		{"always 500 gives up", []int{500}, GaveUp, maxAttempts, 500},
		{"always 429 gives up", []int{429}, GaveUp, maxAttempts, 429},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newReceiver(t, statuses(tt.codes...))
			h := newHarness(t, Options{MaxAttempts: maxAttempts, BaseBackoff: time.Millisecond, MaxBackoff: time.Second})
			secret := []byte("whsec-test")
			body := []byte(`{"id":"a1","eventTypeName":"OUTSIDE_METRIC_THRESHOLD","status":"OPEN"}`)
			if err := h.s.Send(context.Background(), Delivery{URL: rc.srv.URL + "/hook", Secret: secret, Body: body, ID: "a1", Event: "alert.open"}); err != nil {
				t.Fatal(err)
			}
			r := h.result(t)
			if r.ID != "a1" || r.Outcome != tt.wantOutcome || r.Attempts != tt.wantAttempts || r.LastStatus != tt.wantStatus {
				t.Fatalf("result %+v, want %v after %d attempts, status %d", r, tt.wantOutcome, tt.wantAttempts, tt.wantStatus)
			}
			if (r.Err == nil) != (tt.wantOutcome == Delivered) {
				t.Fatalf("result err %v for outcome %v", r.Err, r.Outcome)
			}
			reqs := rc.requests()
			if len(reqs) != tt.wantAttempts {
				t.Fatalf("receiver saw %d requests, want %d", len(reqs), tt.wantAttempts)
			}
			for i, req := range reqs {
				if req.method != http.MethodPost || !bytes.Equal(req.body, body) {
					t.Fatalf("request %d: %s %q", i, req.method, req.body)
				}
				if got := req.header.Get("X-MMS-Signature"); got != wantSignature(secret, body) {
					t.Fatalf("request %d: signature %q, want %q", i, got, wantSignature(secret, body))
				}
				if req.header.Get("Content-Type") != "application/json" || req.header.Get("X-MMS-Event") != "alert.open" {
					t.Fatalf("request %d: headers %v", i, req.header)
				}
			}
			// One backoff per retry, each within the full-jitter bound.
			waits := h.recordedWaits()
			wantWaits := tt.wantAttempts - 1
			if tt.wantOutcome == GaveUp {
				wantWaits = min(tt.wantAttempts, maxAttempts) - 1
				if !retryable(tt.wantStatus) {
					wantWaits = 0
				}
			}
			if len(waits) != wantWaits {
				t.Fatalf("waits %v, want %d", waits, wantWaits)
			}
			for i, w := range waits {
				if ceil := retryPolicy(time.Millisecond, time.Second).Ceiling(i + 1); w < 0 || w > ceil {
					t.Fatalf("wait %d = %v, outside [0, %v]", i, w, ceil)
				}
			}
		})
	}
}

func TestNoSecretNoSignature(t *testing.T) {
	rc := newReceiver(t, statuses(200))
	h := newHarness(t, Options{})
	if err := h.s.Send(context.Background(), Delivery{URL: rc.srv.URL, Body: []byte(`{}`), ID: "x"}); err != nil {
		t.Fatal(err)
	}
	if r := h.result(t); r.Outcome != Delivered {
		t.Fatalf("result %+v", r)
	}
	hdr := rc.requests()[0].header
	if _, ok := hdr["X-Mms-Signature"]; ok {
		t.Fatalf("signature sent without a secret: %v", hdr)
	}
	if _, ok := hdr["X-Mms-Event"]; ok {
		t.Fatalf("event header sent without an event: %v", hdr)
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		switch n {
		case 0:
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusTooManyRequests)
		case 1:
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusServiceUnavailable)
		case 2:
			w.Header().Set("Retry-After", "86400") // beyond MaxBackoff
			w.WriteHeader(http.StatusTooManyRequests)
		default:
			w.WriteHeader(http.StatusOK)
		}
	})
	h := newHarness(t, Options{MaxAttempts: 5, BaseBackoff: time.Millisecond, MaxBackoff: time.Minute})
	if err := h.s.Send(context.Background(), Delivery{URL: rc.srv.URL, Body: []byte(`{}`), ID: "ra"}); err != nil {
		t.Fatal(err)
	}
	r := h.result(t)
	if r.Outcome != Delivered || r.Attempts != 4 {
		t.Fatalf("result %+v, want delivered after 4 attempts", r)
	}
	want := []time.Duration{7 * time.Second, 2 * time.Second, time.Minute}
	got := h.recordedWaits()
	if len(got) != len(want) {
		t.Fatalf("waits %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("waits %v, want %v (Retry-After replaces jitter, capped at MaxBackoff)", got, want)
		}
	}
}

func TestNetworkErrorRetried(t *testing.T) {
	rc := newReceiver(t, statuses(200))
	dead := rc.srv.URL
	rc.srv.Close() // connection refused from now on
	h := newHarness(t, Options{MaxAttempts: 3, BaseBackoff: time.Millisecond})
	if err := h.s.Send(context.Background(), Delivery{URL: dead + "/h?token=QUERY-SECRET", Body: []byte(`{}`), ID: "n"}); err != nil {
		t.Fatal(err)
	}
	r := h.result(t)
	if r.Outcome != GaveUp || r.Attempts != 3 || r.LastStatus != 0 || r.Err == nil {
		t.Fatalf("result %+v, want gave up after 3 attempts with no status", r)
	}
	if strings.Contains(r.Err.Error(), "QUERY-SECRET") {
		t.Fatalf("error leaks the query: %v", r.Err)
	}
}

// TestCloseDrains blocks the receiver so deliveries are in flight and
// queued when Close is called: Close must not return until all of them
// were delivered, and Send must refuse new work.
func TestCloseDrains(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 100)
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		arrived <- struct{}{}
		<-release
		w.WriteHeader(http.StatusOK)
	})
	h := newHarness(t, Options{Workers: 2, QueueSize: 10})
	const n = 6
	for i := range n {
		if err := h.s.Send(context.Background(), Delivery{URL: rc.srv.URL, Body: []byte(`{}`), ID: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	<-arrived
	<-arrived // both workers are now inside an attempt; the rest are queued

	closed := make(chan error, 1)
	go func() { closed <- h.s.Close(context.Background()) }()

	// Once closing, Send refuses. (Close may not have started yet, so poll;
	// a Send that wins the race adds one more delivery to drain.)
	extra := 0
	for {
		err := h.s.Send(context.Background(), Delivery{URL: rc.srv.URL, Body: []byte(`{}`), ID: "late"})
		if errors.Is(err, ErrClosed) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		extra++
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned %v while deliveries were in flight", err)
	default:
	}
	if st := h.s.Stats(); st.InFlight != 2 || st.Queued != int64(n+extra-2) {
		t.Fatalf("stats before release %+v", st)
	}

	close(release)
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	for range n + extra {
		if r := h.result(t); r.Outcome != Delivered {
			t.Fatalf("result %+v, want delivered", r)
		}
	}
	st := h.s.Stats()
	if st.Delivered != uint64(n+extra) || st.Queued != 0 || st.InFlight != 0 || st.GaveUp != 0 {
		t.Fatalf("stats after Close %+v", st)
	}
	if len(rc.requests()) != n+extra {
		t.Fatalf("receiver saw %d requests, want %d", len(rc.requests()), n+extra)
	}
}

// TestCloseContextCancels: when Close's context ends first, the in-flight
// attempt is aborted, queued deliveries are never attempted, and each is
// still reported exactly once.
func TestCloseContextCancels(t *testing.T) {
	arrived := make(chan struct{}, 10)
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-r.Context().Done() // hang until the sender gives up on us
	})
	h := newHarness(t, Options{Workers: 1})
	for i := range 3 {
		if err := h.s.Send(context.Background(), Delivery{URL: rc.srv.URL, Body: []byte(`{}`), ID: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	<-arrived
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.s.Close(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close = %v, want context.Canceled", err)
	}
	attempts := map[string]int{}
	for range 3 {
		r := h.result(t)
		if r.Outcome != Canceled {
			t.Fatalf("result %+v, want canceled", r)
		}
		attempts[r.ID] = r.Attempts
	}
	if attempts["0"] != 1 || attempts["1"] != 0 || attempts["2"] != 0 {
		t.Fatalf("attempts per delivery %v, want 0:1 1:0 2:0", attempts)
	}
	if st := h.s.Stats(); st.Canceled != 3 || st.Attempts != 1 {
		t.Fatalf("stats %+v", st)
	}
	if err := h.s.Send(context.Background(), Delivery{URL: rc.srv.URL, ID: "late"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after Close = %v, want ErrClosed", err)
	}
}

func TestSendValidatesAndCopies(t *testing.T) {
	rc := newReceiver(t, statuses(200))
	h := newHarness(t, Options{})
	for _, u := range []string{"", "/relative?token=QUERY-SECRET", "ftp://h/x?token=QUERY-SECRET", "http://%zz?token=QUERY-SECRET", "http:///nohost?token=QUERY-SECRET"} {
		err := h.s.Send(context.Background(), Delivery{URL: u, ID: "bad"})
		if !errors.Is(err, ErrInvalidURL) || strings.Contains(err.Error(), "QUERY-SECRET") {
			t.Fatalf("Send(%q) = %v, want ErrInvalidURL without the URL", u, err)
		}
	}
	body := []byte(`{"v":1}`)
	secret := []byte("k1")
	if err := h.s.Send(context.Background(), Delivery{URL: rc.srv.URL, Secret: secret, Body: body, ID: "c"}); err != nil {
		t.Fatal(err)
	}
	copy(body, `{"v":2}`) // the caller reuses its buffers
	copy(secret, "k2")
	if r := h.result(t); r.Outcome != Delivered {
		t.Fatalf("result %+v", r)
	}
	req := rc.requests()[0]
	if string(req.body) != `{"v":1}` || req.header.Get(SignatureHeader) != wantSignature([]byte("k1"), []byte(`{"v":1}`)) {
		t.Fatalf("receiver got %q signed %q", req.body, req.header.Get(SignatureHeader))
	}
}

// TestSendBlocksWhenFull: with the only worker stuck and the queue full,
// Send waits and gives up with the caller's context.
func TestSendBlocksWhenFull(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 10)
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		arrived <- struct{}{}
		<-release
	})
	defer close(release)
	h := newHarness(t, Options{Workers: 1, QueueSize: 1})
	d := Delivery{URL: rc.srv.URL, Body: []byte(`{}`)}
	if err := h.s.Send(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	<-arrived
	if err := h.s.Send(context.Background(), d); err != nil { // fills the queue
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.s.Send(ctx, d); !errors.Is(err, context.Canceled) {
		t.Fatalf("Send on full queue = %v, want context.Canceled", err)
	}
	if st := h.s.Stats(); st.Queued != 1 {
		t.Fatalf("stats %+v, want 1 queued", st)
	}
}

// TestLogsRedacted runs every logging path (retry, give-up, network error)
// at debug level and checks that neither the secret nor any part of the URL
// beyond scheme and host is written.
func TestLogsRedacted(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rc := newReceiver(t, statuses(500, 400))
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()

	h := newHarness(t, Options{MaxAttempts: 2, BaseBackoff: time.Millisecond, Logger: logger})
	secret := []byte("WHSEC-SECRET")
	for i, base := range []string{rc.srv.URL, deadURL} {
		u := base + "/services/PATH-TOKEN?token=QUERY-SECRET"
		if err := h.s.Send(context.Background(), Delivery{URL: u, Secret: secret, Body: []byte(`{}`), ID: "id-" + strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
		r := h.result(t)
		if r.Outcome != GaveUp {
			t.Fatalf("result %+v", r)
		}
		for _, leak := range []string{"QUERY-SECRET", "PATH-TOKEN", string(secret), wantSignature(secret, []byte(`{}`))} {
			if strings.Contains(r.Err.Error(), leak) {
				t.Fatalf("result error leaks %q: %v", leak, r.Err)
			}
		}
	}
	if got := rc.requests()[0].query; got != "token=QUERY-SECRET" {
		t.Fatalf("receiver got query %q; the URL must be sent intact", got)
	}
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	for _, want := range []string{"id=id-0", "id=id-1", "webhook attempt failed", "outcome=\"gave up\""} {
		if !strings.Contains(out, want) {
			t.Fatalf("log lacks %q:\n%s", want, out)
		}
	}
	for _, leak := range []string{"QUERY-SECRET", "PATH-TOKEN", string(secret), wantSignature(secret, []byte(`{}`))} {
		if strings.Contains(out, leak) {
			t.Fatalf("log leaks %q:\n%s", leak, out)
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
