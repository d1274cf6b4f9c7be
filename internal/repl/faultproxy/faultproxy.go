// Package faultproxy is a TCP proxy that injects network faults, for tests
// of replication under partitions: it can sever connections, black-hole
// them, delay them and heal again. It is test tooling, not for production
// traffic.
package faultproxy

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

type mode int

const (
	normal mode = iota
	severed
	dropped
)

// Proxy forwards TCP connections from its listener to a target.
type Proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	mode  mode
	delay time.Duration
	pairs map[*pair]struct{}
	done  chan struct{}

	closeOnce sync.Once
	wg        sync.WaitGroup
}

// New listens on listen (host:port, "127.0.0.1:0" for any port) and
// forwards every connection to target.
func New(listen, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: %w", err)
	}
	p := &Proxy{ln: ln, target: target, pairs: make(map[*pair]struct{}), done: make(chan struct{})}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr is the address to connect to instead of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Sever closes every current connection and, until Heal, closes new ones
// as soon as they are accepted: a partition peers notice at once.
func (p *Proxy) Sever() {
	p.mu.Lock()
	p.mode = severed
	pairs := p.snapshot()
	p.mu.Unlock()
	for _, pr := range pairs {
		pr.close()
	}
}

// Drop keeps connections open (and accepts new ones) but discards every
// byte in both directions until Heal: a black hole peers notice only by
// timing out.
func (p *Proxy) Drop() {
	p.mu.Lock()
	p.mode = dropped
	p.mu.Unlock()
}

// Delay holds every byte for d before forwarding it (0 for none). It
// applies from now on, alongside Drop or Sever, and survives Heal.
func (p *Proxy) Delay(d time.Duration) {
	p.mu.Lock()
	p.delay = max(d, 0)
	p.mu.Unlock()
}

// Heal ends Sever or Drop and any Delay: new connections are forwarded
// again and bytes on open ones flow. (Bytes dropped meanwhile stay lost.)
func (p *Proxy) Heal() {
	p.mu.Lock()
	p.mode = normal
	p.delay = 0
	p.mu.Unlock()
}

// Close stops the proxy, closes every connection and waits for its
// goroutines to end.
func (p *Proxy) Close() error {
	var err error
	p.closeOnce.Do(func() {
		p.mu.Lock()
		close(p.done)
		pairs := p.snapshot()
		p.mu.Unlock()
		err = p.ln.Close()
		for _, pr := range pairs {
			pr.close()
		}
		p.wg.Wait()
	})
	return err
}

func (p *Proxy) snapshot() []*pair {
	out := make([]*pair, 0, len(p.pairs))
	for pr := range p.pairs {
		out = append(out, pr)
	}
	return out
}

func (p *Proxy) state() (mode, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode, p.delay
}

func (p *Proxy) closed() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if p.closed() || errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-time.After(10 * time.Millisecond):
				continue
			case <-p.done:
				return
			}
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// serve connects c to the target and forwards between them.
func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	pr := &pair{client: client, done: make(chan struct{})}
	p.mu.Lock()
	if p.closed() || p.mode == severed {
		p.mu.Unlock()
		client.Close()
		return
	}
	p.pairs[pr] = struct{}{}
	p.mu.Unlock()
	defer func() {
		pr.close()
		p.mu.Lock()
		delete(p.pairs, pr)
		p.mu.Unlock()
	}()

	d := net.Dialer{Timeout: 10 * time.Second}
	server, err := d.Dial("tcp", p.target)
	if err != nil {
		return
	}
	if !pr.setServer(server) {
		server.Close()
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(pr, client, server) }()
	go func() { defer wg.Done(); p.pipe(pr, server, client) }()
	wg.Wait()
}

// pair is one proxied connection: the client's side and the target's.
type pair struct {
	mu     sync.Mutex
	client net.Conn
	server net.Conn
	done   chan struct{}
	once   sync.Once
}

func (pr *pair) setServer(c net.Conn) bool {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	select {
	case <-pr.done:
		return false
	default:
	}
	pr.server = c
	return true
}

func (pr *pair) close() {
	pr.once.Do(func() {
		pr.mu.Lock()
		close(pr.done)
		pr.client.Close()
		if pr.server != nil {
			pr.server.Close()
		}
		pr.mu.Unlock()
	})
}

type chunk struct {
	b  []byte
	at time.Time
}

// pipe forwards src to dst: a reader stamps each chunk with its arrival
// time and a writer sends it on once the delay has passed, so a delay adds
// latency without throttling. Either side failing closes the pair.
func (p *Proxy) pipe(pr *pair, src, dst net.Conn) {
	queue := make(chan chunk, 64)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case c := <-queue:
				_, delay := p.state()
				if wait := time.Until(c.at.Add(delay)); wait > 0 {
					t := time.NewTimer(wait)
					select {
					case <-t.C:
					case <-pr.done:
						t.Stop()
						return
					}
				}
				// Re-read: a Drop or Sever during the wait applies.
				if m, _ := p.state(); m != normal {
					continue
				}
				if _, err := dst.Write(c.b); err != nil {
					pr.close()
					return
				}
			case <-pr.done:
				return
			}
		}
	}()
	defer wg.Wait()
	for {
		buf := make([]byte, 32<<10)
		n, err := src.Read(buf)
		if n > 0 {
			if m, _ := p.state(); m == normal {
				select {
				case queue <- chunk{b: buf[:n], at: time.Now()}:
				case <-pr.done:
					return
				}
			}
		}
		if err != nil {
			pr.close()
			return
		}
	}
}
