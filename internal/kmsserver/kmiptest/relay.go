//go:build unix

package kmiptest

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Relay is a TCP relay at a fixed address in front of a server: a KMIP
// server that goes away and comes back at the same address (a restarted
// appliance), which PyKMIP cannot be made to do — it only listens on the
// port it is started with, and takes seconds to start. TLS runs end to end
// through it, so clients verify the real server's certificate (issued for
// 127.0.0.1). A Relay starts down: its address refuses connections.
type Relay struct {
	Addr   string
	target string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
}

// NewRelay reserves a free address for a relay to target (a Server's
// Addr), down until Up. Cleanup takes it down.
func NewRelay(t testing.TB, target string) *Relay {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	r := &Relay{Addr: (&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}).String(), target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(r.Down)
	return r
}

// Up starts accepting connections at Addr and relaying them to the target.
func (r *Relay) Up(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ln != nil {
		return
	}
	ln, err := net.Listen("tcp", r.Addr)
	if err != nil {
		t.Fatalf("relay listen %s: %v", r.Addr, err)
	}
	r.ln = ln
	go r.accept(ln)
}

// Down closes the listener and every relayed connection: the address
// refuses connections again and clients see their connections drop.
func (r *Relay) Down() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ln != nil {
		_ = r.ln.Close()
		r.ln = nil
	}
	for c := range r.conns {
		_ = c.Close()
	}
	clear(r.conns)
}

func (r *Relay) track(cs ...net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ln == nil {
		return false
	}
	for _, c := range cs {
		r.conns[c] = true
	}
	return true
}

func (r *Relay) accept(ln net.Listener) {
	for {
		in, err := ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", r.target)
		if err != nil {
			_ = in.Close()
			continue
		}
		if !r.track(in, out) {
			// Taken down between Accept and now.
			_ = in.Close()
			_ = out.Close()
			return
		}
		go pipe(in, out)
		go pipe(out, in)
	}
}

// pipe copies one direction; when it ends, both sides are closed so the
// other direction ends too.
func pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
}
