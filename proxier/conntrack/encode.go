package conntrack

import (
	"encoding/binary"
	"net/netip"

	"golang.org/x/sys/unix"
)

// builder appends netlink messages (header, nfgenmsg, attributes) to one
// buffer, so that several requests go out in one system call.
type builder struct {
	b     []byte
	start int   // offset of the message being built
	nests []int // offsets of the open nested attributes
}

func (m *builder) reset() { m.b, m.nests = m.b[:0], m.nests[:0] }

func (m *builder) begin(msgType uint16, flags uint16, seq uint32, family uint8) {
	m.start = len(m.b)
	var h [nlmsgHdrLen + nfgenHdrLen]byte
	binary.NativeEndian.PutUint16(h[4:6], nfnlSubsysCtnetlink<<8|msgType)
	binary.NativeEndian.PutUint16(h[6:8], flags)
	binary.NativeEndian.PutUint32(h[8:12], seq)
	h[16] = family // nfgen_family; version NFNETLINK_V0, res_id 0
	m.b = append(m.b, h[:]...)
}

func (m *builder) end() {
	binary.NativeEndian.PutUint32(m.b[m.start:], uint32(len(m.b)-m.start))
}

func (m *builder) attr(typ uint16, data []byte) {
	var h [4]byte
	binary.NativeEndian.PutUint16(h[0:2], uint16(4+len(data)))
	binary.NativeEndian.PutUint16(h[2:4], typ)
	m.b = append(m.b, h[:]...)
	m.b = append(m.b, data...)
	for len(m.b)%4 != 0 {
		m.b = append(m.b, 0)
	}
}

// ctnetlink values are big-endian, except the filter flags (host order).
func (m *builder) attr8(typ uint16, v uint8) { m.attr(typ, []byte{v}) }
func (m *builder) attr16(typ uint16, v uint16) {
	m.attr(typ, binary.BigEndian.AppendUint16(nil, v))
}
func (m *builder) attr32(typ uint16, v uint32) {
	m.attr(typ, binary.BigEndian.AppendUint32(nil, v))
}

func (m *builder) nest(typ uint16) {
	m.nests = append(m.nests, len(m.b))
	m.attr(typ|unix.NLA_F_NESTED, nil)
}

func (m *builder) unnest() {
	off := m.nests[len(m.nests)-1]
	m.nests = m.nests[:len(m.nests)-1]
	binary.NativeEndian.PutUint16(m.b[off:], uint16(len(m.b)-off))
}

// encodeTuple writes a full tuple (for deleting or creating an entry).
func encodeTuple(m *builder, typ uint16, proto uint8, src, dst netip.AddrPort) {
	m.nest(typ)
	m.nest(ctaTupleIP)
	srcAttr, dstAttr := uint16(ctaIPv4Src), uint16(ctaIPv4Dst)
	if src.Addr().Is6() {
		srcAttr, dstAttr = ctaIPv6Src, ctaIPv6Dst
	}
	m.attr(srcAttr, src.Addr().AsSlice())
	m.attr(dstAttr, dst.Addr().AsSlice())
	m.unnest()
	m.nest(ctaTupleProto)
	m.attr8(ctaProtoNum, proto)
	m.attr16(ctaProtoSrcPort, src.Port())
	m.attr16(ctaProtoDstPort, dst.Port())
	m.unnest()
	m.unnest()
}

// encode adds q's kernel filter (CTA_FILTER with the tuple fields to
// compare, and the status mask) to a dump request.
func (q Query) encode(m *builder) {
	origFlags := filterTuple(m, ctaTupleOrig, q.Proto, false, q.OrigDst, q.OrigDstPort)
	replyFlags := filterTuple(m, ctaTupleReply, q.Proto, true, q.ReplySrc, q.ReplySrcPort)
	if origFlags|replyFlags != 0 {
		m.nest(ctaFilter)
		var v [4]byte
		binary.NativeEndian.PutUint32(v[:], origFlags)
		m.attr(ctaFilterOrigFlags, v[:])
		binary.NativeEndian.PutUint32(v[:], replyFlags)
		m.attr(ctaFilterReplyFlags, v[:])
		m.unnest()
	}
	if q.StatusMask != 0 {
		m.attr32(ctaStatus, q.StatusValue)
		m.attr32(ctaStatusMask, q.StatusMask)
	}
}

// filterTuple writes the tuple fields one direction's filter compares
// (the source when src, else the destination) and returns its flags.
func filterTuple(m *builder, typ uint16, proto uint8, src bool, ip netip.Addr, port uint16) uint32 {
	ipFlag, portFlag := uint32(filterIPDst), uint32(filterDstPort)
	ipAttr, portAttr := uint16(ctaIPv4Dst), uint16(ctaProtoDstPort)
	if src {
		ipFlag, portFlag = filterIPSrc, filterSrcPort
		ipAttr, portAttr = ctaIPv4Src, ctaProtoSrcPort
	}
	if ip.Is6() {
		ipAttr += ctaIPv6Src - ctaIPv4Src
	}
	var flags uint32
	if ip.IsValid() {
		flags |= ipFlag
	}
	if port != 0 && proto != 0 {
		flags |= portFlag
	}
	if proto != 0 && (flags != 0 || typ == ctaTupleOrig) {
		// The protocol alone is compared once, in the original
		// direction; a port needs it in its own direction too.
		flags |= filterProtoNum
	}
	if flags == 0 {
		return 0
	}
	m.nest(typ)
	if ip.IsValid() {
		m.nest(ctaTupleIP)
		m.attr(ipAttr, ip.AsSlice())
		m.unnest()
	}
	if flags&filterProtoNum != 0 {
		m.nest(ctaTupleProto)
		m.attr8(ctaProtoNum, proto)
		if flags&portFlag != 0 {
			m.attr16(portAttr, port)
		}
		m.unnest()
	}
	m.unnest()
	return flags
}

// parseFlow reads the attributes cleanup needs from one entry and skips
// the rest (counters, timestamps, protocol state, labels...).
func parseFlow(b []byte, f *Flow) {
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		typ := binary.NativeEndian.Uint16(b[2:4]) & nlaTypeMask
		if l < 4 || l > len(b) {
			return
		}
		v := b[4:l]
		b = b[min(align(l), len(b)):]
		switch typ {
		case ctaTupleOrig:
			f.Proto = parseTuple(v, &f.OrigSrc, &f.OrigDst)
		case ctaTupleReply:
			parseTuple(v, &f.ReplySrc, &f.ReplyDst)
		case ctaStatus:
			if len(v) == 4 {
				f.Status = binary.BigEndian.Uint32(v)
			}
		case ctaZone:
			if len(v) == 2 {
				f.Zone = binary.BigEndian.Uint16(v)
			}
		case ctaID:
			if len(v) == 4 {
				f.ID = binary.BigEndian.Uint32(v)
			}
		}
	}
}

// parseTuple reads a CTA_TUPLE_* attribute and returns its protocol.
func parseTuple(b []byte, src, dst *netip.AddrPort) uint8 {
	var srcIP, dstIP netip.Addr
	var proto uint8
	var sport, dport uint16
	forEachAttr(b, func(typ uint16, v []byte) {
		switch typ {
		case ctaTupleIP:
			forEachAttr(v, func(typ uint16, v []byte) {
				a, ok := netip.AddrFromSlice(v)
				if !ok {
					return
				}
				switch typ {
				case ctaIPv4Src, ctaIPv6Src:
					srcIP = a
				case ctaIPv4Dst, ctaIPv6Dst:
					dstIP = a
				}
			})
		case ctaTupleProto:
			forEachAttr(v, func(typ uint16, v []byte) {
				switch {
				case typ == ctaProtoNum && len(v) == 1:
					proto = v[0]
				case typ == ctaProtoSrcPort && len(v) == 2:
					sport = binary.BigEndian.Uint16(v)
				case typ == ctaProtoDstPort && len(v) == 2:
					dport = binary.BigEndian.Uint16(v)
				}
			})
		}
	})
	*src, *dst = netip.AddrPortFrom(srcIP, sport), netip.AddrPortFrom(dstIP, dport)
	return proto
}

func forEachAttr(b []byte, fn func(typ uint16, v []byte)) {
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		if l < 4 || l > len(b) {
			return
		}
		fn(binary.NativeEndian.Uint16(b[2:4])&nlaTypeMask, b[4:l])
		b = b[min(align(l), len(b)):]
	}
}
