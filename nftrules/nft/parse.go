package nft

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ParseRule turns the nft text of one of our rules (what Rule.Render
// produced and what the kernel hands back in the rule's user data) into
// typed statements again. It is the inverse of Render for every statement
// kind of stmt.go except Opaque: ParseRule(f, r.Render(f)) equals r.
//
// It only knows our own vocabulary, not nft's grammar: anything else (a
// rule someone added to our chains, a rule of a newer nftproxy) is an error.
func ParseRule(f Family, text string) (Rule, error) {
	if f != IPv4 && f != IPv6 {
		return Rule{}, fmt.Errorf("parse rule %q: unknown family %q", text, f)
	}
	if strings.HasPrefix(text, HashedIdentityPrefix) {
		return Rule{}, fmt.Errorf("rule text not recorded in the kernel: too long for the rule's user data even deflated, only its hash %s is", text)
	}
	p := &ruleParser{f: f, toks: strings.Fields(text)}
	var r Rule
	for !p.done() {
		start := p.i
		s, err := p.stmt()
		if err != nil {
			return Rule{}, fmt.Errorf("parse rule %q at word %d (%q): %w", text, start+1, strings.Join(p.toks[start:], " "), err)
		}
		r.Stmts = append(r.Stmts, s)
	}
	if len(r.Stmts) == 0 {
		return Rule{}, fmt.Errorf("parse rule %q: empty rule", text)
	}
	return r, nil
}

// ParseRuleset returns a copy of a live ruleset (as ReadLive returns it,
// rules as Opaque text) whose rules are typed statements, ready for the
// packet tracer. Sets are shared with rs, not copied. Rules that cannot be
// parsed (not written by nftproxy) are kept as Opaque and reported, all of
// them, in the returned error; the ruleset is returned either way.
func ParseRuleset(rs *Ruleset) (*Ruleset, error) {
	out := NewRuleset()
	var errs []error
	for _, f := range rs.SortedFamilies() {
		src := rs.Tables[f]
		dst := out.Table(f)
		dst.Name = src.Name
		for name, s := range src.Sets.All() {
			dst.Sets.Put(name, s)
		}
		for _, c := range src.SortedChains() {
			nc := &Chain{Name: c.Name, Base: c.Base, Rules: make([]Rule, 0, len(c.Rules))}
			for i, r := range c.Rules {
				pr, err := parseLiveRule(f, r)
				if err != nil {
					errs = append(errs, fmt.Errorf("table %s %s chain %s rule %d: %w", f, src.Name, c.Name, i+1, err))
					pr = r
				}
				nc.Rules = append(nc.Rules, pr)
			}
			dst.Chains.Put(c.Name, nc)
		}
	}
	return out, errors.Join(errs...)
}

// parseLiveRule parses a rule read back from the kernel (a single Opaque
// statement); an already typed rule is returned as is.
func parseLiveRule(f Family, r Rule) (Rule, error) {
	if len(r.Stmts) != 1 {
		return r, nil
	}
	o, ok := r.Stmts[0].(Opaque)
	if !ok {
		return r, nil
	}
	return ParseRule(f, o.Text)
}

type ruleParser struct {
	f    Family
	toks []string
	i    int
}

func (p *ruleParser) done() bool { return p.i >= len(p.toks) }

// peek returns the token k positions ahead ("" past the end).
func (p *ruleParser) peek(k int) string {
	if p.i+k < len(p.toks) {
		return p.toks[p.i+k]
	}
	return ""
}

// accept consumes the given tokens if they come next.
func (p *ruleParser) accept(words ...string) bool {
	for k, w := range words {
		if p.peek(k) != w {
			return false
		}
	}
	p.i += len(words)
	return true
}

func (p *ruleParser) next() (string, error) {
	if p.done() {
		return "", errors.New("unexpected end of rule")
	}
	t := p.toks[p.i]
	p.i++
	return t, nil
}

func (p *ruleParser) expect(words ...string) error {
	if !p.accept(words...) {
		return fmt.Errorf("expected %q", strings.Join(words, " "))
	}
	return nil
}

func (p *ruleParser) stmt() (Stmt, error) {
	switch {
	case p.accept("ct", "state", "new"):
		return MatchCtStateNew{}, nil
	case p.accept("ct", "status", "dnat"):
		return MatchCtStatusDNAT{}, nil
	case p.accept("fib", "saddr", "type", "local"):
		return MatchFibSaddrLocal{}, nil
	case p.accept("meta", "mark", "&"):
		bits, err := p.hex32()
		if err != nil {
			return nil, err
		}
		if err := p.expect("==", "0x00000000"); err != nil {
			return nil, err
		}
		return MatchMarkUnset{Bits: bits}, nil
	case p.accept("meta", "mark", "set", "meta", "mark"):
		op, err := p.next()
		if err != nil {
			return nil, err
		}
		bits, err := p.hex32()
		if err != nil {
			return nil, err
		}
		switch op {
		case "|":
			return SetMarkBits{Bits: bits}, nil
		case "^":
			return ClearMarkBits{Bits: bits}, nil
		}
		return nil, fmt.Errorf("unknown mark operator %q", op)
	case p.peek(0) == "meta" && p.peek(1) == "l4proto" && !isFieldContinuation(p.peek(2)):
		p.i += 2
		proto, err := p.protocol()
		if err != nil {
			return nil, err
		}
		return MatchL4Proto{Proto: proto}, nil
	case p.accept("dnat", string(p.f), "to", "numgen", "random", "mod"):
		return p.dnat()
	case p.accept("dnat", "to"):
		tok, err := p.next()
		if err != nil {
			return nil, err
		}
		to, err := netip.ParseAddrPort(tok)
		if err != nil {
			return nil, fmt.Errorf("dnat target: %w", err)
		}
		return DNATTo{To: to}, nil
	case p.accept("update"):
		set, err := p.setRef()
		if err != nil {
			return nil, err
		}
		if err := p.expect("{", string(p.f), "saddr", "}"); err != nil {
			return nil, err
		}
		return UpdateSourceSet{Set: set}, nil
	case p.accept("numgen", "random", "mod"):
		return p.numgenVmap()
	case p.accept("masquerade", "fully-random"):
		return Masquerade{}, nil
	case p.accept("reject", "with", "tcp", "reset"):
		return RejectTCPReset{}, nil
	case p.accept("reject"):
		return Reject{}, nil
	case p.accept("counter"):
		return Counter{}, nil
	case p.accept("accept"):
		return VerdictStmt{Verdict{Kind: Accept}}, nil
	case p.accept("drop"):
		return DropStmt, nil
	case p.accept("return"):
		return ReturnStmt, nil
	case p.peek(0) == "jump" || p.peek(0) == "goto":
		kind := VerdictKind(p.toks[p.i])
		p.i++
		chain, err := p.next()
		if err != nil {
			return nil, err
		}
		if !IsName(chain) {
			return nil, fmt.Errorf("%q is not a chain name", chain)
		}
		return VerdictStmt{Verdict{Kind: kind, Chain: chain}}, nil
	}
	if fl, ok := p.field(); ok {
		return p.fieldStmt(fl)
	}
	return nil, errors.New("unknown statement")
}

// isFieldContinuation reports whether the token after "meta l4proto" makes
// it a field of a lookup key rather than a protocol match.
func isFieldContinuation(tok string) bool {
	return tok == "." || tok == "vmap" || strings.HasPrefix(tok, "@")
}

// field consumes one field spelling of our family.
func (p *ruleParser) field() (Field, bool) {
	for _, fl := range []Field{FieldSaddr, FieldDaddr, FieldL4Proto, FieldDport} {
		if p.accept(strings.Fields(fl.Render(p.f))...) {
			return fl, true
		}
	}
	return 0, false
}

// fieldStmt parses what follows a first field: more fields of a
// concatenation, then a set lookup or a vmap; or, for an address field
// alone, a prefix match.
func (p *ruleParser) fieldStmt(first Field) (Stmt, error) {
	fields := []Field{first}
	for p.accept(".") {
		fl, ok := p.field()
		if !ok {
			return nil, fmt.Errorf("expected a %s field after \".\"", p.f)
		}
		fields = append(fields, fl)
	}
	switch tok := p.peek(0); {
	case tok == "vmap":
		p.i++
		name, err := p.setRef()
		if err != nil {
			return nil, err
		}
		return VmapLookup{Fields: fields, Map: name}, nil
	case strings.HasPrefix(tok, "@"):
		name, err := p.setRef()
		if err != nil {
			return nil, err
		}
		return SetLookup{Fields: fields, Set: name}, nil
	}
	if len(fields) != 1 || (first != FieldSaddr && first != FieldDaddr) {
		return nil, errors.New("expected a set lookup or a vmap")
	}
	neg := p.accept("!=")
	tok, err := p.next()
	if err != nil {
		return nil, err
	}
	var pfx netip.Prefix
	if strings.Contains(tok, "/") {
		pfx, err = netip.ParsePrefix(tok)
	} else {
		var a netip.Addr
		a, err = netip.ParseAddr(tok)
		pfx = netip.PrefixFrom(a, a.BitLen())
	}
	if err != nil {
		return nil, fmt.Errorf("address or prefix: %w", err)
	}
	if FamilyOf(pfx.Addr()) != p.f || pfx.Addr().Is4In6() {
		return nil, fmt.Errorf("prefix %s in a table of family %s", tok, p.f)
	}
	return MatchPrefix{Field: first, Negate: neg, Prefix: pfx}, nil
}

func (p *ruleParser) setRef() (string, error) {
	tok, err := p.next()
	if err != nil {
		return "", err
	}
	name, ok := strings.CutPrefix(tok, "@")
	if !ok || !IsName(name) {
		return "", fmt.Errorf("expected @set, got %q", tok)
	}
	return name, nil
}

// dnat parses the rest of "dnat ip to numgen random mod N [offset B] map @M".
func (p *ruleParser) dnat() (Stmt, error) {
	var s DNATToEndpoint
	n, err := p.uint32()
	if err != nil {
		return nil, fmt.Errorf("numgen modulus: %w", err)
	}
	s.Count = n
	if p.accept("offset") {
		if s.Offset, err = p.uint32(); err != nil {
			return nil, fmt.Errorf("numgen offset: %w", err)
		}
		if s.Offset == 0 {
			return nil, errors.New("offset 0 is never printed")
		}
	}
	if err := p.expect("map"); err != nil {
		return nil, err
	}
	if s.Map, err = p.setRef(); err != nil {
		return nil, err
	}
	return s, nil
}

func (p *ruleParser) uint32() (uint32, error) {
	tok, err := p.next()
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(tok, 10, 32)
	if err != nil {
		return 0, err
	}
	return uint32(n), nil
}

// hex32 parses a mark value as Render prints it: 0x and 8 hex digits.
func (p *ruleParser) hex32() (uint32, error) {
	tok, err := p.next()
	if err != nil {
		return 0, err
	}
	digits, ok := strings.CutPrefix(tok, "0x")
	if !ok || len(digits) != 8 {
		return 0, fmt.Errorf("expected 0x and 8 hex digits, got %q", tok)
	}
	n, err := strconv.ParseUint(digits, 16, 32)
	if err != nil {
		return 0, err
	}
	return uint32(n), nil
}

func (p *ruleParser) protocol() (Protocol, error) {
	tok, err := p.next()
	if err != nil {
		return 0, err
	}
	return ParseProtocol(tok)
}

// ParseProtocol parses a protocol as Protocol.String prints it ("tcp",
// "udp", "sctp", or a number); names are case-insensitive.
func ParseProtocol(s string) (Protocol, error) {
	for _, p := range Protocols {
		if strings.EqualFold(s, p.String()) {
			return p, nil
		}
	}
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil {
		return 0, fmt.Errorf("unknown protocol %q", s)
	}
	return Protocol(n), nil
}

// numgenVmap parses the rest of "numgen random mod N [offset B] vmap @M".
func (p *ruleParser) numgenVmap() (Stmt, error) {
	var s NumgenVmap
	var err error
	if s.Count, err = p.uint32(); err != nil {
		return nil, fmt.Errorf("numgen modulus: %w", err)
	}
	if p.accept("offset") {
		if s.Offset, err = p.uint32(); err != nil {
			return nil, fmt.Errorf("numgen offset: %w", err)
		}
	}
	if err := p.expect("vmap"); err != nil {
		return nil, err
	}
	if s.Map, err = p.setRef(); err != nil {
		return nil, err
	}
	return s, nil
}
