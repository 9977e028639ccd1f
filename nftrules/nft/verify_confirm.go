package nft

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// confirmChunk is how many suspects one hold of the lock re-reads, one
// request each: a sync waits milliseconds for a chunk. (256 held syncs up
// to 97 ms at 50,000 Services under 100 changes a second, load 10: about
// 0.4 ms per object there; docs/reliability.md has the figures.)
const confirmChunk = 64

// maxSuspects bounds the suspects of one step. Past it the step is left
// unchecked (VerifyUnchecked) and retried soon: the objects our syncs
// change during one read are far fewer (at 50,000 Services, 100 changes a
// second over a 20 s read touch about 2,000 chains), so only churn of
// whole namespaces gets there, and it ends.
const maxSuspects = 20000

// confirm re-reads n suspects from the kernel under the lock, a chunk at a
// time (read(i) stores object i), and compares each chunk, once the lock
// is released, with the ruleset applied while it was read (same): no Sync
// of ours can come between that read and that ruleset.
func (r *Reconciler) confirm(n int, read func(i int) error, same func(applied *Ruleset, i int) bool, res *VerifyResult) (VerifyOutcome, error) {
	for from := 0; from < n; from += confirmChunk {
		to := min(from+confirmChunk, n)
		r.mu.Lock()
		began := time.Now()
		applied := r.applied
		var err error
		for i := from; i < to && err == nil && applied != nil; i++ {
			err = read(i)
		}
		res.Held = max(res.Held, time.Since(began))
		r.mu.Unlock()
		if err != nil {
			return VerifyUnchecked, fmt.Errorf("verify: confirm %s: %w", res.Step, err)
		}
		if applied == nil {
			return VerifyDiffers, nil // a Sync failed: the next one is full
		}
		res.Confirmed += to - from
		for i := from; i < to; i++ {
			if !same(applied, i) {
				return VerifyDiffers, nil
			}
		}
	}
	return VerifySame, nil
}

// confirmSkeleton re-reads the suspect chains and set definitions.
func (r *Reconciler) confirmSkeleton(c *nftables.Conn, er *elementReader, d skeletonDiff, res *VerifyResult) (VerifyOutcome, error) {
	if d.n() > maxSuspects {
		return VerifyUnchecked, nil
	}
	chains := make([]*Chain, len(d.chains)) // nil: absent
	sets := make([]*nftables.Set, len(d.sets))
	read := func(i int) (err error) {
		if i < len(chains) {
			chains[i], err = readChain(er, d.chains[i])
			return err
		}
		i -= len(chains)
		s := d.sets[i]
		sets[i], err = c.GetSetByName(&nftables.Table{Name: TableName, Family: nlFamily(s.family)}, s.name)
		if notExist(err) {
			sets[i], err = nil, nil
		}
		return err
	}
	same := func(applied *Ruleset, i int) bool {
		if i < len(chains) {
			o := d.chains[i]
			want := applied.Tables[o.family].lookupChain(o.name)
			if want == nil || chains[i] == nil {
				return want == nil && chains[i] == nil
			}
			return sameChain(o.family, chains[i], want)
		}
		i -= len(chains)
		o := d.sets[i]
		want, have := applied.Tables[o.family].lookupSet(o.name), sets[i]
		switch {
		case want == nil || have == nil:
			return want == nil && have == nil
		case want.Dynamic:
			return have.Dynamic
		}
		return kernelShapeMatches(have, want)
	}
	return r.confirm(d.n(), read, same, res)
}

func (t *Table) lookupChain(name string) *Chain {
	if t == nil {
		return nil
	}
	return t.Chains.Get(name)
}

func (t *Table) lookupSet(name string) *Set {
	if t == nil {
		return nil
	}
	return t.Sets.Get(name)
}

// confirmElements re-reads the suspect elements of a set by key.
func (r *Reconciler) confirmElements(er *elementReader, s setRef, keys []string, res *VerifyResult) (VerifyOutcome, error) {
	vals := make([][]byte, len(keys)) // nil: absent
	read := func(i int) (err error) {
		vals[i], err = readElement(er, s, []byte(keys[i]))
		return err
	}
	var indexed *Set
	var index map[string]Element
	var vbuf [80]byte
	same := func(applied *Ruleset, i int) bool {
		want := applied.Tables[s.family].lookupSet(s.name)
		if want == nil {
			return vals[i] == nil
		}
		if want != indexed { // one walk of the set per version of it
			indexed, index = want, wantedByKey(want, keys)
		}
		e, wanted := index[keys[i]]
		if !wanted || vals[i] == nil {
			return !wanted && vals[i] == nil
		}
		return sameRawValue(want, e, vals[i], vbuf[:0])
	}
	return r.confirm(len(keys), read, same, res)
}

// wantedByKey returns the elements of want with the given encoded keys
// (reading its groups only, see diffRawKeys).
func wantedByKey(want *Set, keys []string) map[string]Element {
	of := make(map[string]bool, len(keys))
	for _, k := range keys {
		of[k] = true
	}
	found := make(map[string]Element, len(keys))
	var kbuf [80]byte
	c := &candidate{s: want}
	want.groups.each(func(_ string, g *elemGroup) {
		c.eachOf(g, func(c *candidate) {
			if k, err := c.key(kbuf[:0]); err == nil && of[string(k)] {
				found[string(k)] = c.element()
			}
		})
	})
	return found
}

func notExist(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOENT)
}

// nftRequest is a netlink request of the nftables subsystem.
func nftRequest(f Family, msg uint16, flags netlink.HeaderFlags, attrs []byte) netlink.Message {
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | msg), Flags: netlink.Request | flags},
		Data:   append([]byte{byte(nlFamily(f)), unix.NFNETLINK_V0, 0, 0}, attrs...),
	}
}

// readChain reads one chain, its hook and its rules' identities (nil, nil:
// no such chain).
func readChain(er *elementReader, o objRef) (*Chain, error) {
	names := attr(nil, unix.NFTA_CHAIN_TABLE, []byte(TableName+"\x00"))
	names = attr(names, unix.NFTA_CHAIN_NAME, []byte(o.name+"\x00"))
	msgs, err := er.nl.Execute(nftRequest(o.family, unix.NFT_MSG_GETCHAIN, 0, names))
	if notExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("chain %s %s: %w", o.family, o.name, err)
	}
	ch := &Chain{Name: o.name}
	for _, m := range msgs {
		if ch.Base, err = baseOf(m); err != nil {
			return nil, fmt.Errorf("chain %s %s: %w", o.family, o.name, err)
		}
	}
	err = er.dump(unix.NFT_MSG_GETRULE, byte(nlFamily(o.family)), []netlink.Attribute{
		{Type: unix.NFTA_RULE_TABLE, Data: []byte(TableName + "\x00")},
		{Type: unix.NFTA_RULE_CHAIN, Data: []byte(o.name + "\x00")},
	}, func(b []byte) error {
		chain, identity, err := parseRuleMessage(b)
		if err == nil && string(chain) == o.name {
			ch.Rules = append(ch.Rules, Rule{Stmts: []Stmt{Opaque{Text: identity}}})
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("rules of %s %s: %w", o.family, o.name, err)
	}
	return ch, nil
}

// baseOf decodes the hook of a NFT_MSG_NEWCHAIN message (nil: a regular
// chain).
func baseOf(m netlink.Message) (*BaseChain, error) {
	if len(m.Data) < 4 {
		return nil, fmt.Errorf("short chain message")
	}
	var base *BaseChain
	var typ ChainType
	err := walkAttrs(m.Data[4:], func(at uint16, p []byte) error {
		switch at {
		case unix.NFTA_CHAIN_TYPE:
			typ = ChainType(bytes.TrimRight(p, "\x00"))
		case unix.NFTA_CHAIN_HOOK:
			base = &BaseChain{}
			return walkAttrs(p, func(ht uint16, h []byte) error {
				if len(h) == 4 && ht == unix.NFTA_HOOK_HOOKNUM {
					base.Hook = hooksByNum[nftables.ChainHook(bigEndian.Uint32(h))]
				} else if len(h) == 4 && ht == unix.NFTA_HOOK_PRIORITY {
					base.Priority = int(int32(bigEndian.Uint32(h)))
				}
				return nil
			})
		}
		return nil
	})
	if base != nil {
		base.Type = typ
	}
	return base, err
}

// readElement reads the value of one element of a set by its encoded key
// (nil, nil: no such element; an empty value for a plain set's element).
func readElement(er *elementReader, s setRef, key []byte) ([]byte, error) {
	b := attr(nil, unix.NFTA_SET_ELEM_LIST_TABLE, []byte(TableName+"\x00"))
	b = attr(b, unix.NFTA_SET_ELEM_LIST_SET, []byte(s.name+"\x00"))
	b, list := nest(b, unix.NFTA_SET_ELEM_LIST_ELEMENTS|unix.NLA_F_NESTED)
	b, elem := nest(b, unix.NFTA_LIST_ELEM|unix.NLA_F_NESTED)
	b, k := nest(b, unix.NFTA_SET_ELEM_KEY|unix.NLA_F_NESTED)
	b = attr(b, unix.NFTA_DATA_VALUE, key)
	b = closeNest(closeNest(closeNest(b, k), elem), list)
	msgs, err := er.nl.Execute(nftRequest(s.family, unix.NFT_MSG_GETSETELEM, 0, b))
	if notExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("element of %s %s: %w", s.family, s.name, err)
	}
	val := []byte{}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			return nil, fmt.Errorf("element of %s %s: short message", s.family, s.name)
		}
		if err := eachElement(m.Data[4:], func(_, v []byte) error {
			val = append(val, v...)
			return nil
		}); err != nil {
			return nil, fmt.Errorf("element of %s %s: %w", s.family, s.name, err)
		}
	}
	return val, nil
}
