package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// Webhook URLs come from API callers, and the control plane POSTs to them
// from inside the operator's network: without a guard, an alert
// configuration could make it call a cloud metadata service (and its
// credentials) or an internal admin endpoint. So:
//
//   - link-local and metadata addresses (169.254.0.0/16, fe80::/10,
//     100.100.100.200, fd00:ec2::254, 168.63.129.16, metadata.google.internal,
//     …) and addresses that are not unicast are always refused;
//   - loopback and private addresses (127.0.0.0/8, ::1, 10/8, 172.16/12,
//     192.168/16, 100.64/10, fc00::/7, localhost) only with an explicit
//     opt-in (tests, and self-hosters whose receiver is on their network).
//
// CheckURL applies this to the URL as configured (a name is checked by
// name only: what it resolves to may change); the sender's dialer applies
// it again to every address it actually connects to, after DNS resolution,
// so a name that resolves to a metadata address is refused at delivery.

// ErrForbiddenAddress is returned for a webhook target the policy refuses.
var ErrForbiddenAddress = errors.New("webhook: forbidden target address")

// metadataNames are the cloud metadata services' host names.
var metadataNames = []string{
	"metadata.google.internal", "metadata.goog", "metadata", "instance-data", "instance-data.ec2.internal",
	"metadata.azure.com", "metadata.packet.net", "metadata.platformequinix.com",
}

// alwaysForbidden are metadata endpoints outside the link-local ranges.
var alwaysForbidden = []netip.Prefix{
	netip.MustParsePrefix("169.254.0.0/16"),     // link-local, AWS/GCP/Azure/OpenStack metadata
	netip.MustParsePrefix("fe80::/10"),          // IPv6 link-local
	netip.MustParsePrefix("100.100.100.200/32"), // Alibaba Cloud metadata
	netip.MustParsePrefix("fd00:ec2::254/128"),  // AWS IMDS over IPv6
	netip.MustParsePrefix("168.63.129.16/32"),   // Azure wire server
	netip.MustParsePrefix("0.0.0.0/8"),          // "this network"
}

// privateRanges need the opt-in.
var privateRanges = []netip.Prefix{
	netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT
}

// CheckAddr applies the policy to one IP address.
func CheckAddr(ip netip.Addr, allowPrivate bool) error {
	ip = ip.Unmap()
	if ip.Is6() && netip.MustParsePrefix("64:ff9b::/96").Contains(ip) { // NAT64: judge the IPv4 inside
		b := ip.As16()
		ip = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	}
	for _, p := range alwaysForbidden {
		if p.Contains(ip) {
			return fmt.Errorf("%w: %s is a link-local or cloud metadata address", ErrForbiddenAddress, ip)
		}
	}
	if !ip.IsGlobalUnicast() && !ip.IsLoopback() || ip.IsMulticast() || ip.IsUnspecified() {
		return fmt.Errorf("%w: %s is not a unicast address", ErrForbiddenAddress, ip)
	}
	private := ip.IsLoopback() || ip.IsPrivate()
	for _, p := range privateRanges {
		private = private || p.Contains(ip)
	}
	if private && !allowPrivate {
		return fmt.Errorf("%w: %s is a loopback or private address (the control plane was not started to allow those)", ErrForbiddenAddress, ip)
	}
	return nil
}

// CheckHost applies the policy to a URL's host: an IP literal, or a name
// checked by name (metadata names refused, localhost needing the opt-in).
func CheckHost(host string, allowPrivate bool) error {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	if ip, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
		return CheckAddr(ip, allowPrivate)
	}
	for _, m := range metadataNames {
		if h == m {
			return fmt.Errorf("%w: %s is a cloud metadata service", ErrForbiddenAddress, h)
		}
	}
	if (h == "localhost" || strings.HasSuffix(h, ".localhost")) && !allowPrivate {
		return fmt.Errorf("%w: %s is a loopback name (the control plane was not started to allow those)", ErrForbiddenAddress, h)
	}
	if h == "" {
		return fmt.Errorf("%w: no host", ErrForbiddenAddress)
	}
	return nil
}

// CheckURL applies the policy to a webhook URL as configured: absolute
// http or https, and a host CheckHost accepts.
func CheckURL(raw string, allowPrivate bool) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return ErrInvalidURL
	}
	return CheckHost(u.Hostname(), allowPrivate)
}

// guardedClient is the default client: no redirects, no proxy from the
// environment (the guard must see the real peer), and a dialer that
// refuses every address the policy forbids, after resolution.
func guardedClient(allowPrivate bool) *http.Client {
	d := &net.Dialer{
		Timeout: 30 * time.Second,
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: %s", ErrForbiddenAddress, address)
			}
			return CheckAddr(ap.Addr(), allowPrivate)
		},
	}
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
		ForceAttemptHTTP2:   true,
		MaxIdleConns:        16,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
