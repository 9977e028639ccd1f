package model

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ParseIP parses an IP address from an API object. Besides canonical forms
// it accepts IPv4 with leading zeros ("010.001.002.003", read as decimal),
// which old API servers let through and which upstream still honours, so
// that such legacy objects keep working. IPv4-mapped IPv6 addresses are
// treated as IPv4, as upstream does. Zoned addresses are refused: a zone is
// meaningless in a Service or an endpoint.
func ParseIP(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		legacy, ok := parseLegacyIPv4(s)
		if !ok {
			return netip.Addr{}, fmt.Errorf("invalid IP address %q", s)
		}
		a = legacy
	}
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("invalid IP address %q: zones are not allowed", s)
	}
	return a.Unmap(), nil
}

// ParseCIDR parses a CIDR such as a loadBalancerSourceRange. Surrounding
// spaces are trimmed (upstream does the same) and host bits are cleared.
func ParseCIDR(s string) (netip.Prefix, error) {
	t := strings.TrimSpace(s)
	p, err := netip.ParsePrefix(t)
	if err != nil {
		addr, bits, found := strings.Cut(t, "/")
		legacy, ok := parseLegacyIPv4(addr)
		n, nerr := strconv.Atoi(bits)
		if !found || !ok || nerr != nil || n < 0 || n > 32 {
			return netip.Prefix{}, fmt.Errorf("invalid CIDR %q", s)
		}
		p = netip.PrefixFrom(legacy, n)
	}
	if p.Addr().Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("invalid CIDR %q: zones are not allowed", s)
	}
	if p.Addr().Is4In6() {
		// ::ffff:a.b.c.d/n with n >= 96 is an IPv4 range in disguise.
		if p.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("invalid CIDR %q: IPv4-mapped prefix shorter than /96", s)
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// parseLegacyIPv4 reads dotted-quad IPv4 whose parts may have leading
// zeros, always as decimal (the pre-Go-1.17 behaviour Kubernetes kept).
func parseLegacyIPv4(s string) (netip.Addr, bool) {
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return netip.Addr{}, false
	}
	var b [4]byte
	for i, p := range parts {
		if p == "" || len(p) > 3 || strings.TrimLeft(p, "0123456789") != "" {
			return netip.Addr{}, false
		}
		n, err := strconv.Atoi(p)
		if err != nil || n > 255 {
			return netip.Addr{}, false
		}
		b[i] = byte(n)
	}
	return netip.AddrFrom4(b), true
}

var broadcast4 = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// checkEndpointIP refuses addresses that cannot be a backend: traffic
// DNATed to them would go nowhere or somewhere it must not (the API server's
// own validation refuses the same set for new objects).
func checkEndpointIP(a netip.Addr) error {
	switch {
	case a.IsUnspecified():
		return errors.New("unspecified address")
	case a.IsLoopback():
		return errors.New("loopback address")
	case a.IsMulticast():
		return errors.New("multicast address")
	case a.IsLinkLocalUnicast():
		return errors.New("link-local address")
	case a == broadcast4:
		return errors.New("broadcast address")
	}
	return nil
}
