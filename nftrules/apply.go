package nftrules

import (
	"errors"
	"fmt"
	"reflect"
	"unsafe"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// elementsPerMessage bounds the elements of one add/delete-elements message:
// netlink attribute lengths are 16 bits and v0.3.0 silently truncates a
// larger list (10,000 entries became 609 here); 500 is safely below.
const elementsPerMessage = 500

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
	for _, op := range tx.Ops {
		if err := queue(c, op); err != nil {
			r.dropConn() // with the messages queued so far
			return 0, fmt.Errorf("%w: %s %s: %v", errNotSent, op.Kind, op.Family, err)
		}
	}
	n := len(*queuedMessages(c))
	if err := c.Flush(); err != nil {
		r.dropConn()
		return n, fmt.Errorf("flush batch of %d messages: %w", n, err)
	}
	return n, nil
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

func queueElements(c *nftables.Conn, op Op) error {
	ns, err := nlSet(op.Family, op.Set)
	if err != nil {
		return err
	}
	for start := 0; start < len(op.Elements); start += elementsPerMessage {
		end := min(start+elementsPerMessage, len(op.Elements))
		els := make([]nftables.SetElement, 0, end-start)
		for _, e := range op.Elements[start:end] {
			ne, err := nlElement(op.Set, e)
			if err != nil {
				return err
			}
			els = append(els, ne)
		}
		if op.Kind == OpAddElements {
			err = c.SetAddElements(ns, els)
		} else {
			err = c.SetDeleteElements(ns, els)
		}
		if err != nil {
			return fmt.Errorf("set %s: %w", op.Set.Name, err)
		}
	}
	return nil
}

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

func nlUint16(b []byte) uint16 { return *(*uint16)(unsafe.Pointer(&b[0])) }

// Rule user data: nft ignores TLV types it does not know, so we keep the
// rule's identity (its nft text, or a hash of a long one) there and can
// compare live rules with built ones without decoding bytecode.
const udataRuleIdentity = 0x7e

func ruleUserData(identity string) []byte {
	b := []byte(identity)
	return append([]byte{udataRuleIdentity, byte(len(b))}, b...)
}

func identityFromUserData(u []byte) (string, bool) {
	for len(u) >= 2 {
		t, l := u[0], int(u[1])
		if 2+l > len(u) {
			return "", false
		}
		if t == udataRuleIdentity {
			return string(u[2 : 2+l]), true
		}
		u = u[2+l:]
	}
	return "", false
}
