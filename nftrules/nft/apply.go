package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"sync"
	"unsafe"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Netlink attribute lengths are 16 bits (struct nlattr's nla_len), and
// google/nftables v0.3.0 neither splits element lists nor checks lengths: a
// nested attribute longer than 65,535 bytes is sent with its length wrapped,
// and the kernel silently reads a prefix of it (10,000 map entries became
// 609 here) or rejects the batch, the same way at every retry.
//
// maxElemListBytes bounds the encoded NFTA_SET_ELEM_LIST_ELEMENTS attribute
// (its own 4-byte header included) of one add/delete-elements message. The
// bound is in bytes because elements differ tenfold in size: 16 bytes for an
// IPv4 set key, 168 for an IPv6 service-ips entry whose goto chain has the
// longest name we make (110 characters); 500 of those are 84,000 bytes. The
// size of each element is that of its encoding (elemmsg.go, byte for byte
// v0.3.0's); checkMessageSizes turns a larger message into an error.
// (Upstream's later fix, google/nftables#303, uses 64,512.) There is no
// count cap: the kernel has none, and fewer messages mean fewer ACKs to
// read back (at 16 bytes an element, a message holds at most 3,749).
const maxElemListBytes = 60000

// maxMessageData bounds the payload of every queued message. All of a
// message's attributes lie inside its payload, so none can have overflowed
// its 16-bit length in a payload of at most 65,535 bytes.
const maxMessageData = math.MaxUint16

// nlaHeaderLen is the size of a netlink attribute header.
const nlaHeaderLen = 4

// errNotSent marks errors found while queueing: nothing reached the kernel.
var errNotSent = errors.New("transaction not sent")

// apply queues every op of tx on one connection and sends them as one
// batch. Every queueing error is checked before Flush: v0.3.0 forgets some
// of them and would otherwise send an incomplete batch (#323).
func (r *Reconciler) apply(tx *Transaction) (int, error) {
	c, err := r.conn()
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errNotSent, err)
	}
	firstMsg, err := queueTx(c, tx)
	if err != nil {
		r.dropConn() // with the messages queued so far
		return 0, fmt.Errorf("%w: %v", errNotSent, err)
	}
	n := len(*queuedMessages(c))
	// The op a failing message (0-based) was queued for.
	opOf := func(msg int) string {
		i := sort.Search(len(firstMsg), func(i int) bool { return firstMsg[i] > msg }) - 1
		if i < 0 {
			return "?"
		}
		op := tx.Ops[i]
		return fmt.Sprintf("%s %s%s", op.Kind, op.Family, opTarget(op))
	}
	if _, err := sendBatch(c, r.opts.WrapBatchIO, opOf); err != nil {
		r.dropConn()
		if errors.Is(err, errNotSent) {
			return 0, err
		}
		return n, fmt.Errorf("batch of %d messages: %w", n, err)
	}
	return n, nil
}

// queueTx queues every op of tx and checks that no queued message can have
// overflowed a netlink attribute length. It returns the index of each op's
// first message.
func queueTx(c *nftables.Conn, tx *Transaction) ([]int, error) {
	msgs := queuedMessages(c)
	first := make([]int, len(tx.Ops))
	for i, op := range tx.Ops {
		before := len(*msgs)
		first[i] = before
		err := queue(c, op)
		if err == nil {
			err = checkMessageSizes((*msgs)[before:])
		}
		if err != nil {
			return nil, fmt.Errorf("%s %s%s: %w", op.Kind, op.Family, opTarget(op), err)
		}
	}
	return first, nil
}

// opTarget names what an op changes, for errors.
func opTarget(op Op) string {
	switch {
	case op.Set != nil:
		return " set " + op.Set.Name
	case op.Rule != nil:
		text := op.Rule.Render(op.Family)
		if len(text) > 200 {
			text = text[:200] + "…"
		}
		return fmt.Sprintf(" chain %s rule %q", op.Chain.Name, text)
	case op.Chain != nil:
		return " chain " + op.Chain.Name
	}
	return ""
}

// checkMessageSizes fails for a message whose payload is too large to be
// sure that no attribute length in it wrapped (see maxMessageData). Element
// lists are split to stay far below; a rule would need thousands of
// expressions to get there.
func checkMessageSizes(msgs []netlink.Message) error {
	for _, m := range msgs {
		if len(m.Data) > maxMessageData {
			return fmt.Errorf("netlink message (type %d) of %d bytes: its attributes may exceed the 16-bit netlink attribute length (%d bytes); not sent",
				m.Header.Type&0xff, len(m.Data), maxMessageData)
		}
	}
	return nil
}

func queue(c *nftables.Conn, op Op) error {
	f := op.Family
	switch op.Kind {
	case OpDelTable:
		c.DelTable(nlTable(f))
	case OpAddTable:
		c.AddTable(nlTable(f))
	case OpAddSet:
		ns, err := nlSet(f, op.Set)
		if err != nil {
			return err
		}
		if err := c.AddSet(ns, nil); err != nil {
			return fmt.Errorf("add set %s: %w", op.Set.Name, err)
		}
		if isIndexMap(op.Set) {
			return setLastSetUserData(c, indexMapUserData(f, op.Set))
		}
	case OpDelSet:
		ns, err := nlSet(f, op.Set)
		if err != nil {
			return err
		}
		c.DelSet(ns)
	case OpAddChain:
		c.AddChain(nlChain(f, op.Chain))
	case OpFlushChain:
		c.FlushChain(nlChain(f, op.Chain))
	case OpDelChain:
		c.DelChain(nlChain(f, op.Chain))
	case OpAddRule:
		exprs, err := compileRule(f, *op.Rule)
		if err != nil {
			return fmt.Errorf("chain %s: %w", op.Chain.Name, err)
		}
		c.AddRule(&nftables.Rule{
			Table:    nlTable(f),
			Chain:    nlChain(f, op.Chain),
			Exprs:    exprs,
			UserData: ruleUserData(ruleIdentity(f, *op.Rule)),
		})
	case OpAddElements, OpDelElements:
		return queueElements(c, op)
	default:
		return fmt.Errorf("unknown op %d", op.Kind)
	}
	return nil
}

// listBuffers hold element lists while they are encoded (one message's
// worth, reused from op to op instead of grown anew for each).
var listBuffers = sync.Pool{New: func() any { b := make([]byte, 0, maxElemListBytes+1024); return &b }}

// queueElements queues an element op as as many messages as it takes to
// keep each element list under maxElemListBytes, encoding the elements
// itself (elemmsg.go) into the messages google/nftables would queue.
func queueElements(c *nftables.Conn, op Op) error {
	ns, err := nlSet(op.Family, op.Set)
	if err != nil {
		return err
	}
	buf := listBuffers.Get().(*[]byte)
	defer listBuffers.Put(buf)
	w := &elemMsgWriter{f: op.Family, set: op.Set, ns: ns, add: op.Kind == OpAddElements, list: (*buf)[:0]}
	defer func() { *buf = w.list }()
	msgs := queuedMessages(c)
	size := nlaHeaderLen // the list attribute's own header
	for _, e := range op.Elements {
		item, err := w.encodeItem(e)
		if err != nil {
			return err
		}
		n := entryLen(item)
		if nlaHeaderLen+n > maxElemListBytes {
			return fmt.Errorf("element %s : %s encodes to %d bytes, more than one netlink message carries (%d)",
				e.KeyString(), e.ValueString(), n, maxElemListBytes-nlaHeaderLen)
		}
		if size+n > maxElemListBytes {
			*msgs = append(*msgs, w.message())
			size = nlaHeaderLen
		}
		w.appendEntry(item)
		size += n
	}
	if w.n > 0 {
		*msgs = append(*msgs, w.message())
	}
	return nil
}

// nlaLen returns the aligned size of an attribute with a payload of n bytes.
func nlaLen(n int) int { return nlaHeaderLen + (n+3)&^3 }

// queuedMessages exposes the batch google/nftables has queued. v0.3.0 has
// no way to attach the "typeof" user data nft needs to print and reload a
// map keyed by a numgen result; we add it to the queued NEWSET message
// instead. The field is pinned by the module version; TestEndpointMapTypeof
// fails if it ever changes.
func queuedMessages(c *nftables.Conn) *[]netlink.Message {
	v := reflect.ValueOf(c).Elem().FieldByName("messages")
	return (*[]netlink.Message)(unsafe.Pointer(v.UnsafeAddr()))
}

// setLastSetUserData replaces the user data of the last queued NEWSET.
func setLastSetUserData(c *nftables.Conn, udata []byte) error {
	msgs := queuedMessages(c)
	if len(*msgs) == 0 {
		return errors.New("no queued message to attach set user data to")
	}
	m := &(*msgs)[len(*msgs)-1]
	if m.Header.Type&0xff != unix.NFT_MSG_NEWSET {
		return fmt.Errorf("last queued message is type %d, not NEWSET", m.Header.Type&0xff)
	}
	const nfgenHeader = 4
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NFTA_SET_USERDATA, Data: udata}})
	if err != nil {
		return err
	}
	kept := withoutAttr(m.Data[nfgenHeader:], unix.NFTA_SET_USERDATA)
	m.Data = append(append(append([]byte{}, m.Data[:nfgenHeader]...), kept...), attrs...)
	return nil
}

// withoutAttr returns raw netlink attributes without those of type typ
// (flags bits ignored), keeping every other attribute byte for byte.
func withoutAttr(b []byte, typ uint16) []byte {
	var out []byte
	for len(b) >= 4 {
		l := int(nlUint16(b[0:2]))
		t := nlUint16(b[2:4]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		padded := (l + 3) &^ 3
		if l < 4 || padded > len(b) {
			padded = len(b)
		}
		if t != typ {
			out = append(out, b[:padded]...)
		}
		b = b[padded:]
	}
	return out
}

func nlUint16(b []byte) uint16 { return binary.NativeEndian.Uint16(b) }
