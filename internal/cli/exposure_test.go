package cli

import "testing"

func TestExposedListenerNeedsTLSAndAuth(t *testing.T) {
	cases := []struct {
		bind      string
		tls, auth bool
		ok        bool
	}{
		{"127.0.0.1", false, false, true},
		{"::1", false, false, true},
		{"localhost", false, false, true},
		{"0.0.0.0", false, false, false},
		{"0.0.0.0", true, false, false},
		{"0.0.0.0", false, true, false},
		{"0.0.0.0", true, true, true},
		{"10.1.2.3", true, true, true},
	}
	for _, c := range cases {
		f := serveFlags{bind: c.bind}
		f.security.tls, f.security.auth = c.tls, c.auth
		err := f.checkExposure()
		if (err == nil) != c.ok {
			t.Errorf("bind %s tls=%v auth=%v: err=%v, want ok=%v", c.bind, c.tls, c.auth, err, c.ok)
		}
	}
}
