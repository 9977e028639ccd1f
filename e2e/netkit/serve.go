package netkit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ServeTCP listens on addr inside the namespace. Every accepted
// connection gets reply(remote)+"\n" and is then closed, so a client sees
// which backend answered and which source address the backend saw (useful
// to check SNAT/masquerade). The listening socket is created from a
// thread inside the namespace and stays there; accepting and answering
// can then happen on any thread. Close stops the server and waits for it.
//
// The socket family follows addr: an IPv6 listener is v6-only, so the same
// port can be served on 0.0.0.0 and :: separately.
func (n *NS) ServeTCP(addr netip.AddrPort, reply func(remote netip.AddrPort) string) (io.Closer, error) {
	var ln net.Listener
	err := n.Do(func() error {
		var err error
		ln, err = net.Listen(family("tcp", addr.Addr()), addr.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netkit: listen tcp %s in %s: %w", addr, n.Name, err)
	}
	s := &server{closeFn: ln.Close}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return // listener closed
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				// Never let a stuck client block Close for long.
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				remote := unmapPort(c.RemoteAddr().(*net.TCPAddr).AddrPort())
				_, _ = io.WriteString(c, reply(remote)+"\n")
			}()
		}
	}()
	return s, nil
}

// ServeUDP listens on addr inside the namespace and answers every
// datagram with reply(remote) (no newline) sent back to its sender.
func (n *NS) ServeUDP(addr netip.AddrPort, reply func(remote netip.AddrPort) string) (io.Closer, error) {
	var pc net.PacketConn
	err := n.Do(func() error {
		var err error
		pc, err = net.ListenPacket(family("udp", addr.Addr()), addr.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netkit: listen udp %s in %s: %w", addr, n.Name, err)
	}
	uc := pc.(*net.UDPConn)
	s := &server{closeFn: uc.Close}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		buf := make([]byte, 64*1024)
		for {
			_, remote, err := uc.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				// E.g. ECONNREFUSED left by an ICMP error for an
				// earlier reply: not fatal for a server.
				continue
			}
			_, _ = uc.WriteToUDPAddrPort([]byte(reply(unmapPort(remote))), remote)
		}
	}()
	return s, nil
}

// server is the io.Closer returned by ServeTCP/ServeUDP.
type server struct {
	closeFn func() error
	once    sync.Once
	err     error
	wg      sync.WaitGroup
}

// Close stops the server and waits until its goroutines have returned.
func (s *server) Close() error {
	s.once.Do(func() {
		s.err = s.closeFn()
		s.wg.Wait()
	})
	return s.err
}

// DialTCP connects to dst from a socket inside the namespace and returns
// the first line the server sends, without its newline. timeout bounds
// the whole exchange.
//
// Errors wrap the underlying cause, so callers can tell outcomes apart:
// errors.Is(err, syscall.ECONNREFUSED) for a refused connection (RST or
// ICMP port unreachable, e.g. an nftables "reject"), IsTimeout(err) when
// packets were silently dropped, syscall.EHOSTUNREACH/ENETUNREACH for
// routing failures.
func (n *NS) DialTCP(dst netip.AddrPort, timeout time.Duration) (string, error) {
	var line string
	err := n.Do(func() error {
		deadline := time.Now().Add(timeout)
		d := net.Dialer{Deadline: deadline}
		c, err := d.Dial(family("tcp", dst.Addr()), dst.String())
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(deadline)
		line, err = bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return fmt.Errorf("read reply: %w", err)
		}
		line = strings.TrimSuffix(line, "\n")
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("netkit: tcp %s from %s: %w", dst, n.Name, err)
	}
	return line, nil
}

// DialUDP sends payload to dst from a connected UDP socket inside the
// namespace and returns the first datagram that comes back. Because the
// socket is connected, only answers from dst are accepted (after reverse
// NAT, a Service reply comes from the Service address) and an ICMP port
// unreachable surfaces as syscall.ECONNREFUSED. No answer within timeout
// gives an error for which IsTimeout is true.
func (n *NS) DialUDP(dst netip.AddrPort, payload string, timeout time.Duration) (string, error) {
	var resp string
	err := n.Do(func() error {
		c, err := net.Dial(family("udp", dst.Addr()), dst.String())
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(timeout))
		if _, err := c.Write([]byte(payload)); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		buf := make([]byte, 64*1024)
		m, err := c.Read(buf)
		if err != nil {
			return fmt.Errorf("read reply: %w", err)
		}
		resp = string(buf[:m])
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("netkit: udp %s from %s: %w", dst, n.Name, err)
	}
	return resp, nil
}

// IsTimeout reports whether err (from DialTCP/DialUDP) means that no
// answer arrived in time, as opposed to an explicit refusal.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// IsRefused reports whether err means the connection was refused
// (TCP RST or ICMP port unreachable): errors.Is(err, syscall.ECONNREFUSED).
func IsRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

// family picks "tcp4"/"tcp6" (or udp) from the address, so that the
// socket family is explicit and v6 listeners are v6-only.
func family(proto string, a netip.Addr) string {
	if a.Unmap().Is4() {
		return proto + "4"
	}
	return proto + "6"
}

// unmapPort turns ::ffff:a.b.c.d into a.b.c.d so callers compare plain
// IPv4 addresses.
func unmapPort(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
