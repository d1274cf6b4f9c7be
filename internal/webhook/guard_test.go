package webhook

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"testing"
)

func TestCheckURL(t *testing.T) {
	tests := []struct {
		url          string
		allowPrivate bool
		ok           bool
	}{
		{"https://hooks.example.com/x", false, true},
		{"https://203.0.113.7/x", false, true},
		{"http://169.254.169.254/latest/meta-data/", true, false},
		{"http://169.254.170.2/v2/credentials", true, false},
		{"http://[fe80::1]/", true, false},
		{"http://[::ffff:169.254.169.254]/", true, false},
		{"http://[64:ff9b::a9fe:a9fe]/", true, false},
		{"http://metadata.google.internal/computeMetadata/v1/", true, false},
		{"http://METADATA.GOOGLE.INTERNAL./", true, false},
		{"http://100.100.100.200/latest/meta-data", true, false},
		{"http://[fd00:ec2::254]/", true, false},
		{"http://168.63.129.16/", true, false},
		{"http://0.0.0.0:8080/", true, false},
		{"http://224.0.0.1/", true, false},
		{"http://127.0.0.1:9000/h", false, false},
		{"http://127.0.0.1:9000/h", true, true},
		{"http://localhost/h", false, false},
		{"http://localhost/h", true, true},
		{"http://[::1]/h", false, false},
		{"http://10.1.2.3/h", false, false},
		{"http://10.1.2.3/h", true, true},
		{"http://192.168.1.1/h", false, false},
		{"http://172.16.0.1/h", false, false},
		{"http://100.64.0.1/h", false, false},
		{"http://[fd12::1]/h", false, false},
		{"ftp://hooks.example.com/", false, false},
	}
	for _, tt := range tests {
		err := CheckURL(tt.url, tt.allowPrivate)
		if (err == nil) != tt.ok {
			t.Errorf("CheckURL(%q, allowPrivate=%v) = %v, want ok=%v", tt.url, tt.allowPrivate, err, tt.ok)
		}
	}
}

// TestDialGuard: the default client refuses, after resolution, to connect
// to what the policy forbids — here a name that resolves to loopback
// ("localhost") without the opt-in — and connects with it.
func TestDialGuard(t *testing.T) {
	rc := newReceiver(t, statuses(200))
	_, port, _ := net.SplitHostPort(rc.srv.Listener.Addr().String())
	for _, allow := range []bool{false, true} {
		c := guardedClient(allow)
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, "http://localhost:"+port+"/h", nil)
		res, err := c.Do(req)
		if allow {
			if err != nil {
				t.Fatalf("with the opt-in: %v", err)
			}
			res.Body.Close()
			continue
		}
		if err == nil {
			res.Body.Close()
			t.Fatal("delivered to a loopback address without the opt-in")
		}
		if !errors.Is(err, ErrForbiddenAddress) {
			t.Fatalf("error %v, want ErrForbiddenAddress", err)
		}
	}
	if err := CheckAddr(netip.MustParseAddr("169.254.169.254"), true); !errors.Is(err, ErrForbiddenAddress) {
		t.Fatalf("metadata address with the opt-in: %v", err)
	}
	if got := len(rc.requests()); got != 1 {
		t.Fatalf("receiver saw %d requests, want 1 (only with the opt-in)", got)
	}
}
