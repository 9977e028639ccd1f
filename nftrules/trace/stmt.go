package trace

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/nft"
)

// control is how evaluation goes on after a statement.
type control int

const (
	next    control = iota // go on with the rule's next statement
	noMatch                // the rule does not match: go to the next rule
	verdict                // apply result.verdict
	nat                    // NAT set up: the packet is accepted for this base chain
	reject                 // the packet is rejected
)

// result is one possible outcome of a statement: the packet state after it
// and how evaluation continues. effect explains it for the trace.
type result struct {
	pkt     state
	ctl     control
	verdict nft.Verdict
	effect  string
}

// exec evaluates statement i of rule for th and returns its possible
// results: exactly one, except for statements that make a random choice.
//
// This switch is the tracer's whole knowledge of statement semantics: a new
// statement kind is a new case here.
func (e *evaluator) exec(th *thread, rule nft.Rule, i int) ([]result, error) {
	p := th.pkt
	f := e.family()
	match := func(ok bool, why string) ([]result, error) {
		if ok {
			return []result{{pkt: p, ctl: next}}, nil
		}
		return []result{{pkt: p, ctl: noMatch, effect: why}}, nil
	}
	act := func(effect string) ([]result, error) {
		return []result{{pkt: p, ctl: next, effect: effect}}, nil
	}

	switch s := rule.Stmts[i].(type) {
	case nft.MatchL4Proto:
		return match(p.proto == s.Proto, "l4proto is "+p.proto.String())

	case nft.MatchPrefix:
		a, err := e.addrField(p, s.Field)
		if err != nil {
			return nil, err
		}
		if nft.FamilyOf(s.Prefix.Addr()) != f {
			return nil, fmt.Errorf("prefix %s in a table of family %s", s.Prefix, f)
		}
		in := s.Prefix.Contains(a)
		why := fmt.Sprintf("%s is %s, in %s", s.Field.Render(f), a, s.Prefix)
		if !in {
			why = fmt.Sprintf("%s is %s, not in %s", s.Field.Render(f), a, s.Prefix)
		}
		return match(in != s.Negate, why)

	case nft.MatchFibSaddrLocal:
		// The tracer does not know the node's addresses: a packet's
		// source is local exactly when the node sends it (path LocalOut).
		return match(e.pkt.Path == LocalOut, "source is not local (packet not sent by the node)")

	case nft.MatchCtStateNew:
		return match(true, "") // we trace the first packet of a connection

	case nft.MatchCtStatusDNAT:
		return match(p.dnat, "connection not DNATed")

	case nft.MatchMarkUnset:
		return match(p.mark&s.Bits == 0, fmt.Sprintf("mark is 0x%x", p.mark))

	case nft.SetMarkBits:
		p.mark |= s.Bits
		return act(fmt.Sprintf("mark |= 0x%x (now 0x%x)", s.Bits, p.mark))

	case nft.ClearMarkBits:
		p.mark ^= s.Bits
		return act(fmt.Sprintf("mark ^= 0x%x (now 0x%x)", s.Bits, p.mark))

	case nft.SetLookup:
		set, key, err := e.lookupKey(p, s.Fields, s.Set)
		if err != nil {
			return nil, err
		}
		if set.IsMap() {
			return nil, fmt.Errorf("set lookup in map @%s", s.Set)
		}
		_, ok := set.Lookup(key.KeyString())
		return match(ok, fmt.Sprintf("%s not in @%s", keyText(set, key), s.Set))

	case nft.VmapLookup:
		set, key, err := e.lookupKey(p, s.Fields, s.Map)
		if err != nil {
			return nil, err
		}
		if !set.Verdict {
			return nil, fmt.Errorf("vmap lookup in @%s, which is not a verdict map", s.Map)
		}
		el, ok := set.Lookup(key.KeyString())
		if !ok {
			return match(false, fmt.Sprintf("%s not in @%s", keyText(set, key), s.Map))
		}
		if el.Verdict == nil {
			return nil, fmt.Errorf("element %s of @%s has no verdict", key.KeyString(), s.Map)
		}
		return []result{{pkt: p, ctl: verdict, verdict: *el.Verdict,
			effect: fmt.Sprintf("%s in @%s: %s", keyText(set, key), s.Map, el.Verdict)}}, nil

	case nft.DNATToEndpoint:
		return e.dnat(th, rule, i, s)

	case nft.UpdateSourceSet:
		// Session affinity memory; a trace is of a first packet, so the
		// affinity sets it looks up are taken as empty.
		return act("remember the client in @" + s.Set)

	case nft.DNATTo:
		if h := e.hook(th); h != nft.Prerouting && h != nft.Output {
			return nil, fmt.Errorf("dnat reached from hook %s", h)
		}
		if !hasL4ProtoMatch(rule.Stmts[:i], 0) {
			return nil, fmt.Errorf("dnat to a port without a preceding meta l4proto match")
		}
		p.dst, p.dport, p.dnat = s.To.Addr(), s.To.Port(), true
		return []result{{pkt: p, ctl: nat, effect: "dnat to " + s.To.String()}}, nil

	case nft.NumgenVmap:
		m := e.table.Sets.Get(s.Map)
		if m == nil || !m.Verdict {
			return nil, fmt.Errorf("numgen vmap @%s is not a verdict map", s.Map)
		}
		out := make([]result, 0, preallocated(s.Count))
		for k := s.Offset; k-s.Offset < s.Count; k++ {
			el, ok := m.Lookup(nft.Element{Key: []nft.Value{nft.NumValue(k)}}.KeyString())
			if !ok || el.Verdict == nil {
				return nil, fmt.Errorf("verdict map @%s has no entry %d (want %d..%d)", s.Map, k, s.Offset, s.Offset+s.Count-1)
			}
			out = append(out, result{pkt: p, ctl: verdict, verdict: *el.Verdict,
				effect: fmt.Sprintf("random entry %d of @%s (%d of %d): %s", k, s.Map, k-s.Offset+1, s.Count, el.Verdict)})
		}
		return out, nil

	case nft.Masquerade:
		if e.hook(th) != nft.Postrouting {
			return nil, fmt.Errorf("masquerade reached from hook %s", e.hook(th))
		}
		p.masq = true
		return []result{{pkt: p, ctl: nat, effect: "masquerade"}}, nil

	case nft.Reject:
		return []result{{pkt: p, ctl: reject, effect: "reject"}}, nil

	case nft.RejectTCPReset:
		if !hasL4ProtoMatch(rule.Stmts[:i], nft.TCP) {
			return nil, fmt.Errorf("reject with tcp reset without a preceding meta l4proto tcp match")
		}
		return []result{{pkt: p, ctl: reject, effect: "reject with tcp reset"}}, nil

	case nft.Counter:
		return act("")

	case nft.VerdictStmt:
		return []result{{pkt: p, ctl: verdict, verdict: s.Verdict}}, nil
	}
	return nil, fmt.Errorf("statement %d: unsupported statement type %T", i, rule.Stmts[i])
}

// dnat expands "dnat to numgen random mod N offset B map @m" into one
// result per entry B..B+N-1 of the endpoint map.
func (e *evaluator) dnat(th *thread, rule nft.Rule, i int, s nft.DNATToEndpoint) ([]result, error) {
	if h := e.hook(th); h != nft.Prerouting && h != nft.Output {
		return nil, fmt.Errorf("dnat reached from hook %s", h)
	}
	if !hasL4ProtoMatch(rule.Stmts[:i], 0) {
		return nil, fmt.Errorf("dnat to a port without a preceding meta l4proto match")
	}
	if s.Count == 0 {
		return nil, fmt.Errorf("dnat with numgen mod 0")
	}
	m := e.table.Sets.Get(s.Map)
	if m == nil {
		return nil, fmt.Errorf("dnat map @%s does not exist", s.Map)
	}
	want := []nft.Datatype{nft.AddrType(e.family()), nft.TypeInetService}
	if len(m.Key) != 1 || m.Key[0] != nft.TypeIndex || !slices.Equal(m.Data, want) {
		return nil, fmt.Errorf("dnat map @%s has type %v : %v, want [integer] : %v", s.Map, m.Key, m.Data, want)
	}
	out := make([]result, 0, preallocated(s.Count))
	for k := s.Offset; k-s.Offset < s.Count; k++ {
		key := nft.Element{Key: []nft.Value{nft.NumValue(k)}}.KeyString()
		el, ok := m.Lookup(key)
		if !ok {
			return nil, fmt.Errorf("endpoint map @%s has no entry %d (want %d..%d)", s.Map, k, s.Offset, s.Offset+s.Count-1)
		}
		if len(el.Data) != 2 || nft.FamilyOf(el.Data[0].Addr) != e.family() || el.Data[1].Num > 0xffff {
			return nil, fmt.Errorf("endpoint map @%s entry %d has bad value %q", s.Map, k, el.ValueString())
		}
		p := th.pkt
		p.dst, p.dport, p.dnat = el.Data[0].Addr, uint16(el.Data[1].Num), true
		to := netip.AddrPortFrom(p.dst, p.dport)
		out = append(out, result{pkt: p, ctl: nat,
			effect: fmt.Sprintf("dnat to %s (entry %d, %d of %d)", to, k, k-s.Offset+1, s.Count)})
	}
	return out, nil
}

// preallocated bounds the room made for the results of a numgen modulus:
// the modulus comes from the rule text (read back from the kernel), and a
// huge one (mod 4294967295) must end in "no entry", not in an allocation
// of hundreds of gigabytes that kills the process. Ours never exceed
// MaxEndpoints.
func preallocated(count uint32) uint32 { return min(count, nftrules.MaxEndpoints) }

// hasL4ProtoMatch reports whether stmts match the transport protocol
// (protocol proto, or any when proto is 0).
func hasL4ProtoMatch(stmts []nft.Stmt, proto nft.Protocol) bool {
	for _, s := range stmts {
		if m, ok := s.(nft.MatchL4Proto); ok && (proto == 0 || m.Proto == proto) {
			return true
		}
	}
	return false
}

// addrField returns the packet's address for an address field.
func (e *evaluator) addrField(p state, fl nft.Field) (netip.Addr, error) {
	switch fl {
	case nft.FieldSaddr:
		return p.src, nil
	case nft.FieldDaddr:
		return p.dst, nil
	}
	return netip.Addr{}, fmt.Errorf("%s is not an address field", fl.Render(e.family()))
}

// fieldValue returns the value and datatype of a field of the packet.
func (e *evaluator) fieldValue(p state, fl nft.Field) (nft.Value, nft.Datatype, error) {
	switch fl {
	case nft.FieldSaddr, nft.FieldDaddr:
		a, err := e.addrField(p, fl)
		return nft.AddrValue(a), nft.AddrType(e.family()), err
	case nft.FieldL4Proto:
		return nft.NumValue(uint32(p.proto)), nft.TypeInetProto, nil
	case nft.FieldDport:
		return nft.NumValue(uint32(p.dport)), nft.TypeInetService, nil
	}
	return nft.Value{}, 0, fmt.Errorf("unknown field %s", fl.Render(e.family()))
}

// lookupKey finds a set and builds the packet's key for it, checking that
// the fields have the set's key types.
func (e *evaluator) lookupKey(p state, fields []nft.Field, name string) (*nft.Set, nft.Element, error) {
	set := e.table.Sets.Get(name)
	if set == nil {
		return nil, nft.Element{}, fmt.Errorf("set @%s does not exist", name)
	}
	if len(fields) != len(set.Key) {
		return nil, nft.Element{}, fmt.Errorf("lookup of %d fields in @%s, whose key has %d", len(fields), name, len(set.Key))
	}
	key := nft.Element{Key: make([]nft.Value, len(fields))}
	for i, fl := range fields {
		v, t, err := e.fieldValue(p, fl)
		if err != nil {
			return nil, nft.Element{}, err
		}
		if t != set.Key[i] {
			return nil, nft.Element{}, fmt.Errorf("field %s has type %s, key field %d of @%s has type %s", fl.Render(e.family()), t, i, name, set.Key[i])
		}
		key.Key[i] = v
	}
	return set, key, nil
}

// keyText renders a lookup key as nft prints it (protocols by name).
func keyText(set *nft.Set, key nft.Element) string {
	parts := make([]string, len(key.Key))
	for i, v := range key.Key {
		parts[i] = v.String()
		if set.Key[i] == nft.TypeInetProto {
			parts[i] = nft.Protocol(v.Num).String()
		}
	}
	return strings.Join(parts, " . ")
}
