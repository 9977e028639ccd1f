package nft

import (
	"encoding/binary"
	"fmt"

	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Rule messages (and those of regular chains) are encoded here, byte for byte as google/nftables v0.3.0's
// AddRule queues them (TestRuleMessagesMatchLibrary) but for the header
// flags (ruleMsgFlags), into one scratch
// buffer reused from rule to rule and then straight into the batch: the
// library marshals every expression into attribute lists and copies the
// message three times, which made rule marshalling the largest allocator
// of a cold sync (34 of the 151 MB of BenchmarkKernelColdApply10kx10).
// The expressions of a service chain's rule (meta, cmp, numgen, lookup,
// nat) are encoded here too; the rarer ones through the library's
// expr.Marshal, which is the same encoding.

// ruleMsgType and ruleMsgFlags are what v0.3.0's AddRule queues, except
// NLM_F_ECHO: with it the kernel builds a notification of every added rule
// at commit and queues it to the sender's socket (the library reads the
// rule's handle from it; nothing here does: rules are identified by their
// user data). A cold sync at 50k Services adds 100,000 rules, and their
// echoes were built, queued and then read and dropped by readBatchAnswers.
// nft sends NEWRULE without it too (unless run with --echo).
const (
	ruleMsgType  = netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWRULE)
	ruleMsgFlags = netlink.Request | netlink.Acknowledge | netlink.Create | unix.NLM_F_APPEND
)

// addRule appends the NEWRULE message of rule r in chain to the batch.
func (e *encoder) addRule(f Family, chain string, r Rule) error {
	fam := byte(nlFamily(f))
	b := append(e.scratch[:0], fam, unix.NFNETLINK_V0, 0, 0)
	b = attrString(b, unix.NFTA_RULE_TABLE, TableName)
	b = attrString(b, unix.NFTA_RULE_CHAIN, chain)
	b, list := nest(b, unix.NLA_F_NESTED|unix.NFTA_RULE_EXPRESSIONS)
	for _, st := range r.Stmts {
		var err error
		if b, err = appendStmt(b, f, st); err != nil {
			return fmt.Errorf("chain %s rule %q: %w", chain, r.Render(f), err)
		}
	}
	b = closeNest(b, list)
	b = appendRuleUserData(b, f, r)
	e.scratch = b
	return e.b.add(ruleMsgType, ruleMsgFlags, b)
}

// appendStmt appends the expressions of one statement, each a list
// element. The two statements of every service chain's rule are encoded
// without building google/nftables expressions first (compileStmt's
// shapes: TestRuleMessagesMatchLibrary compares them); the others are
// compiled and then encoded.
func appendStmt(b []byte, f Family, st Stmt) ([]byte, error) {
	switch st := st.(type) {
	case MatchL4Proto:
		proto := [1]byte{byte(st.Proto)}
		b, e := beginExpr(b, "meta")
		b = endExpr(appendMeta(b, expr.MetaKeyL4PROTO, false, reg1), e)
		b, e = beginExpr(b, "cmp")
		return endExpr(appendCmp(b, expr.CmpOpEq, reg1, proto[:]), e), nil
	case DNATToEndpoint:
		nfproto, protoReg := dnatRegs(f)
		b, e := beginExpr(b, "numgen")
		b = endExpr(appendNumgen(b, reg1, st.Count, unix.NFT_NG_RANDOM, st.Offset), e)
		b, e = beginExpr(b, "lookup")
		b = endExpr(appendLookup(b, reg1, reg1, true, false, st.Map, 0), e)
		b, e = beginExpr(b, "nat")
		return endExpr(appendNAT(b, expr.NATTypeDestNAT, nfproto, reg1, protoReg, false), e), nil
	}
	exprs, err := compileStmt(f, st)
	if err != nil {
		return nil, err
	}
	fam := byte(nlFamily(f))
	for _, x := range exprs {
		var elem int
		b, elem = nest(b, unix.NLA_F_NESTED|unix.NFTA_LIST_ELEM)
		if b, err = appendExpr(b, fam, x); err != nil {
			return nil, err
		}
		b = closeNest(b, elem)
	}
	return b, nil
}

// beginExpr opens a list element holding an expression named name and
// its NFTA_EXPR_DATA; endExpr closes both.
func beginExpr(b []byte, name string) ([]byte, [2]int) {
	var e [2]int
	b, e[0] = nest(b, unix.NLA_F_NESTED|unix.NFTA_LIST_ELEM)
	b = attrString(b, unix.NFTA_EXPR_NAME, name)
	b, e[1] = nest(b, unix.NLA_F_NESTED|unix.NFTA_EXPR_DATA)
	return b, e
}

func endExpr(b []byte, e [2]int) []byte { return closeNest(closeNest(b, e[1]), e[0]) }

// appendRuleUserData appends NFTA_RULE_USERDATA holding the rule's
// identity, ruleUserData(ruleIdentity(f, r)), rendering the text in place
// when it is kept as text (every rule a Builder makes but the longest):
// rendering and copying it for every rule was 5 MB of a cold sync at 10k.
func appendRuleUserData(b []byte, f Family, r Rule) []byte {
	off := len(b)
	b = append(b, 0, 0, 0, 0, udataRuleIdentity, 0) // attribute header; TLV type and length
	b = appendRender(b, f, r)
	n := len(b) - off - nlaHeaderLen - 2
	if n > maxIdentityText {
		// Deflated or hashed, as ruleIdentity decides.
		return attr(b[:off], unix.NFTA_RULE_USERDATA, ruleUserData(ruleIdentity(f, r)))
	}
	binary.NativeEndian.PutUint16(b[off:], uint16(nlaHeaderLen+2+n))
	binary.NativeEndian.PutUint16(b[off+2:], unix.NFTA_RULE_USERDATA)
	b[off+nlaHeaderLen+1] = byte(n)
	return pad(b, 2+n)
}

// appendRender appends r.Render(f).
func appendRender(b []byte, f Family, r Rule) []byte {
	for i, s := range r.Stmts {
		if i > 0 {
			b = append(b, ' ')
		}
		if ar, ok := s.(appendRenderer); ok {
			b = ar.appendRender(b, f)
		} else {
			b = append(b, s.Render(f)...)
		}
	}
	return b
}

// appendRenderer is a statement that renders without allocating: those
// of every service chain's rule.
type appendRenderer interface {
	appendRender(b []byte, f Family) []byte
}

// chainMsgType and chainMsgFlags are what v0.3.0's AddChain queues.
const (
	chainMsgType  = netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWCHAIN)
	chainMsgFlags = netlink.Request | netlink.Acknowledge | netlink.Create
)

// addRegularChain appends the NEWCHAIN message of a regular (not base)
// chain, byte for byte v0.3.0's AddChain (TestChainMessagesMatchLibrary):
// a cold sync at 10k Services adds 10,000 of them.
func (e *encoder) addRegularChain(f Family, name string) error {
	b := append(e.scratch[:0], byte(nlFamily(f)), unix.NFNETLINK_V0, 0, 0)
	b = attrString(b, unix.NFTA_CHAIN_TABLE, TableName)
	b = attrString(b, unix.NFTA_CHAIN_NAME, name)
	e.scratch = b
	return e.b.add(chainMsgType, chainMsgFlags, b)
}

// attrString appends a NUL-terminated string attribute.
func attrString(b []byte, typ uint16, s string) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(nlaHeaderLen+len(s)+1))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(append(b, s...), 0)
	return pad(b, len(s)+1)
}

// attrU32 appends a big-endian 32-bit attribute.
func attrU32(b []byte, typ uint16, v uint32) []byte {
	b = binary.NativeEndian.AppendUint16(b, nlaHeaderLen+4)
	b = binary.NativeEndian.AppendUint16(b, typ)
	return binary.BigEndian.AppendUint32(b, v)
}

// appendExpr appends one expression's NFTA_EXPR_NAME and NFTA_EXPR_DATA.
func appendExpr(b []byte, fam byte, x expr.Any) ([]byte, error) {
	var name string
	switch x := x.(type) {
	case *expr.Meta:
		name = "meta"
	case *expr.Cmp:
		name = "cmp"
	case *expr.Numgen:
		if x.Type != unix.NFT_NG_RANDOM && x.Type != unix.NFT_NG_INCREMENTAL {
			return marshalExpr(b, fam, x)
		}
		name = "numgen"
	case *expr.Lookup:
		name = "lookup"
	case *expr.NAT:
		if x.RegAddrMax != 0 || x.RegProtoMax != 0 || x.Random || x.FullyRandom || x.Persistent || x.Prefix {
			return marshalExpr(b, fam, x)
		}
		name = "nat"
	default:
		return marshalExpr(b, fam, x)
	}
	b = attrString(b, unix.NFTA_EXPR_NAME, name)
	b, data := nest(b, unix.NLA_F_NESTED|unix.NFTA_EXPR_DATA)
	switch x := x.(type) {
	case *expr.Meta:
		b = appendMeta(b, x.Key, x.SourceRegister, x.Register)
	case *expr.Cmp:
		b = appendCmp(b, x.Op, x.Register, x.Data)
	case *expr.Numgen:
		b = appendNumgen(b, x.Register, x.Modulus, x.Type, x.Offset)
	case *expr.Lookup:
		b = appendLookup(b, x.SourceRegister, x.DestRegister, x.IsDestRegSet, x.Invert, x.SetName, x.SetID)
	case *expr.NAT:
		b = appendNAT(b, x.Type, x.Family, x.RegAddrMin, x.RegProtoMin, x.Specified)
	}
	return closeNest(b, data), nil
}

// The expression data below is v0.3.0's marshalData of each, attribute
// for attribute.

func appendMeta(b []byte, key expr.MetaKey, sreg bool, reg uint32) []byte {
	b = attrU32(b, unix.NFTA_META_KEY, uint32(key))
	if sreg {
		return attrU32(b, unix.NFTA_META_SREG, reg)
	}
	return attrU32(b, unix.NFTA_META_DREG, reg)
}

func appendCmp(b []byte, op expr.CmpOp, reg uint32, data []byte) []byte {
	b = attrU32(b, unix.NFTA_CMP_SREG, reg)
	b = attrU32(b, unix.NFTA_CMP_OP, uint32(op))
	b, val := nest(b, unix.NLA_F_NESTED|unix.NFTA_CMP_DATA)
	b = attr(b, unix.NFTA_DATA_VALUE, data)
	return closeNest(b, val)
}

func appendNumgen(b []byte, reg, mod, typ, off uint32) []byte {
	b = attrU32(b, unix.NFTA_NG_DREG, reg)
	b = attrU32(b, unix.NFTA_NG_MODULUS, mod)
	b = attrU32(b, unix.NFTA_NG_TYPE, typ)
	return attrU32(b, unix.NFTA_NG_OFFSET, off)
}

func appendLookup(b []byte, sreg, dreg uint32, hasDreg, invert bool, set string, id uint32) []byte {
	if sreg != 0 {
		b = attrU32(b, unix.NFTA_LOOKUP_SREG, sreg)
	}
	if hasDreg {
		b = attrU32(b, unix.NFTA_LOOKUP_DREG, dreg)
	}
	if invert {
		b = attrU32(b, unix.NFTA_LOOKUP_FLAGS, unix.NFT_LOOKUP_F_INV)
	}
	b = attrString(b, unix.NFTA_LOOKUP_SET, set)
	return attrU32(b, unix.NFTA_LOOKUP_SET_ID, id)
}

// appendNAT covers the NAT expressions without ranges' maxima and without
// random, persistent or prefix flags (appendExpr leaves those to the
// library).
func appendNAT(b []byte, typ expr.NATType, family, regAddr, regProto uint32, specified bool) []byte {
	b = attrU32(b, unix.NFTA_NAT_TYPE, uint32(typ))
	b = attrU32(b, unix.NFTA_NAT_FAMILY, family)
	if regAddr != 0 {
		b = attrU32(b, unix.NFTA_NAT_REG_ADDR_MIN, regAddr)
	}
	if regProto != 0 {
		b = attrU32(b, unix.NFTA_NAT_REG_PROTO_MIN, regProto)
	}
	if specified {
		b = attrU32(b, unix.NFTA_NAT_FLAGS, expr.NF_NAT_RANGE_PROTO_SPECIFIED)
	}
	return b
}

// marshalExpr appends the library's encoding of an expression.
func marshalExpr(b []byte, fam byte, x expr.Any) ([]byte, error) {
	enc, err := expr.Marshal(fam, x)
	if err != nil {
		return nil, fmt.Errorf("%T: %w", x, err)
	}
	return append(b, enc...), nil
}
