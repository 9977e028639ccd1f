package lab

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/nftproxy/nftproxy/e2e/netkit"
)

// Proto is how Dial talks to a test server.
type Proto string

const (
	TCP  Proto = "tcp"
	UDP  Proto = "udp"
	HTTP Proto = "http"
)

// Answer is what a test server replied: its pod name and the client
// address it saw (to check masquerade / source preservation).
type Answer struct {
	Pod    string
	Source netip.AddrPort
}

// DialTimeout bounds one Dial: long enough for a first ARP/ND exchange on
// a busy 2-core machine, short enough that a dropped packet fails fast.
const DialTimeout = 2 * time.Second

// Dial sends one request from namespace from (a node name, a pod name,
// External1/External2, or "cp") to addr and returns who answered.
// Errors wrap the cause: IsRefused (TCP RST / ICMP unreachable) and
// IsTimeout (dropped) tell outcomes apart.
func (l *Lab) Dial(from string, addr netip.AddrPort, proto Proto) (Answer, error) {
	return l.DialWithin(from, addr, proto, DialTimeout)
}

// DialWithin is Dial with an explicit timeout, for polling loops that
// must not wait the full DialTimeout on every dropped packet.
func (l *Lab) DialWithin(from string, addr netip.AddrPort, proto Proto, timeout time.Duration) (Answer, error) {
	ns, err := l.namespaceOf(from)
	if err != nil {
		return Answer{}, err
	}
	var line string
	switch proto {
	case TCP:
		line, err = ns.DialTCP(addr, timeout)
	case UDP:
		line, err = ns.DialUDP(addr, "who", timeout)
	case HTTP:
		line, err = httpLine(ns, addr, timeout)
	default:
		return Answer{}, fmt.Errorf("lab: unknown protocol %q", proto)
	}
	if err != nil {
		return Answer{}, fmt.Errorf("lab: %s %s -> %s: %w", proto, from, addr, err)
	}
	return parseAnswer(line)
}

func httpLine(ns *netkit.NS, addr netip.AddrPort, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	code, body, err := httpGetIn(ctx, ns, "http://"+addr.String()+"/", nil, "")
	if err != nil {
		return "", err
	}
	if code != http.StatusOK {
		return "", fmt.Errorf("HTTP %d", code)
	}
	return strings.TrimSpace(body), nil
}

// parseAnswer reads "<pod> <ip:port>" as written by e2e/testserver.
func parseAnswer(line string) (Answer, error) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return Answer{}, fmt.Errorf("lab: empty answer")
	}
	a := Answer{Pod: f[0]}
	if len(f) > 1 {
		src, err := netip.ParseAddrPort(f[1])
		if err != nil {
			return Answer{}, fmt.Errorf("lab: answer %q: %w", line, err)
		}
		a.Source = src
	}
	return a, nil
}

// IsRefused reports whether a Dial error means refused (RST / ICMP).
func IsRefused(err error) bool { return netkit.IsRefused(err) }

// IsTimeout reports whether a Dial error means no answer (dropped).
func IsTimeout(err error) bool { return netkit.IsTimeout(err) }

// NS returns the network namespace of a lab member (see Dial), e.g. for
// netkit calls the lab does not wrap.
func (l *Lab) NS(name string) (*netkit.NS, error) { return l.namespaceOf(name) }

func (l *Lab) namespaceOf(name string) (*netkit.NS, error) {
	if n := l.Node(name); n != nil {
		return n.NS, nil
	}
	switch name {
	case External1:
		return l.externals[0], nil
	case External2:
		return l.externals[1], nil
	case "cp":
		return l.cp, nil
	}
	if p, err := l.pod(name); err == nil {
		return p.NS, nil
	}
	return nil, fmt.Errorf("lab: no node, pod or client named %q", name)
}

// ExternalIP returns the underlay address of an external client.
func ExternalIP(name string, v6 bool) netip.Addr {
	i := 0
	if name == External2 {
		i = 1
	}
	a := underlayAddr(extHostBase + i)
	if v6 {
		return a.V6
	}
	return a.V4
}
