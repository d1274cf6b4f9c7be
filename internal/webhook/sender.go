package webhook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for zero Options fields.
const (
	DefaultMaxAttempts    = 5
	DefaultBaseBackoff    = time.Second
	DefaultMaxBackoff     = time.Minute
	DefaultWorkers        = 4
	DefaultQueueSize      = 256
	DefaultAttemptTimeout = 30 * time.Second
)

var (
	// ErrClosed is returned by Send after Close has been called.
	ErrClosed = errors.New("webhook: sender closed")
	// ErrInvalidURL is returned by Send for a URL that is not absolute
	// http(s). The URL itself is left out of the error: it may hold a token.
	ErrInvalidURL = errors.New("webhook: invalid URL")
)

// Options configures a Sender. Zero fields take the Default* values.
type Options struct {
	// Client sends the requests. The default client does not follow
	// redirects: following one would re-send a signed alert to a host the
	// user never configured, and 301/302 would turn the POST into a GET.
	// It refuses link-local and metadata addresses, and loopback and
	// private ones unless AllowPrivate is set, after DNS resolution (see
	// guard.go). A Client given here is used as it is.
	Client *http.Client
	// AllowPrivate lets the default client deliver to loopback and
	// private addresses.
	AllowPrivate bool
	// MaxAttempts is the total number of attempts per delivery, first
	// included.
	MaxAttempts int
	// BaseBackoff and MaxBackoff bound the full-jitter wait after a failed
	// attempt n: uniform in [0, min(MaxBackoff, BaseBackoff·2^(n-1))).
	// MaxBackoff also caps a receiver's Retry-After, so that one receiver
	// cannot park a worker for hours.
	BaseBackoff, MaxBackoff time.Duration
	// Logger receives one record per failed attempt and per final outcome.
	// Records carry the delivery ID and the URL's scheme and host only.
	Logger *slog.Logger
	// Workers bounds concurrent deliveries.
	Workers int
	// QueueSize bounds deliveries accepted but not yet started; Send blocks
	// while the queue is full.
	QueueSize int
	// AttemptTimeout bounds one HTTP attempt, including reading the
	// response status.
	AttemptTimeout time.Duration
	// OnResult, if set, is called once per delivery with its final
	// outcome, from a worker goroutine: it must be safe for concurrent use
	// and should not block.
	OnResult func(Result)
}

// Delivery is one notification to POST.
type Delivery struct {
	URL string
	// Secret, when non-empty, signs Body into the X-MMS-Signature header.
	Secret []byte
	// Body is sent verbatim as application/json.
	Body []byte
	// ID identifies the delivery in logs and results.
	ID string
	// Event, when non-empty, is sent as X-MMS-Event (e.g. "alert.open").
	Event string
}

// Outcome is how a delivery finished.
type Outcome int

const (
	// Delivered: the receiver answered 2xx.
	Delivered Outcome = iota + 1
	// GaveUp: a non-retryable response, or MaxAttempts retryable failures.
	GaveUp
	// Canceled: Close's context expired before the delivery finished.
	Canceled
)

func (o Outcome) String() string {
	switch o {
	case Delivered:
		return "delivered"
	case GaveUp:
		return "gave up"
	case Canceled:
		return "canceled"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Result reports the final outcome of one delivery.
type Result struct {
	ID       string
	Outcome  Outcome
	Attempts int // HTTP attempts made; 0 if canceled before the first
	// LastStatus is the status of the last response, 0 if none arrived.
	LastStatus int
	// Err describes the last failure; nil when Delivered. It never
	// contains the secret or the URL beyond scheme and host.
	Err error
}

// Stats is a snapshot of a Sender's counters.
type Stats struct {
	Queued    int64 // accepted, not yet started
	InFlight  int64 // being attempted or waiting to retry
	Delivered uint64
	GaveUp    uint64
	Canceled  uint64
	Attempts  uint64 // HTTP attempts across all deliveries
}

// Sender delivers webhooks from a bounded queue with a fixed pool of
// workers. It is safe for concurrent use.
type Sender struct {
	opts   Options
	client *http.Client
	log    *slog.Logger

	queue   chan job
	closing chan struct{} // closed first by Close, to release blocked Sends
	mu      sync.RWMutex  // Send holds it shared while enqueuing, Close exclusively to close queue
	closed  bool
	once    sync.Once
	workers sync.WaitGroup

	// ctx scopes every attempt and backoff; Close cancels it only when its
	// own context expires, so a normal Close lets deliveries finish.
	ctx    context.Context
	cancel context.CancelFunc

	// sleep waits between attempts; tests replace it to observe the
	// chosen delays without waiting for them.
	sleep func(ctx context.Context, d time.Duration) error

	queued, inFlight                      atomic.Int64
	delivered, gaveUp, canceled, attempts atomic.Uint64
}

type job struct {
	d Delivery
	u *url.URL
}

// New starts a Sender's workers. Call Close to stop them.
func New(opts Options) *Sender {
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	if opts.BaseBackoff <= 0 {
		opts.BaseBackoff = DefaultBaseBackoff
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	opts.MaxBackoff = max(opts.MaxBackoff, opts.BaseBackoff)
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.AttemptTimeout <= 0 {
		opts.AttemptTimeout = DefaultAttemptTimeout
	}
	s := &Sender{
		opts:    opts,
		client:  opts.Client,
		log:     opts.Logger,
		queue:   make(chan job, opts.QueueSize),
		closing: make(chan struct{}),
		sleep:   sleepCtx,
	}
	if s.client == nil {
		s.client = guardedClient(opts.AllowPrivate)
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.workers.Add(opts.Workers)
	for range opts.Workers {
		go s.worker()
	}
	return s
}

// Send validates d and queues it for delivery, blocking while the queue is
// full until ctx is done. It returns ErrClosed once Close has been called.
// Body and Secret are copied, so the caller may reuse them.
func (s *Sender) Send(ctx context.Context, d Delivery) error {
	u, err := url.Parse(d.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: delivery %q needs an absolute http(s) URL", ErrInvalidURL, d.ID)
	}
	d.Body = append([]byte(nil), d.Body...)
	d.Secret = append([]byte(nil), d.Secret...)

	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	s.queued.Add(1)
	select {
	case s.queue <- job{d: d, u: u}:
		return nil
	case <-s.closing:
		s.queued.Add(-1)
		return ErrClosed
	case <-ctx.Done():
		s.queued.Add(-1)
		return fmt.Errorf("webhook: enqueue %q: %w", d.ID, ctx.Err())
	}
}

// Close stops accepting deliveries and waits for queued and in-flight ones
// to finish. If ctx ends first, the remaining deliveries are canceled
// (reported as Canceled) and Close returns once the workers have stopped,
// with an error wrapping ctx.Err().
func (s *Sender) Close(ctx context.Context) error {
	s.once.Do(func() {
		close(s.closing)
		s.mu.Lock()
		s.closed = true
		close(s.queue)
		s.mu.Unlock()
	})
	done := make(chan struct{})
	go func() {
		s.workers.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
		s.cancel()
		<-done
		return fmt.Errorf("webhook: close: %w", ctx.Err())
	}
}

// Stats returns a snapshot of the counters.
func (s *Sender) Stats() Stats {
	return Stats{
		Queued:    s.queued.Load(),
		InFlight:  s.inFlight.Load(),
		Delivered: s.delivered.Load(),
		GaveUp:    s.gaveUp.Load(),
		Canceled:  s.canceled.Load(),
		Attempts:  s.attempts.Load(),
	}
}
