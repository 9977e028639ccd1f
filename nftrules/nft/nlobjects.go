package nft

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// This file converts our description types to google/nftables objects and
// back. Nothing here sends anything.

func nlFamily(f Family) nftables.TableFamily {
	if f == IPv6 {
		return nftables.TableFamilyIPv6
	}
	return nftables.TableFamilyIPv4
}

func nlTable(f Family) *nftables.Table {
	return &nftables.Table{Family: nlFamily(f), Name: TableName}
}

var nlHooks = map[Hook]*nftables.ChainHook{
	Prerouting:  nftables.ChainHookPrerouting,
	Input:       nftables.ChainHookInput,
	Forward:     nftables.ChainHookForward,
	Output:      nftables.ChainHookOutput,
	Postrouting: nftables.ChainHookPostrouting,
}

func nlChain(f Family, c *Chain) *nftables.Chain {
	ch := &nftables.Chain{Name: c.Name, Table: nlTable(f)}
	if c.Base != nil {
		policy := nftables.ChainPolicyAccept
		ch.Hooknum = nlHooks[c.Base.Hook]
		ch.Priority = nftables.ChainPriorityRef(nftables.ChainPriority(c.Base.Priority))
		ch.Type = nftables.ChainType(c.Base.Type)
		ch.Policy = &policy
	}
	return ch
}

var nlDatatypes = map[Datatype]nftables.SetDatatype{
	TypeIPv4Addr:    nftables.TypeIPAddr,
	TypeIPv6Addr:    nftables.TypeIP6Addr,
	TypeInetProto:   nftables.TypeInetProto,
	TypeInetService: nftables.TypeInetService,
	TypeIndex:       nftables.TypeInteger,
}

func nlSetType(ts []Datatype) (nftables.SetDatatype, error) {
	nts := make([]nftables.SetDatatype, len(ts))
	for i, t := range ts {
		nt, ok := nlDatatypes[t]
		if !ok {
			return nftables.SetDatatype{}, fmt.Errorf("no netlink type for %s", t)
		}
		nts[i] = nt
	}
	if len(nts) == 1 {
		return nts[0], nil
	}
	return nftables.ConcatSetType(nts...)
}

func nlSet(f Family, s *Set) (*nftables.Set, error) {
	key, err := nlSetType(s.Key)
	if err != nil {
		return nil, fmt.Errorf("set %s key: %w", s.Name, err)
	}
	ns := &nftables.Set{
		Table:         nlTable(f),
		Name:          s.Name,
		KeyType:       key,
		IsMap:         s.IsMap(),
		Concatenation: len(s.Key) > 1,
		Comment:       s.Comment,
	}
	if s.Dynamic {
		// What nft (and kube-proxy, through knftables) creates for
		// "flags dynamic,timeout; timeout …": no size. The kernel sizes
		// the set when the update rule binds to it (0xffff, which is what
		// nft lists), but a size given at creation makes it allocate the
		// hash table for that many elements up front: 2 MB of kernel
		// memory per set, 2 GB and 1-6 s for 1,000 affinity endpoints
		// here, against 1 MB and 0.07 s without (docs/performance.md).
		ns.Dynamic, ns.HasTimeout, ns.Timeout = true, true, s.Timeout
	}
	switch {
	case s.Verdict:
		ns.DataType = nftables.TypeVerdict
	case len(s.Data) > 0:
		if ns.DataType, err = nlSetType(s.Data); err != nil {
			return nil, fmt.Errorf("set %s data: %w", s.Name, err)
		}
	}
	return ns, nil
}

func nlElement(s *Set, e Element) (nftables.SetElement, error) {
	key, err := encodeValues(s.Key, e.Key)
	if err != nil {
		return nftables.SetElement{}, fmt.Errorf("set %s element %s: %w", s.Name, e.KeyString(), err)
	}
	ne := nftables.SetElement{Key: key}
	switch {
	case s.Verdict:
		if e.Verdict == nil {
			return ne, fmt.Errorf("set %s element %s: verdict map element without verdict", s.Name, e.KeyString())
		}
		ne.VerdictData = compileVerdict(*e.Verdict)
	case len(s.Data) > 0:
		if ne.Val, err = encodeValues(s.Data, e.Data); err != nil {
			return ne, fmt.Errorf("set %s element %s value: %w", s.Name, e.KeyString(), err)
		}
	}
	return ne, nil
}

// isIndexMap reports whether a set is keyed by a numgen index (the endpoint
// maps and the endpoint-chain verdict maps).
func isIndexMap(s *Set) bool { return len(s.Key) == 1 && s.Key[0] == TypeIndex }

// indexMapUserData returns the set user data nft writes for
//
//	typeof numgen random mod 1 : <f> daddr . <proto> dport
//	typeof numgen random mod 1 : verdict
//
// google/nftables v0.3.0 cannot express typeof, and without it nft prints the
// integer key as "type integer", which it then refuses to load. Layout
// (libnftnl udata TLVs): key/data byte order, then the typeof expressions
// with their nft-internal descriptions (payload protocol ids and template
// fields as nft 1.0.6 numbers them).
func indexMapUserData(f Family, s *Set) []byte {
	const (
		udataKeyByteorder  = 0
		udataDataByteorder = 1
		udataKeyTypeof     = 3
		udataDataTypeof    = 4
		udataDataInterval  = 6
		typeofExpr         = 0
		typeofData         = 1
		exprNumgen         = 23
		exprConcat         = 13
		exprPayload        = 7
	)
	u32 := func(t userdata.Type, v uint32) []byte { return userdata.AppendUint32(nil, t, v) }
	nest := func(t userdata.Type, parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return userdata.Append(nil, t, b)
	}
	// payload description ids and template fields in nft's proto tables.
	addrDesc, addrField := uint32(12), uint32(12) // proto_ip, daddr
	if f == IPv6 {
		addrDesc, addrField = 13, 9 // proto_ip6, daddr
	}
	portDesc := map[Protocol]uint32{TCP: 8, UDP: 6, SCTP: 10}[s.Proto]
	payload := func(idx userdata.Type, desc, field uint32) []byte {
		return nest(idx, u32(typeofExpr, exprPayload), nest(typeofData, u32(0, desc), u32(1, field)))
	}
	dataTypeof := nest(udataDataTypeof, u32(typeofExpr, exprConcat),
		nest(typeofData, payload(0, addrDesc, addrField), payload(1, portDesc, 2)))
	if s.Verdict {
		dataTypeof = nest(udataDataTypeof, u32(typeofExpr, 1), nest(typeofData))
	}
	return concatBytes(
		u32(udataKeyByteorder, 1), // host endian: numgen output
		u32(udataDataByteorder, 0),
		nest(udataKeyTypeof, u32(typeofExpr, exprNumgen),
			nest(typeofData, u32(0, unix.NFT_NG_RANDOM), u32(1, 1), u32(2, 0))),
		dataTypeof,
		u32(udataDataInterval, 0),
	)
}

func concatBytes(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}
