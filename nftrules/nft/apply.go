package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

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

// apply encodes every op of tx and sends them as one batch on the
// reconciler's socket. Every encoding error is checked before anything is
// sent: v0.3.0's Flush forgets some of them and would otherwise send an
// incomplete batch (#323). It adds its encoding and sending time to t.
func (r *Reconciler) apply(tx *Transaction, t *SyncTiming) (int, error) {
	objects := tx.Objects() // before encodeTx spends the element lists
	began := time.Now()
	batch, firstMsg, err := encodeTx(tx)
	t.Encode += time.Since(began)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errNotSent, err)
	}
	n := batch.messages()
	if n == 0 {
		return 0, nil
	}
	nl, err := r.batchConn()
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errNotSent, err)
	}
	opOf := func(msg int) string {
		if i := opAt(firstMsg, msg); i >= 0 {
			op := tx.Ops[i]
			return fmt.Sprintf("%s %s%s", op.Kind, op.Family, opTarget(op))
		}
		return "?"
	}
	mute := r.own.mute(nl, objects) // mute.go
	began = time.Now()
	err = sendBatch(nl, batch, r.opts.WrapBatchIO, opOf)
	t.Send += time.Since(began)
	mute.unmute(nl, err)
	if err != nil {
		r.dropConn()
		if errors.Is(err, errNotSent) {
			return 0, err
		}
		return n, fmt.Errorf("batch of %d messages: %w", n, err)
	}
	return n, nil
}

// encodeTx encodes every op of tx into one batch; no message of it can
// have overflowed a netlink attribute length (batchBuf.add). It returns
// the batch and the index of each op's first message.
//
// It spends tx: each op's element list is dropped once its elements are in
// the batch, so that a cold sync holds the transaction about once (the
// lists shrink as the batch grows) rather than as lists and batch at once.
// What errors name of an op (kind, family, set, chain, rule) stays.
func encodeTx(tx *Transaction) (*batchBuf, []int, error) {
	e, err := newEncoder()
	if err != nil {
		return nil, nil, err
	}
	first := make([]int, len(tx.Ops))
	for i, op := range tx.Ops {
		first[i] = e.next()
		if err := encodeOp(e, op); err != nil {
			return nil, nil, fmt.Errorf("%s %s%s: %w", op.Kind, op.Family, opTarget(op), err)
		}
		tx.Ops[i].Elements, tx.Ops[i].packed = nil, nil
	}
	if err := e.flush(); err != nil {
		// A library message too large for the batch: name its op.
		op := tx.Ops[opAt(first, e.next()-e.pending)]
		return nil, nil, fmt.Errorf("%s %s%s: %w", op.Kind, op.Family, opTarget(op), err)
	}
	return e.b, first, nil
}

// opAt returns the index of the op whose messages include message msg,
// given each op's first message; -1 if none.
func opAt(first []int, msg int) int {
	return sort.Search(len(first), func(i int) bool { return first[i] > msg }) - 1
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

// encodeOp encodes op into e: one message queued by the library, or ours
// for rules, regular chains and elements. A message too large to be sure
// that no attribute length in it wrapped (see maxMessageData) is an error
// (element lists are split to stay far below; a rule would need thousands
// of expressions to get there).
func encodeOp(e *encoder, op Op) error {
	ours := op.Kind == OpAddElements || op.Kind == OpDelElements || op.Kind == OpAddRule || (op.Kind == OpAddChain && op.Chain.Base == nil)
	if ours {
		if err := e.flush(); err != nil { // the library's messages come first
			return err
		}
		switch op.Kind {
		case OpAddRule:
			return e.addRule(op.Family, op.Chain.Name, *op.Rule)
		case OpAddChain:
			return e.addRegularChain(op.Family, op.Chain.Name)
		}
		return encodeElements(e, op)
	}
	c := e.c
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
		if err := e.queued(); err != nil {
			return err
		}
		if isIndexMap(op.Set) {
			if err := e.flush(); err != nil {
				return err
			}
			return setLastSetUserData(e, indexMapUserData(f, op.Set))
		}
		return nil
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
	default:
		return fmt.Errorf("unknown op %d", op.Kind)
	}
	return e.queued()
}

// listBuffers hold element lists while they are encoded (one message's
// worth, reused from op to op instead of grown anew for each).
var listBuffers = sync.Pool{New: func() any { b := make([]byte, 0, maxElemListBytes+1024); return &b }}

// encodeElements encodes an element op into as many messages as it takes
// to keep each element list under maxElemListBytes, encoding the elements
// itself (elemmsg.go) into the messages google/nftables would queue.
func encodeElements(e *encoder, op Op) error {
	ns, err := nlSet(op.Family, op.Set)
	if err != nil {
		return err
	}
	buf := listBuffers.Get().(*[]byte)
	defer listBuffers.Put(buf)
	w := &elemMsgWriter{f: op.Family, set: op.Set, ns: ns, add: op.Kind == OpAddElements, list: (*buf)[:0]}
	defer func() { *buf = w.list }()
	size := nlaHeaderLen // the list attribute's own header
	put := func(item []byte) error {
		n := entryLen(item)
		if nlaHeaderLen+n > maxElemListBytes {
			return elementTooLarge(n)
		}
		if size+n > maxElemListBytes {
			if err := w.flushTo(e.b); err != nil {
				return err
			}
			size = nlaHeaderLen
		}
		w.appendEntry(item)
		size += n
		return nil
	}
	listed := unpackedGroup(op.Elements)
	for _, g := range append([]*elemGroup{listed}, op.packed...) {
		if err := g.encode(w, put); err != nil {
			return err
		}
	}
	if w.n > 0 {
		return w.flushTo(e.b)
	}
	return nil
}

// elementTooLarge is the size of an element that does not fit in a
// message; nameElement says which element it was.
type elementTooLarge int

func (n elementTooLarge) Error() string {
	return fmt.Sprintf("encodes to %d bytes, more than one netlink message carries (%d)", int(n), maxElemListBytes-nlaHeaderLen)
}

func nameElement(err error, el Element) error {
	if n, ok := err.(elementTooLarge); ok {
		return fmt.Errorf("element %s : %s %w", el.KeyString(), el.ValueString(), n)
	}
	return err
}

// nlaLen returns the aligned size of an attribute with a payload of n bytes.
func nlaLen(n int) int { return nlaHeaderLen + (n+3)&^3 }

// setLastSetUserData replaces the user data of the last NEWSET encoded.
// v0.3.0 has no way to attach the "typeof" user data nft needs to print
// and reload a map keyed by a numgen result; we add it to the encoded
// message instead (TestEndpointMapTypeof).
func setLastSetUserData(e *encoder, udata []byte) error {
	typ, flags, data, ok := e.b.lastMessage()
	if !ok {
		return errors.New("no encoded message to attach set user data to")
	}
	if typ&0xff != unix.NFT_MSG_NEWSET {
		return fmt.Errorf("last encoded message is type %d, not NEWSET", typ&0xff)
	}
	const nfgenHeader = 4
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NFTA_SET_USERDATA, Data: udata}})
	if err != nil {
		return err
	}
	kept := withoutAttr(data[nfgenHeader:], unix.NFTA_SET_USERDATA)
	m := append(append(append([]byte{}, data[:nfgenHeader]...), kept...), attrs...)
	e.b.dropLast()
	return e.b.add(typ, flags, m)
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
