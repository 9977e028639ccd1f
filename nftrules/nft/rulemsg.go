package nft

import (
	"encoding/binary"
	"fmt"

	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Rule messages (and those of regular chains) are encoded here, byte for byte as google/nftables v0.3.0's
// AddRule queues them (TestRuleMessagesMatchLibrary), but into one scratch
// buffer reused from rule to rule and then straight into the batch: the
// library marshals every expression into attribute lists and copies the
// message three times, which made rule marshalling the largest allocator
// of a cold sync (34 of the 151 MB of BenchmarkKernelColdApply10kx10).
// The expressions of a service chain's rule (meta, cmp, numgen, lookup,
// nat) are encoded here too; the rarer ones through the library's
// expr.Marshal, which is the same encoding.

// ruleMsgType and ruleMsgFlags are what v0.3.0's AddRule queues.
const (
	ruleMsgType  = netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWRULE)
	ruleMsgFlags = netlink.Request | netlink.Acknowledge | netlink.Create | unix.NLM_F_ECHO | unix.NLM_F_APPEND
)

// addRule appends the NEWRULE message of rule r in chain to the batch.
func (e *encoder) addRule(f Family, chain string, r Rule) error {
	exprs, err := compileRule(f, r)
	if err != nil {
		return fmt.Errorf("chain %s: %w", chain, err)
	}
	fam := byte(nlFamily(f))
	b := append(e.scratch[:0], fam, unix.NFNETLINK_V0, 0, 0)
	b = attrString(b, unix.NFTA_RULE_TABLE, TableName)
	b = attrString(b, unix.NFTA_RULE_CHAIN, chain)
	b, list := nest(b, unix.NLA_F_NESTED|unix.NFTA_RULE_EXPRESSIONS)
	for _, x := range exprs {
		var elem int
		b, elem = nest(b, unix.NLA_F_NESTED|unix.NFTA_LIST_ELEM)
		if b, err = appendExpr(b, fam, x); err != nil {
			return fmt.Errorf("chain %s rule %q: %w", chain, r.Render(f), err)
		}
		b = closeNest(b, elem)
	}
	b = closeNest(b, list)
	b = appendRuleUserData(b, f, r)
	e.scratch = b
	return e.b.add(ruleMsgType, ruleMsgFlags, b)
}

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
	var data int
	switch x := x.(type) {
	case *expr.Meta:
		b = attrString(b, unix.NFTA_EXPR_NAME, "meta")
		b, data = nest(b, unix.NLA_F_NESTED|unix.NFTA_EXPR_DATA)
		b = attrU32(b, unix.NFTA_META_KEY, uint32(x.Key))
		reg := uint16(unix.NFTA_META_DREG)
		if x.SourceRegister {
			reg = unix.NFTA_META_SREG
		}
		b = attrU32(b, reg, x.Register)
	case *expr.Cmp:
		b = attrString(b, unix.NFTA_EXPR_NAME, "cmp")
		b, data = nest(b, unix.NLA_F_NESTED|unix.NFTA_EXPR_DATA)
		b = attrU32(b, unix.NFTA_CMP_SREG, x.Register)
		b = attrU32(b, unix.NFTA_CMP_OP, uint32(x.Op))
		var val int
		b, val = nest(b, unix.NLA_F_NESTED|unix.NFTA_CMP_DATA)
		b = attr(b, unix.NFTA_DATA_VALUE, x.Data)
		b = closeNest(b, val)
	case *expr.Numgen:
		if x.Type != unix.NFT_NG_RANDOM && x.Type != unix.NFT_NG_INCREMENTAL {
			return marshalExpr(b, fam, x)
		}
		b = attrString(b, unix.NFTA_EXPR_NAME, "numgen")
		b, data = nest(b, unix.NLA_F_NESTED|unix.NFTA_EXPR_DATA)
		b = attrU32(b, unix.NFTA_NG_DREG, x.Register)
		b = attrU32(b, unix.NFTA_NG_MODULUS, x.Modulus)
		b = attrU32(b, unix.NFTA_NG_TYPE, x.Type)
		b = attrU32(b, unix.NFTA_NG_OFFSET, x.Offset)
	case *expr.Lookup:
		b = attrString(b, unix.NFTA_EXPR_NAME, "lookup")
		b, data = nest(b, unix.NLA_F_NESTED|unix.NFTA_EXPR_DATA)
		if x.SourceRegister != 0 {
			b = attrU32(b, unix.NFTA_LOOKUP_SREG, x.SourceRegister)
		}
		if x.IsDestRegSet {
			b = attrU32(b, unix.NFTA_LOOKUP_DREG, x.DestRegister)
		}
		if x.Invert {
			b = attrU32(b, unix.NFTA_LOOKUP_FLAGS, unix.NFT_LOOKUP_F_INV)
		}
		b = attrString(b, unix.NFTA_LOOKUP_SET, x.SetName)
		b = attrU32(b, unix.NFTA_LOOKUP_SET_ID, x.SetID)
	case *expr.NAT:
		if x.RegAddrMax != 0 || x.RegProtoMax != 0 || x.Random || x.FullyRandom || x.Persistent || x.Prefix {
			return marshalExpr(b, fam, x)
		}
		b = attrString(b, unix.NFTA_EXPR_NAME, "nat")
		b, data = nest(b, unix.NLA_F_NESTED|unix.NFTA_EXPR_DATA)
		b = attrU32(b, unix.NFTA_NAT_TYPE, uint32(x.Type))
		b = attrU32(b, unix.NFTA_NAT_FAMILY, x.Family)
		if x.RegAddrMin != 0 {
			b = attrU32(b, unix.NFTA_NAT_REG_ADDR_MIN, x.RegAddrMin)
		}
		if x.RegProtoMin != 0 {
			b = attrU32(b, unix.NFTA_NAT_REG_PROTO_MIN, x.RegProtoMin)
		}
		if x.Specified {
			b = attrU32(b, unix.NFTA_NAT_FLAGS, expr.NF_NAT_RANGE_PROTO_SPECIFIED)
		}
	default:
		return marshalExpr(b, fam, x)
	}
	return closeNest(b, data), nil
}

// marshalExpr appends the library's encoding of an expression.
func marshalExpr(b []byte, fam byte, x expr.Any) ([]byte, error) {
	enc, err := expr.Marshal(fam, x)
	if err != nil {
		return nil, fmt.Errorf("%T: %w", x, err)
	}
	return append(b, enc...), nil
}
