package conntrack

import (
	"fmt"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nftproxy/nftproxy/e2e/netkit"
)

// Test helpers: create conntrack entries over ctnetlink, as `conntrack -I`
// does, many per system call, so that a benchmark fills a table of a
// million entries in seconds.

const (
	ctMsgNew           = 0
	ctaNatSrc          = 6
	ctaTimeout         = 7
	ctaNatDst          = 13
	ipsSeenReply       = 1 << 1
	ipsAssured         = 1 << 2
	ctaNatV4MinIP      = 1
	ctaNatV4MaxIP      = 2
	ctaNatProto        = 3
	ctaNatV6MinIP      = 4
	ctaNatV6MaxIP      = 5
	ctaProtoNatPortMin = 1
	ctaProtoNatPortMax = 2
	ipsConfirmed       = 1 << 3
)

// Entry describes one entry to create: a UDP (or other) flow from OrigSrc
// to OrigDst, DNATed to DNAT and/or source-NATed to SNAT when those are
// valid. The kernel computes the reply tuple from the NAT it sets up.
type Entry struct {
	Proto            uint8
	OrigSrc, OrigDst netip.AddrPort
	DNAT             netip.AddrPort
	SNAT             netip.Addr
	TimeoutSeconds   uint32
}

// testNamespace needs root (netkit.RequireRoot), and returns a fresh network
// namespace named name ("nftk-" prefixed) and a Creator in it, both gone
// when tb ends.
func testNamespace(tb testing.TB, name string) (*netkit.NS, *Creator) {
	tb.Helper()
	ns := netkit.NewTestNS(tb, name)
	cr, err := NewCreator(ns.FD())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cr.Close)
	return ns, cr
}

// Creator creates entries in one namespace's table.
type Creator struct{ c *conn }

// NewCreator opens a ctnetlink socket in the namespace of nsFd.
func NewCreator(nsFd int) (*Creator, error) {
	c, err := dial(nsFd)
	if err != nil {
		return nil, err
	}
	return &Creator{c: c}, nil
}

// Close closes the socket.
func (cr *Creator) Close() { cr.c.close() }

// Create creates the entries, 128 per system call, and fails on the first
// batch with an error (for instance ENOMEM past nf_conntrack_max).
func (cr *Creator) Create(entries []Entry) error {
	c := cr.c
	for len(entries) > 0 {
		part := entries[:min(128, len(entries))]
		entries = entries[len(part):]
		c.msg.reset()
		first := c.seq + 1
		for _, e := range part {
			c.seq++
			fam := uint8(unix.AF_INET)
			if e.OrigSrc.Addr().Is6() {
				fam = unix.AF_INET6
			}
			c.msg.begin(ctMsgNew, unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE|unix.NLM_F_EXCL, c.seq, fam)
			encodeTuple(&c.msg, ctaTupleOrig, e.Proto, e.OrigSrc, e.OrigDst)
			encodeTuple(&c.msg, ctaTupleReply, e.Proto, e.OrigDst, e.OrigSrc)
			timeout := e.TimeoutSeconds
			if timeout == 0 {
				timeout = 3600
			}
			c.msg.attr32(ctaTimeout, timeout)
			// Assured entries are not evicted to make room for others
			// (the kernel wants IPS_CONFIRMED in what it is told, as
			// every new entry gets it).
			c.msg.attr32(ctaStatus, ipsConfirmed|ipsSeenReply|ipsAssured)
			if e.DNAT.IsValid() {
				natAttr(&c.msg, ctaNatDst, e.DNAT.Addr(), e.DNAT.Port())
			}
			if e.SNAT.IsValid() {
				natAttr(&c.msg, ctaNatSrc, e.SNAT, 0)
			}
			c.msg.end()
		}
		if err := c.send(c.msg.b); err != nil {
			return err
		}
		ok, err := c.acks(first, len(part))
		if err != nil {
			return fmt.Errorf("created %d of a batch of %d: %w", ok, len(part), err)
		}
	}
	return nil
}

func natAttr(m *builder, typ uint16, ip netip.Addr, port uint16) {
	m.nest(typ)
	minA, maxA := uint16(ctaNatV4MinIP), uint16(ctaNatV4MaxIP)
	if ip.Is6() {
		minA, maxA = ctaNatV6MinIP, ctaNatV6MaxIP
	}
	m.attr(minA, ip.AsSlice())
	m.attr(maxA, ip.AsSlice())
	if port != 0 {
		m.nest(ctaNatProto)
		m.attr16(ctaProtoNatPortMin, port)
		m.attr16(ctaProtoNatPortMax, port)
		m.unnest()
	}
	m.unnest()
}

// Dump lists the entries q selects (tests: a few entries only).
func (cr *Creator) Dump(q Query) ([]Flow, error) {
	var out []Flow
	err := cr.c.dump(q, func(f *Flow) { out = append(out, *f) })
	return out, err
}
