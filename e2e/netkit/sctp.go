package netkit

// The kernel of the test machines is built without SCTP sockets
// (CONFIG_IP_SCTP off) but conntrack and nftables understand SCTP. So SCTP
// Services are tested with hand-built packets: an INIT chunk sent on a raw
// socket of IP protocol 132, and a raw socket on the backend side that
// records which packets arrive (after DNAT) with which ports.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"net/netip"
	"os"
	"syscall"
)

const (
	ipprotoSCTP     = 132
	sctpChunkInit   = 1
	ipv6PktInfo     = 50 // IPV6_PKTINFO cmsg type
	ipv6RecvPktInfo = 49 // IPV6_RECVPKTINFO socket option
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// SCTPPacket is an SCTP packet seen by CaptureSCTP.
type SCTPPacket struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	// VerificationTag is the tag from the common header (0 for INIT).
	VerificationTag uint32
	// ChunkType is the type of the first chunk (1 = INIT), or 0 if the
	// packet has no chunk.
	ChunkType uint8
}

// SCTPInit returns an SCTP packet (common header + INIT chunk, 32 bytes)
// from srcPort to dstPort with a random initiate tag and initial TSN and a
// valid CRC32c checksum, as conntrack checks it.
func SCTPInit(srcPort, dstPort uint16) []byte {
	p := make([]byte, 12+20)
	binary.BigEndian.PutUint16(p[0:], srcPort)
	binary.BigEndian.PutUint16(p[2:], dstPort)
	// p[4:8] verification tag: must be 0 in a packet carrying INIT.
	// p[8:12] checksum: zero while computing it.
	c := p[12:]
	c[0] = sctpChunkInit
	c[1] = 0                                           // flags
	binary.BigEndian.PutUint16(c[2:], 20)              // chunk length: header + fixed INIT fields
	binary.BigEndian.PutUint32(c[4:], rand.Uint32()|1) // initiate tag, must be non-zero
	binary.BigEndian.PutUint32(c[8:], 65535)           // a_rwnd
	binary.BigEndian.PutUint16(c[12:], 10)             // outbound streams (non-zero)
	binary.BigEndian.PutUint16(c[14:], 10)             // max inbound streams (non-zero)
	binary.BigEndian.PutUint32(c[16:], rand.Uint32())  // initial TSN
	setSCTPChecksum(p)
	return p
}

// setSCTPChecksum fills in the CRC32c of an SCTP packet. RFC 4960
// appendix B: the CRC32c (reflected, final xor, i.e. what hash/crc32's
// Castagnoli table computes) over the whole packet with the checksum field
// zeroed, stored least significant byte first, as Linux does with
// cpu_to_le32 in sctp_compute_cksum.
func setSCTPChecksum(p []byte) {
	binary.LittleEndian.PutUint32(p[8:], 0)
	binary.LittleEndian.PutUint32(p[8:], crc32.Checksum(p, castagnoli))
}

// SendSCTPInit sends one SCTP INIT (see SCTPInit) from src:srcPort to dst
// over a raw socket inside the namespace. See SendSCTP for src.
func (n *NS) SendSCTPInit(src netip.Addr, srcPort uint16, dst netip.AddrPort) error {
	if err := n.SendSCTP(src, dst.Addr(), SCTPInit(srcPort, dst.Port())); err != nil {
		return fmt.Errorf("netkit: sctp init from port %d to %s: %w", srcPort, dst, err)
	}
	return nil
}

// SendSCTP sends pkt, a complete SCTP packet (common header and chunks,
// checksum included), from src to dst over a raw socket of protocol 132
// inside the namespace; the kernel adds the IPv4 or IPv6 header, by dst's
// family. An invalid (zero) src lets the kernel choose the source address
// by routing.
func (n *NS) SendSCTP(src, dst netip.Addr, pkt []byte) error {
	dst, src = dst.Unmap(), src.Unmap()
	if src.IsValid() && src.Is4() != dst.Is4() {
		return fmt.Errorf("netkit: sctp %s -> %s: address families differ", src, dst)
	}
	err := n.Do(func() error {
		af := syscall.AF_INET6
		if dst.Is4() {
			af = syscall.AF_INET
		}
		fd, err := syscall.Socket(af, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC, ipprotoSCTP)
		if err != nil {
			return fmt.Errorf("raw socket: %w", err)
		}
		defer syscall.Close(fd)
		if src.IsValid() {
			// On a raw socket, bind only sets the source address.
			if err := syscall.Bind(fd, sockaddr(src)); err != nil {
				return fmt.Errorf("bind %s: %w", src, err)
			}
		}
		// The port of a raw sockaddr must be 0 (for IPv6 it would name
		// the protocol); the SCTP ports are inside the packet.
		if err := syscall.Sendto(fd, pkt, 0, sockaddr(dst)); err != nil {
			return fmt.Errorf("sendto: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("netkit: sctp %s -> %s from %s: %w", src, dst, n.Name, err)
	}
	return nil
}

// CaptureSCTP opens raw IPv4 and IPv6 sockets of protocol 132 inside the
// namespace and delivers every SCTP packet addressed to this namespace on
// the returned channel until ctx is cancelled; then the sockets are closed
// and the channel is closed. Packets arriving while the channel is full
// (64 entries) are dropped. While the capture runs, the kernel does not
// answer SCTP packets with ICMP "protocol unreachable", since a raw socket
// took them.
func (n *NS) CaptureSCTP(ctx context.Context) (<-chan SCTPPacket, error) {
	var files []*os.File
	err := n.Do(func() error {
		for _, af := range []int{syscall.AF_INET, syscall.AF_INET6} {
			// Non-blocking, so os.NewFile registers it with the Go
			// poller and Close can interrupt a pending read.
			fd, err := syscall.Socket(af, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK, ipprotoSCTP)
			if err != nil {
				return fmt.Errorf("raw socket: %w", err)
			}
			if af == syscall.AF_INET6 {
				// IPv6 raw sockets deliver no IP header: ask for
				// the destination address as ancillary data.
				if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_IPV6, ipv6RecvPktInfo, 1); err != nil {
					syscall.Close(fd)
					return fmt.Errorf("IPV6_RECVPKTINFO: %w", err)
				}
			}
			files = append(files, os.NewFile(uintptr(fd), fmt.Sprintf("sctp-raw-%d", af)))
		}
		return nil
	})
	if err != nil {
		for _, f := range files {
			f.Close()
		}
		return nil, fmt.Errorf("netkit: capture sctp in %s: %w", n.Name, err)
	}
	ch := make(chan SCTPPacket, 64)
	done := make(chan struct{}, len(files))
	for i, f := range files {
		go func(f *os.File, v6 bool) {
			defer func() { done <- struct{}{} }()
			readSCTP(f, v6, ch)
		}(f, i == 1)
	}
	go func() {
		<-ctx.Done()
		for _, f := range files {
			f.Close() // unblocks readSCTP
		}
		for range files {
			<-done
		}
		close(ch)
	}()
	return ch, nil
}

// readSCTP reads packets from a raw socket until it is closed.
func readSCTP(f *os.File, v6 bool, ch chan<- SCTPPacket) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	buf := make([]byte, 64*1024)
	oob := make([]byte, 256)
	for {
		var n, oobn int
		var from syscall.Sockaddr
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, oobn, _, from, rerr = syscall.Recvmsg(int(fd), buf, oob, 0)
			return !errors.Is(rerr, syscall.EAGAIN)
		})
		if err != nil {
			return // closed
		}
		if rerr != nil {
			continue
		}
		var p SCTPPacket
		var ok bool
		if v6 {
			p, ok = parseSCTPv6(buf[:n], oob[:oobn], from)
		} else {
			p, ok = parseSCTPv4(buf[:n])
		}
		if !ok {
			continue
		}
		select {
		case ch <- p:
		default: // nobody is reading: drop rather than block
		}
	}
}

// parseSCTPv4 parses an IPv4 packet (IPv4 raw sockets include the header).
func parseSCTPv4(b []byte) (SCTPPacket, bool) {
	if len(b) < 20 || b[0]>>4 != 4 {
		return SCTPPacket{}, false
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < 20 || len(b) < ihl {
		return SCTPPacket{}, false
	}
	p, ok := parseSCTPHeader(b[ihl:])
	p.Src = netip.AddrFrom4([4]byte(b[12:16]))
	p.Dst = netip.AddrFrom4([4]byte(b[16:20]))
	return p, ok
}

// parseSCTPv6 parses an SCTP payload from an IPv6 raw socket: the source
// comes from the sender address, the destination from IPV6_PKTINFO.
func parseSCTPv6(b, oob []byte, from syscall.Sockaddr) (SCTPPacket, bool) {
	p, ok := parseSCTPHeader(b)
	if !ok {
		return p, false
	}
	if sa, isV6 := from.(*syscall.SockaddrInet6); isV6 {
		p.Src = netip.AddrFrom16(sa.Addr)
	}
	msgs, _ := syscall.ParseSocketControlMessage(oob)
	for _, m := range msgs {
		// struct in6_pktinfo { struct in6_addr addr; int ifindex; }
		if m.Header.Level == syscall.IPPROTO_IPV6 && m.Header.Type == ipv6PktInfo && len(m.Data) >= 16 {
			p.Dst = netip.AddrFrom16([16]byte(m.Data[:16]))
		}
	}
	return p, true
}

// parseSCTPHeader parses the SCTP common header and the first chunk type.
func parseSCTPHeader(b []byte) (SCTPPacket, bool) {
	if len(b) < 12 {
		return SCTPPacket{}, false
	}
	p := SCTPPacket{
		SrcPort:         binary.BigEndian.Uint16(b[0:]),
		DstPort:         binary.BigEndian.Uint16(b[2:]),
		VerificationTag: binary.BigEndian.Uint32(b[4:]),
	}
	if len(b) >= 16 {
		p.ChunkType = b[12]
	}
	return p, true
}

// sockaddr converts an address to a syscall sockaddr with port 0.
func sockaddr(a netip.Addr) syscall.Sockaddr {
	if a.Is4() {
		return &syscall.SockaddrInet4{Addr: a.As4()}
	}
	return &syscall.SockaddrInet6{Addr: a.As16()}
}
