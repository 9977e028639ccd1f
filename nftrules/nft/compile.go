package nft

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// This file encodes statements as nftables bytecode. Every shape below is
// the one nft 1.0.6 emits for the statement's Render text (checked with
// `nft --debug=netlink`), so nft can print what we program and load its
// print-out again.

// Registers: nft loads the first field of a concatenation into the 128-bit
// register 1 and the following fields into consecutive 32-bit registers
// (NFT_REG32_00 = 8 aliases the start of register 1).
const (
	regVerdict = 0
	reg1       = 1
	reg32Base  = 8
)

// compileStmt returns the expressions of one statement in a table of
// family f (rulemsg.go encodes them; the statements of a service chain's
// rule it encodes directly, in these same shapes).
func compileStmt(f Family, s Stmt) ([]expr.Any, error) {
	switch s := s.(type) {
	case MatchL4Proto:
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{byte(s.Proto)}},
		}, nil
	case MatchPrefix:
		return compilePrefix(f, s)
	case MatchFibSaddrLocal:
		return []expr.Any{
			&expr.Fib{Register: reg1, FlagSADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: hostU32(unix.RTN_LOCAL)},
		}, nil
	case MatchCtStateNew:
		return ctBitSet(expr.CtKeySTATE, 0x08), nil // NF_CT_STATE_BIT(IP_CT_NEW)
	case MatchCtStatusDNAT:
		return ctBitSet(expr.CtKeySTATUS, 0x20), nil // IPS_DST_NAT
	case MatchMarkUnset:
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: hostU32(s.Bits), Xor: hostU32(0)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: hostU32(0)},
		}, nil
	case SetMarkBits:
		return markRewrite(^s.Bits, s.Bits), nil
	case ClearMarkBits:
		return markRewrite(0xffffffff, s.Bits), nil
	case SetLookup:
		loads, err := loadFields(f, s.Fields)
		if err != nil {
			return nil, err
		}
		return append(loads, &expr.Lookup{SourceRegister: reg1, SetName: s.Set}), nil
	case VmapLookup:
		loads, err := loadFields(f, s.Fields)
		if err != nil {
			return nil, err
		}
		return append(loads, &expr.Lookup{SourceRegister: reg1, DestRegister: regVerdict, IsDestRegSet: true, SetName: s.Map}), nil
	case DNATToEndpoint:
		return compileDNAT(f, s), nil
	case Masquerade:
		return []expr.Any{&expr.Masq{FullyRandom: true}}, nil
	case Reject:
		code := uint8(3) // ICMP_PORT_UNREACH
		if f == IPv6 {
			code = 4 // ICMPV6_PORT_UNREACH
		}
		return []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: code}}, nil
	case RejectTCPReset:
		return []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}}, nil
	case UpdateSourceSet:
		off, n := addrOffset(f, FieldSaddr)
		return []expr.Any{
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
			&expr.Dynset{SrcRegKey: reg1, SetName: s.Set, Operation: unix.NFT_DYNSET_OP_UPDATE},
		}, nil
	case DNATTo:
		nfproto := uint32(unix.NFPROTO_IPV4)
		if f == IPv6 {
			nfproto = unix.NFPROTO_IPV6
		}
		return []expr.Any{
			&expr.Immediate{Register: reg1, Data: s.To.Addr().AsSlice()},
			&expr.Immediate{Register: 2, Data: binary.BigEndian.AppendUint16(nil, s.To.Port())},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: nfproto, RegAddrMin: reg1, RegProtoMin: 2, Specified: true},
		}, nil
	case NumgenVmap:
		return []expr.Any{
			&expr.Numgen{Register: reg1, Modulus: s.Count, Type: unix.NFT_NG_RANDOM, Offset: s.Offset},
			&expr.Lookup{SourceRegister: reg1, DestRegister: regVerdict, IsDestRegSet: true, SetName: s.Map},
		}, nil
	case Counter:
		return []expr.Any{&expr.Counter{}}, nil
	case VerdictStmt:
		return []expr.Any{compileVerdict(s.Verdict)}, nil
	case Opaque:
		return nil, fmt.Errorf("cannot program a rule read back from the kernel (%s)", s.Text)
	}
	return nil, fmt.Errorf("no bytecode for statement %T", s)
}

func compileVerdict(v Verdict) *expr.Verdict {
	return &expr.Verdict{Kind: verdictKinds[v.Kind], Chain: v.Chain}
}

func ctBitSet(key expr.CtKey, bit uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: reg1, Key: key},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: hostU32(bit), Xor: hostU32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: hostU32(0)},
	}
}

// markRewrite sets mark = (mark & mask) ^ xor, which is how nft encodes
// "meta mark set meta mark | x" (mask ^x, xor x) and "... ^ x".
func markRewrite(mask, xor uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: hostU32(mask), Xor: hostU32(xor)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg1},
	}
}

// compilePrefix loads only the bytes the prefix covers, masks the last one
// when the prefix is not byte aligned, and compares: nft's own encoding.
func compilePrefix(f Family, s MatchPrefix) ([]expr.Any, error) {
	p := s.Prefix.Masked()
	if FamilyOf(p.Addr()) != f || p.Bits() <= 0 {
		return nil, fmt.Errorf("prefix %s does not fit a %s table", p, f)
	}
	off, size := addrOffset(f, s.Field)
	var out []expr.Any
	var addr []byte
	if p.Bits()%8 == 0 {
		// Byte aligned: load and compare only the covered bytes.
		n := uint32(p.Bits() / 8)
		addr = p.Addr().AsSlice()[:n]
		out = append(out, &expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n})
	} else {
		// Otherwise load the whole address and mask it.
		addr = p.Addr().AsSlice()
		mask := netipMask(p.Bits(), int(size))
		out = append(out,
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: size},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: size, Mask: mask, Xor: make([]byte, size)})
	}
	op := expr.CmpOpEq
	if s.Negate {
		op = expr.CmpOpNeq
	}
	return append(out, &expr.Cmp{Op: op, Register: reg1, Data: addr}), nil
}

func netipMask(bits, size int) []byte {
	m := make([]byte, size)
	for i := 0; i < bits; i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return m
}

func compileDNAT(f Family, s DNATToEndpoint) []expr.Any {
	nfproto, protoReg := dnatRegs(f)
	return []expr.Any{
		&expr.Numgen{Register: reg1, Modulus: s.Count, Type: unix.NFT_NG_RANDOM, Offset: s.Offset},
		&expr.Lookup{SourceRegister: reg1, DestRegister: reg1, IsDestRegSet: true, SetName: s.Map},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: nfproto, RegAddrMin: reg1, RegProtoMin: protoReg},
	}
}

// dnatRegs returns the NAT family of a table of family f and the register
// the endpoint map's port lands in, after the address.
func dnatRegs(f Family) (nfproto, protoReg uint32) {
	if f == IPv6 {
		return unix.NFPROTO_IPV6, 2 // 128-bit register 2 follows the 16-byte address
	}
	return unix.NFPROTO_IPV4, reg32Base + 1
}

// loadFields loads the fields of a concatenation into consecutive registers.
func loadFields(f Family, fields []Field) ([]expr.Any, error) {
	var out []expr.Any
	words := uint32(0)
	for i, fl := range fields {
		reg := reg32Base + words
		if i == 0 {
			reg = reg1
		}
		var size uint32
		switch fl {
		case FieldSaddr, FieldDaddr:
			off, n := addrOffset(f, fl)
			out = append(out, &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n})
			size = n
		case FieldL4Proto:
			out = append(out, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg})
			size = 1
		case FieldDport:
			out = append(out, &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})
			size = 2
		default:
			return nil, fmt.Errorf("cannot load field %d", fl)
		}
		words += (size + 3) / 4
	}
	return out, nil
}

// addrOffset returns the offset and length of an address in the IP header.
func addrOffset(f Family, fl Field) (uint32, uint32) {
	if f == IPv6 {
		if fl == FieldSaddr {
			return 8, 16
		}
		return 24, 16
	}
	if fl == FieldSaddr {
		return 12, 4
	}
	return 16, 4
}

func hostU32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

// encodeValue encodes one field of a set element; fields of concatenations
// are padded to 4 bytes.
func encodeValue(t Datatype, v Value, pad bool) ([]byte, error) {
	var b []byte
	switch t {
	case TypeIPv4Addr, TypeIPv6Addr:
		if !v.Addr.IsValid() || (t == TypeIPv4Addr) != v.Addr.Is4() {
			return nil, fmt.Errorf("value %v is not a %s", v, t)
		}
		b = v.Addr.AsSlice()
	case TypeInetProto:
		b = []byte{byte(v.Num)}
	case TypeInetService:
		b = binary.BigEndian.AppendUint16(nil, uint16(v.Num))
	case TypeIndex:
		b = hostU32(v.Num)
	default:
		return nil, fmt.Errorf("no encoding for %s", t)
	}
	if pad {
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	return b, nil
}

func encodeValues(ts []Datatype, vs []Value) ([]byte, error) {
	if len(ts) != len(vs) {
		return nil, fmt.Errorf("%d values for %d fields", len(vs), len(ts))
	}
	var out []byte
	for i, t := range ts {
		b, err := encodeValue(t, vs[i], len(ts) > 1)
		if err != nil {
			return nil, err
		}
		out = append(out, b...)
	}
	return out, nil
}

// decodeValues is the inverse of encodeValues, for reading elements back.
func decodeValues(ts []Datatype, b []byte) ([]Value, error) {
	out := make([]Value, 0, len(ts))
	for _, t := range ts {
		var n int
		var v Value
		switch t {
		case TypeIPv4Addr:
			n = 4
		case TypeIPv6Addr:
			n = 16
		case TypeInetProto:
			n = 1
		case TypeInetService:
			n = 2
		case TypeIndex:
			n = 4
		}
		if len(b) < n {
			return nil, fmt.Errorf("element too short for %s", t)
		}
		switch t {
		case TypeIPv4Addr, TypeIPv6Addr:
			v.Addr, _ = netip.AddrFromSlice(b[:n])
		case TypeInetProto:
			v.Num = uint32(b[0])
		case TypeInetService:
			v.Num = uint32(binary.BigEndian.Uint16(b))
		case TypeIndex:
			v.Num = binary.NativeEndian.Uint32(b)
		}
		out = append(out, v)
		if len(ts) > 1 {
			n = (n + 3) / 4 * 4
		}
		if n > len(b) {
			n = len(b)
		}
		b = b[n:]
	}
	return out, nil
}
