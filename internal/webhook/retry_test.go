package webhook

import (
	"net/http"
	"testing"
	"time"
)

func TestJitterCeiling(t *testing.T) {
	base, max := 100*time.Millisecond, 2*time.Second
	want := []time.Duration{100, 200, 400, 800, 1600, 2000, 2000}
	for i, w := range want {
		if got := retryPolicy(base, max).Ceiling(i + 1); got != w*time.Millisecond {
			t.Errorf("attempt %d: ceiling %v, want %v", i+1, got, w*time.Millisecond)
		}
	}
	if got := retryPolicy(time.Hour, 2*time.Hour).Ceiling(1000); got != 2*time.Hour {
		t.Errorf("no overflow at large attempts: %v", got)
	}
	for range 1000 {
		if d := retryPolicy(base, max).Delay(3); d < 0 || d > 400*time.Millisecond {
			t.Fatalf("wait = %v, outside [0, 400ms]", d)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{" 120 ", 2 * time.Minute, true},
		{"-1", 0, false},
		{"1.5", 0, false},
		{"soon", 0, false},
		{"99999999999999999", 365 * 24 * time.Hour, true},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
	}
	for _, tt := range tests {
		got, ok := parseRetryAfter(tt.in, now)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("parseRetryAfter(%q) = %v %v, want %v %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

// TestSignatureKnownAnswer pins the encoding against a value computed
// independently (RFC 2202 test case 2 for HMAC-SHA1, base64-encoded).
func TestSignatureKnownAnswer(t *testing.T) {
	got := Signature([]byte("Jefe"), []byte("what do ya want for nothing?"))
	if want := "7/zfauXrL6LSdBbV8YTfnCWafHk="; got != want {
		t.Fatalf("Signature = %q, want %q", got, want)
	}
}
