package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nftproxy/nftproxy/e2e/netkit"
)

// The data-plane client: TCP connections made with blocking syscalls on a
// thread locked in a pod's namespace (netkit.NS.Do), so that a connect's
// duration is the kernel's (SYN through the proxy's rules, SYN-ACK back)
// without the Go netpoller's wake-ups, and a loop of thousands costs one
// setns. Every connection is closed with a RST (SO_LINGER 0): no
// TIME_WAIT, and its conntrack entry expires in 10 s instead of 120 s (the
// conntrack limit is host-wide).

// connectTimeout bounds one connect: a dropped SYN is retransmitted after
// 1 s, so anything near that is a loss, not a latency.
const connectTimeout = 900 * time.Millisecond

// tcpConnect opens one connection to dst, returns how long connect took
// and, when read is set, the first line the server wrote (the lab's test
// server writes "<pod> <client ip:port>").
func tcpConnect(dst netip.AddrPort, read bool) (time.Duration, string, error) {
	fam := unix.AF_INET
	if dst.Addr().Is6() {
		fam = unix.AF_INET6
	}
	fd, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, "", fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(connectTimeout.Nanoseconds())
	// A blocking connect waits at most SO_SNDTIMEO; a read SO_RCVTIMEO.
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	var sa unix.Sockaddr
	if fam == unix.AF_INET {
		sa = &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}
	} else {
		sa = &unix.SockaddrInet6{Port: int(dst.Port()), Addr: dst.Addr().As16()}
	}
	t0 := time.Now()
	if err := unix.Connect(fd, sa); err != nil {
		return 0, "", fmt.Errorf("connect %s: %w", dst, err)
	}
	took := time.Since(t0)
	if !read {
		return took, "", nil
	}
	buf := make([]byte, 128)
	n, err := unix.Read(fd, buf)
	if err != nil {
		return took, "", fmt.Errorf("read from %s: %w", dst, err)
	}
	line, _, _ := bytes.Cut(buf[:max(n, 0)], []byte("\n"))
	return took, string(line), nil
}

// connectSamples makes count connections to dst one after the other from
// ns and returns each connect time in ms; failed connects are counted,
// not timed.
func connectSamples(ns *netkit.NS, dst netip.AddrPort, count int) (ms []float64, failed int, err error) {
	err = ns.Do(func() error {
		for i := 0; i < count; i++ {
			d, _, err := tcpConnect(dst, false)
			if err != nil {
				failed++
				continue
			}
			ms = append(ms, float64(d.Nanoseconds())/1e6)
		}
		return nil
	})
	return ms, failed, err
}

// connectRate opens connections to dst from ns, one after the other, for
// about span and returns how many succeeded per second.
func connectRate(ns *netkit.NS, dst netip.AddrPort, span time.Duration) (perSec float64, failed int, err error) {
	err = ns.Do(func() error {
		ok := 0
		t0 := time.Now()
		for time.Since(t0) < span {
			if _, _, err := tcpConnect(dst, false); err != nil {
				failed++
				continue
			}
			ok++
		}
		perSec = float64(ok) / time.Since(t0).Seconds()
		return nil
	})
	return perSec, failed, err
}

// errNoAnswer: no connection reached the awaited pod before the deadline.
var errNoAnswer = errors.New("no connection reached the new endpoint")

// firstAnswerFrom connects to dst from ns every millisecond until a
// connection is answered by pod, and returns when that connection was
// established. stop ends it early (the caller gave up).
func firstAnswerFrom(ns *netkit.NS, dst netip.AddrPort, pod string, deadline time.Time, stop <-chan struct{}) (time.Time, error) {
	var at time.Time
	err := ns.Do(func() error {
		prefix := pod + " "
		for time.Now().Before(deadline) {
			select {
			case <-stop:
				return errNoAnswer
			default:
			}
			t0 := time.Now()
			d, line, err := tcpConnect(dst, true)
			if err == nil && len(line) >= len(prefix) && line[:len(prefix)] == prefix {
				at = t0.Add(d)
				return nil
			}
			time.Sleep(time.Millisecond)
		}
		return errNoAnswer
	})
	return at, err
}
