package faultproxy

import (
	"bufio"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

// echoServer echoes lines back until closed.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String()
}

func roundTrip(c net.Conn, msg string, within time.Duration) (string, error) {
	c.SetDeadline(time.Now().Add(within))
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSuffix(line, "\n"), err
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestProxyFaults(t *testing.T) {
	before := runtime.NumGoroutine()
	target := echoServer(t)
	p, err := New("127.0.0.1:0", target)
	if err != nil {
		t.Fatal(err)
	}

	c := dial(t, p.Addr())
	if got, err := roundTrip(c, "hello", 10*time.Second); err != nil || got != "hello" {
		t.Fatalf("through the proxy: %q, %v", got, err)
	}

	// Drop: the connection stays open but nothing comes back.
	p.Drop()
	if got, err := roundTrip(c, "lost", 300*time.Millisecond); err == nil {
		t.Fatalf("a dropped connection answered %q", got)
	} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("a dropped connection failed with %v, not a timeout", err)
	}

	// Heal: a new connection works (the old one lost bytes for good).
	p.Heal()
	c2 := dial(t, p.Addr())
	if got, err := roundTrip(c2, "again", 10*time.Second); err != nil || got != "again" {
		t.Fatalf("after heal: %q, %v", got, err)
	}

	// Delay: the round trip takes at least twice the delay.
	p.Delay(150 * time.Millisecond)
	start := time.Now()
	if got, err := roundTrip(c2, "slow", 10*time.Second); err != nil || got != "slow" {
		t.Fatalf("delayed: %q, %v", got, err)
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Fatalf("a delayed round trip took only %v", took)
	}
	p.Delay(0)

	// Sever: open connections are closed, new ones too.
	p.Sever()
	c2.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c2.Read(make([]byte, 1)); err == nil {
		t.Fatal("a severed connection is still open")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("a severed connection was not closed")
	}
	c3 := dial(t, p.Addr())
	if got, err := roundTrip(c3, "refused", 10*time.Second); err == nil {
		t.Fatalf("a connection made while severed answered %q", got)
	}
	p.Heal()
	c4 := dial(t, p.Addr())
	if got, err := roundTrip(c4, "healed", 10*time.Second); err != nil || got != "healed" {
		t.Fatalf("after heal: %q, %v", got, err)
	}

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	c4.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c4.Read(make([]byte, 1)); err == nil {
		t.Fatal("a connection outlived Close")
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		t.Fatal("the proxy still listens after Close")
	}
	p.Close() // idempotent

	// Every goroutine of the proxy ends (the echo server's are the test's).
	for _, c := range []net.Conn{c, c2, c3, c4} {
		c.Close()
	}
	deadline := time.Now().Add(20 * time.Second)
	for runtime.NumGoroutine() > before+1 { // the echo server's accept loop
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d before, %d after Close\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
