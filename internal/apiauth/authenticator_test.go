package apiauth

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestDigestTransport drives the server through the same digest transport
// the official Atlas Go client uses.
func TestDigestTransport(t *testing.T) {
	tests := []struct {
		name       string
		pub, priv  string
		wantStatus int
		wantErr    error // exact value the server's last Authenticate returned
	}{
		{"right key", pubA, privA, http.StatusOK, nil},
		{"second key", pubB, privB, http.StatusOK, nil},
		{"wrong private key", pubA, privB, http.StatusUnauthorized, ErrBadCredentials},
		{"unknown public key", "nobody", privA, http.StatusUnauthorized, ErrBadCredentials},
		{"empty private key", pubA, "", http.StatusUnauthorized, ErrBadCredentials},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			for _, method := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
				resp, body := h.viaDigest(t, tt.pub, tt.priv, method, "/api/atlas/v1.0/groups?pageNum=2&itemsPerPage=5")
				if resp.StatusCode != tt.wantStatus {
					t.Fatalf("%s: status %d, want %d", method, resp.StatusCode, tt.wantStatus)
				}
				if err := h.lastErr(); err != tt.wantErr {
					t.Fatalf("%s: Authenticate error %v, want %v", method, err, tt.wantErr)
				}
				if tt.wantErr == nil && body != tt.pub {
					t.Fatalf("%s: authenticated as %q, want %q", method, body, tt.pub)
				}
			}
			for _, err := range h.allErrs() {
				if err != nil && (strings.Contains(err.Error(), privA) || strings.Contains(err.Error(), privB)) {
					t.Fatalf("error leaks a private key: %v", err)
				}
			}
		})
	}
}

// TestUnknownAndWrongKeyIndistinguishable checks that a miss on the public
// key takes the same path as a wrong private key: the lookup runs, and the
// caller gets the identical error value.
func TestUnknownAndWrongKeyIndistinguishable(t *testing.T) {
	h := newHarness(t)
	h.viaDigest(t, pubA, "wrong", http.MethodGet, "/x")
	errWrong := h.lastErr()
	h.viaDigest(t, "unknown", "wrong", http.MethodGet, "/x")
	errUnknown := h.lastErr()
	if errWrong != ErrBadCredentials || errUnknown != ErrBadCredentials {
		t.Fatalf("wrong key: %v, unknown key: %v; want both ErrBadCredentials", errWrong, errUnknown)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if got := strings.Join(h.lookups, ","); got != pubA+",unknown" {
		t.Fatalf("lookups = %q, want one per authenticated attempt", got)
	}
}

// TestHeaderManipulation sends hand-modified copies of a header the digest
// transport produced for GET /api/a.
func TestHeaderManipulation(t *testing.T) {
	tests := []struct {
		name    string
		path    string // where the request is sent
		mutate  func(t *testing.T, h string) string
		wantErr error // matched with errors.Is
	}{
		{"unmodified", "/api/a", func(_ *testing.T, h string) string { return h }, nil},
		{"no header", "/api/a", func(*testing.T, string) string { return "" }, ErrNoCredentials},
		{"basic scheme", "/api/a", func(*testing.T, string) string { return "Basic cHViOnByaXY=" }, ErrNoCredentials},
		{"tampered response", "/api/a", func(t *testing.T, h string) string {
			r := headerParam(t, h, "response")
			return strings.Replace(h, r, flipHex(r), 1)
		}, ErrBadCredentials},
		{"tampered username", "/api/a", func(t *testing.T, h string) string {
			return strings.Replace(h, `username="`+pubA+`"`, `username="`+pubB+`"`, 1)
		}, ErrBadCredentials},
		{"tampered nonce", "/api/a", func(t *testing.T, h string) string {
			n := headerParam(t, h, "nonce")
			return strings.Replace(h, n, flipB64(n), 1)
		}, ErrBadCredentials},
		{"tampered nc", "/api/a", func(*testing.T, string) string { return "" }, nil}, // replaced below
		{"wrong realm", "/api/a", func(t *testing.T, h string) string {
			return strings.Replace(h, `realm="`+Realm+`"`, `realm="other"`, 1)
		}, ErrBadCredentials},
		{"sha-256 algorithm", "/api/a", func(t *testing.T, h string) string {
			return strings.Replace(h, `algorithm="MD5"`, `algorithm="SHA-256"`, 1)
		}, ErrBadCredentials},
		{"qop removed", "/api/a", func(t *testing.T, h string) string {
			return strings.Replace(h, "qop=auth, ", "", 1)
		}, ErrMalformedCredentials},
		{"truncated", "/api/a", func(t *testing.T, h string) string { return h[:len(h)-3] }, ErrMalformedCredentials},
		{"duplicate username", "/api/a", func(t *testing.T, h string) string {
			return h + `, username="` + pubB + `"`
		}, ErrMalformedCredentials},
		{"wrong uri", "/api/b", func(_ *testing.T, h string) string { return h }, ErrURIMismatch},
		{"uri rewritten to match", "/api/b", func(t *testing.T, h string) string {
			return strings.Replace(h, `uri="/api/a"`, `uri="/api/b"`, 1)
		}, ErrBadCredentials},
	}
	// nc is covered by the response digest, so bumping it must fail.
	tests[6].mutate = func(t *testing.T, h string) string {
		return strings.Replace(h, "nc=00000001", "nc=00000002", 1)
	}
	tests[6].wantErr = ErrBadCredentials

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			authz := tt.mutate(t, h.mintHeader(t, pubA, privA, http.MethodGet, "/api/a"))
			resp := h.send(t, http.MethodGet, tt.path, authz)
			err := h.lastErr()
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Authenticate error %v, want %v", err, tt.wantErr)
			}
			wantStatus := http.StatusOK
			if tt.wantErr != nil {
				wantStatus = http.StatusUnauthorized
				if ch := resp.Header.Get("WWW-Authenticate"); !strings.Contains(ch, "stale=false") {
					t.Fatalf("challenge %q, want stale=false", ch)
				}
			}
			if resp.StatusCode != wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, wantStatus)
			}
		})
	}
}

func flipHex(s string) string {
	b := []byte(s)
	if b[0] == '0' {
		b[0] = '1'
	} else {
		b[0] = '0'
	}
	return string(b)
}

func flipB64(s string) string {
	b := []byte(s)
	i := len(b) / 2
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

func TestChallengeFormat(t *testing.T) {
	h := newHarness(t)
	resp := h.send(t, http.MethodGet, "/", "")
	if resp.StatusCode != http.StatusUnauthorized || h.lastErr() != ErrNoCredentials {
		t.Fatalf("status %d err %v", resp.StatusCode, h.lastErr())
	}
	ch := resp.Header.Get("WWW-Authenticate")
	scheme, p, err := parseAuthorization(ch)
	if err != nil || scheme != "Digest" {
		t.Fatalf("challenge %q: scheme %q err %v", ch, scheme, err)
	}
	want := map[string]string{"realm": "MMS Public API", "algorithm": "MD5", "qop": "auth", "stale": "false"}
	for k, v := range want {
		if p[k] != v {
			t.Errorf("challenge %s=%q, want %q", k, p[k], v)
		}
	}
	if len(p) != len(want)+1 || p["nonce"] == "" {
		t.Errorf("challenge params %v, want exactly %v plus nonce", p, want)
	}
	if strings.Contains(p["nonce"], ",") || strings.Contains(p["nonce"], `"`) {
		t.Errorf("nonce %q would break the client's challenge parser", p["nonce"])
	}
}

func TestReplay(t *testing.T) {
	h := newHarness(t)
	const path = "/api/atlas/v1.0/orgs"
	authz := h.mintHeader(t, pubA, privA, http.MethodGet, path)
	nonce := headerParam(t, authz, "nonce")
	forge := func(nc string) string {
		return clientDigest(pubA, Realm, privA, http.MethodGet, path, nonce, nc, "0a4f113b")
	}

	steps := []struct {
		name    string
		authz   string
		wantErr error
	}{
		{"first use", authz, nil},
		{"exact replay", authz, ErrReplayedNonce},
		{"next nc on same nonce", forge("00000002"), nil},
		{"higher nc skipping values", forge("0000000a"), nil},
		{"lower nc", forge("00000003"), ErrReplayedNonce},
		{"repeated nc", forge("0000000a"), ErrReplayedNonce},
		{"zero nc", forge("00000000"), ErrMalformedCredentials},
		{"higher again", forge("0000000b"), nil},
	}
	for _, s := range steps {
		resp := h.send(t, http.MethodGet, path, s.authz)
		err := h.lastErr()
		if !errors.Is(err, s.wantErr) || (s.wantErr == nil) != (err == nil) {
			t.Fatalf("%s: error %v, want %v", s.name, err, s.wantErr)
		}
		if (err == nil) != (resp.StatusCode == http.StatusOK) {
			t.Fatalf("%s: status %d with error %v", s.name, resp.StatusCode, err)
		}
	}
}

func TestExpiredNonce(t *testing.T) {
	h := newHarness(t)
	const path = "/api/atlas/v1.0/groups"
	good := h.mintHeader(t, pubA, privA, http.MethodGet, path)
	bad := h.mintHeader(t, pubA, "not-the-key", http.MethodGet, path)
	h.clock.Advance(nonceLifetime + time.Second)

	// Wrong key with an old nonce is not told the nonce is stale: stale=true
	// is reserved for clients that proved they hold the key.
	resp := h.send(t, http.MethodGet, path, bad)
	if err := h.lastErr(); err != ErrBadCredentials || strings.Contains(resp.Header.Get("WWW-Authenticate"), "stale=true") {
		t.Fatalf("expired nonce, wrong key: err %v, challenge %q", err, resp.Header.Get("WWW-Authenticate"))
	}

	resp = h.send(t, http.MethodGet, path, good)
	if err := h.lastErr(); err != ErrStaleNonce || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("expired nonce: status %d err %v, want 401 ErrStaleNonce", resp.StatusCode, err)
	}
	if ch := resp.Header.Get("WWW-Authenticate"); !strings.Contains(ch, "stale=true") {
		t.Fatalf("challenge %q, want stale=true", ch)
	}

	// The client then authenticates with the fresh nonce.
	if resp, _ := h.viaDigest(t, pubA, privA, http.MethodGet, path); resp.StatusCode != http.StatusOK {
		t.Fatalf("after stale challenge: status %d, err %v", resp.StatusCode, h.lastErr())
	}
}

func TestConcurrentClients(t *testing.T) {
	h := newHarness(t)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			pub, priv := pubA, privA
			if i%2 == 1 {
				pub, priv = pubB, privB
			}
			for range 5 {
				if resp, body := h.viaDigest(t, pub, priv, http.MethodGet, "/c"); resp.StatusCode != http.StatusOK || body != pub {
					t.Errorf("status %d body %q", resp.StatusCode, body)
				}
			}
		})
	}
	wg.Wait()
}

// TestReplayGuardBounded fills a tiny guard past capacity: memory stays
// bounded, and an evicted nonce is refused as stale instead of becoming
// replayable.
func TestReplayGuardBounded(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	g := newReplayGuard(2, time.Minute)
	id := func(b byte) nonceID { return nonceID{b} }
	at := func(s int) time.Time { return base.Add(time.Duration(s) * time.Second) }

	for i, step := range []struct {
		id      byte
		issued  int
		now     int
		nc      uint32
		wantErr error
	}{
		{1, 0, 1, 1, nil},
		{2, 1, 2, 1, nil},
		{3, 2, 3, 1, nil},                // evicts 1, floor = issue time of 1
		{1, 0, 4, 2, ErrStaleNonce},      // history forgotten: refused, not replayable
		{2, 1, 5, 1, ErrReplayedNonce},   // still tracked
		{4, 70, 70, 1, nil},              // 2 and 3 expired: pruned, no eviction needed
		{5, 71, 71, 1, nil},              //
		{4, 70, 72, 1, ErrReplayedNonce}, // 4 survived
	} {
		if err := g.observe(id(step.id), at(step.issued), at(step.now), step.nc); err != step.wantErr {
			t.Fatalf("step %d: err %v, want %v", i, err, step.wantErr)
		}
		if len(g.seen) > 2 || len(g.order)-g.head != len(g.seen) {
			t.Fatalf("step %d: %d entries, %d queued", i, len(g.seen), len(g.order)-g.head)
		}
	}
}

func TestNonceForgery(t *testing.T) {
	m, other := newNonceMinter(), newNonceMinter()
	now := time.Unix(1_700_000_000, 42)
	n := m.mint(now)
	if _, issued, err := m.verify(n); err != nil || !issued.Equal(now) {
		t.Fatalf("verify own nonce: %v %v", issued, err)
	}
	for _, bad := range []string{"", "x", n[:len(n)-1], n + "A", flipB64(n), other.mint(now)} {
		if _, _, err := m.verify(bad); err == nil {
			t.Errorf("verify(%q) accepted", bad)
		}
	}
}
