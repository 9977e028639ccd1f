package conntrack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// This file speaks ctnetlink, the kernel's conntrack table interface, with
// its own messages. vishvananda/netlink v1.3.1 cannot add a filter to a
// dump (its ConntrackTableList and ConntrackDeleteFilters send a bare
// dump request) and reads the whole dump into memory before the first
// entry is looked at (and parses every entry into a ConntrackFlow);
// mdlayher/netlink's Receive allocates each message. Here a dump carries
// the kernel filter (Query) and is read one socket buffer at a time into a
// reused buffer; nothing is kept but the entries the caller keeps.

// Message types and attributes (include/uapi/linux/netfilter/
// nfnetlink_conntrack.h; the filter flags are net/netfilter/nf_internals.h).
const (
	nfnlSubsysCtnetlink = 1
	ctMsgGet            = 1
	ctMsgDelete         = 2

	ctaTupleOrig  = 1
	ctaTupleReply = 2
	ctaStatus     = 3
	ctaID         = 12
	ctaZone       = 18
	ctaFilter     = 25
	ctaStatusMask = 26

	ctaTupleIP    = 1
	ctaTupleProto = 2

	ctaIPv4Src = 1
	ctaIPv4Dst = 2
	ctaIPv6Src = 3
	ctaIPv6Dst = 4

	ctaProtoNum     = 1
	ctaProtoSrcPort = 2
	ctaProtoDstPort = 3

	ctaFilterOrigFlags  = 1
	ctaFilterReplyFlags = 2

	filterIPSrc    = 1 << 0
	filterIPDst    = 1 << 1
	filterProtoNum = 1 << 3
	filterSrcPort  = 1 << 4
	filterDstPort  = 1 << 5

	// IPS_* status bits (include/uapi/linux/netfilter/nf_conntrack_common.h).
	ipsDstNAT = 1 << 5

	nlaTypeMask = 0x3fff // strips NLA_F_NESTED and NLA_F_NET_BYTEORDER
	nlmsgHdrLen = 16
	nfgenHdrLen = 4
)

// Flow is what cleanup reads of one conntrack entry.
type Flow struct {
	Family             uint8 // unix.AF_INET or unix.AF_INET6
	Proto              uint8
	OrigSrc, OrigDst   netip.AddrPort
	ReplySrc, ReplyDst netip.AddrPort
	Status             uint32
	Zone               uint16
	ID                 uint32
}

// Query selects entries of one family in the kernel. Zero fields do not
// filter. Kernels without the filter attributes (CTA_FILTER: Linux 5.8;
// status: 6.3) ignore them and send more entries: callers must still check
// every entry they get.
type Query struct {
	Family uint8
	Proto  uint8
	// OrigDst (address valid or not) and OrigDstPort select the original
	// destination; ReplySrc and ReplySrcPort the reply source.
	OrigDst      netip.Addr
	OrigDstPort  uint16
	ReplySrc     netip.Addr
	ReplySrcPort uint16
	// StatusMask/StatusValue: entries with status&mask == value.
	StatusMask, StatusValue uint32
}

// conn is a NETLINK_NETFILTER socket opened in one network namespace.
// mdlayher/netlink opens it (and enters the namespace); the messages go
// through its raw connection, read into one reused buffer.
type conn struct {
	nl  *netlink.Conn
	raw syscall.RawConn
	seq uint32
	buf []byte // receive buffer, reused: a dump part is at most 32 KiB
	msg builder
	// longestRecv is the longest receive of the last dump: the kernel
	// fills each part of a dump with bottom halves disabled on that CPU,
	// and with a narrow filter one part may cover the whole table.
	longestRecv time.Duration
}

// dial opens the socket in the namespace of nsFd (0: the current one).
func dial(nsFd int) (*conn, error) {
	nc, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: nsFd})
	if err != nil {
		return nil, fmt.Errorf("conntrack: open netlink socket: %w", err)
	}
	raw, err := nc.SyscallConn()
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("conntrack: netlink socket: %w", err)
	}
	// Errors need not echo the request; failure is harmless.
	_ = nc.SetOption(netlink.CapAcknowledge, true)
	return &conn{nl: nc, raw: raw, buf: make([]byte, 64<<10)}, nil
}

func (c *conn) close() { c.nl.Close() }

// errInterrupted: the table changed shape (resize) during a dump; the
// entries seen are valid but some may have been missed.
var errInterrupted = errors.New("conntrack: dump interrupted by a table change; some entries were not seen")

// dump streams the entries q selects to fn. fn gets a Flow it must not
// keep (it is reused). An interrupted dump still delivers what it saw and
// returns errInterrupted.
func (c *conn) dump(q Query, fn func(*Flow)) error {
	c.seq++
	seq := c.seq
	c.msg.reset()
	c.msg.begin(ctMsgGet, unix.NLM_F_REQUEST|unix.NLM_F_DUMP, seq, q.Family)
	q.encode(&c.msg)
	c.msg.end()
	if err := c.send(c.msg.b); err != nil {
		return err
	}
	var f Flow
	interrupted := false
	c.longestRecv = 0
	for {
		start := time.Now()
		n, err := c.recv()
		c.longestRecv = max(c.longestRecv, time.Since(start))
		if err != nil {
			return err
		}
		for b := c.buf[:n]; len(b) >= nlmsgHdrLen; {
			l := int(binary.NativeEndian.Uint32(b[0:4]))
			typ := binary.NativeEndian.Uint16(b[4:6])
			flags := binary.NativeEndian.Uint16(b[6:8])
			mseq := binary.NativeEndian.Uint32(b[8:12])
			if l < nlmsgHdrLen || l > len(b) {
				return errors.New("conntrack: malformed netlink message")
			}
			msg := b[nlmsgHdrLen:l]
			b = b[min(align(l), len(b)):]
			if mseq != seq {
				continue // a late answer to an earlier request
			}
			if flags&unix.NLM_F_DUMP_INTR != 0 {
				interrupted = true
			}
			switch typ {
			case unix.NLMSG_DONE:
				if interrupted {
					return errInterrupted
				}
				return nil
			case unix.NLMSG_ERROR:
				if err := ackError(msg); err != nil {
					return fmt.Errorf("conntrack: dump: %w", err)
				}
				continue
			}
			if len(msg) < nfgenHdrLen {
				continue
			}
			f = Flow{Family: msg[0]}
			parseFlow(msg[nfgenHdrLen:], &f)
			fn(&f)
		}
	}
}

// deleteFlows deletes the entries of flows by original tuple and ID (an
// entry that was replaced meanwhile by one with the same tuple is left
// alone), in batches of messages per system call. It returns how many the
// kernel deleted; entries already gone do not count and are no error.
func (c *conn) deleteFlows(flows []Flow) (int, error) {
	const batch = 128 // the acknowledgements must fit the receive buffer
	deleted := 0
	var errs []error
	for len(flows) > 0 {
		part := flows[:min(batch, len(flows))]
		flows = flows[len(part):]
		c.msg.reset()
		first := c.seq + 1
		for i := range part {
			c.seq++
			c.msg.begin(ctMsgDelete, unix.NLM_F_REQUEST|unix.NLM_F_ACK, c.seq, part[i].Family)
			encodeTuple(&c.msg, ctaTupleOrig, part[i].Proto, part[i].OrigSrc, part[i].OrigDst)
			if part[i].Zone != 0 {
				c.msg.attr16(ctaZone, part[i].Zone)
			}
			c.msg.attr32(ctaID, part[i].ID)
			c.msg.end()
		}
		if err := c.send(c.msg.b); err != nil {
			return deleted, err
		}
		ok, err := c.acks(first, len(part))
		deleted += ok
		if err != nil {
			errs = append(errs, err)
		}
	}
	return deleted, errors.Join(errs...)
}

// acks reads the acknowledgements of n requests numbered from first and
// counts the successful ones; ENOENT (already gone) is not an error.
func (c *conn) acks(first uint32, n int) (int, error) {
	ok, seen, failed := 0, 0, 0
	var firstErr error
	for seen < n {
		m, err := c.recv()
		if err != nil {
			return ok, err
		}
		for b := c.buf[:m]; len(b) >= nlmsgHdrLen; {
			l := int(binary.NativeEndian.Uint32(b[0:4]))
			typ := binary.NativeEndian.Uint16(b[4:6])
			seq := binary.NativeEndian.Uint32(b[8:12])
			if l < nlmsgHdrLen || l > len(b) {
				return ok, errors.New("conntrack: malformed netlink message")
			}
			msg := b[nlmsgHdrLen:l]
			b = b[min(align(l), len(b)):]
			if typ != unix.NLMSG_ERROR || seq < first || seq >= first+uint32(n) {
				continue
			}
			seen++
			switch err := ackError(msg); {
			case err == nil:
				ok++
			case errors.Is(err, unix.ENOENT):
			default:
				failed++
				if firstErr == nil {
					firstErr = err
				}
			}
		}
	}
	if failed > 0 {
		return ok, fmt.Errorf("conntrack: %d of %d deletions failed: %w", failed, n, firstErr)
	}
	return ok, nil
}

func (c *conn) send(b []byte) error {
	var err error
	werr := c.raw.Write(func(fd uintptr) bool {
		err = unix.Sendto(int(fd), b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		return err != unix.EAGAIN && err != unix.EINTR
	})
	if err == nil {
		err = werr
	}
	if err != nil {
		return fmt.Errorf("conntrack: netlink send: %w", err)
	}
	return nil
}

// recv reads one datagram (a dump part, or acknowledgements) into c.buf.
func (c *conn) recv() (int, error) {
	var n, flags int
	var err error
	rerr := c.raw.Read(func(fd uintptr) bool {
		n, _, flags, _, err = unix.Recvmsg(int(fd), c.buf, nil, 0)
		return err != unix.EAGAIN && err != unix.EINTR
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return 0, fmt.Errorf("conntrack: netlink receive: %w", err)
	}
	if flags&unix.MSG_TRUNC != 0 {
		return 0, errors.New("conntrack: netlink message larger than the receive buffer")
	}
	return n, nil
}

// ackError returns the error an NLMSG_ERROR message carries (nil: an ACK).
func ackError(msg []byte) error {
	if len(msg) < 4 {
		return errors.New("conntrack: short netlink error message")
	}
	if code := int32(binary.NativeEndian.Uint32(msg[:4])); code != 0 {
		return syscall.Errno(-code)
	}
	return nil
}

func align(n int) int { return (n + 3) &^ 3 }
