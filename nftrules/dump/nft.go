package dump

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/nftproxy/nftproxy/nftrules/nft"
)

// RenderNFT renders a live ruleset in nft syntax (nft -f accepts it): our
// tables as `nft list table` shows them, modulo element order, priority
// spelling and line wrapping.
//
// What the kernel holds is not trusted: anyone with CAP_NET_ADMIN can
// plant a rule in our chains with user data of their choosing, or a chain
// or set with a name that is nft syntax. So every rule is parsed back into
// our statements (ParseRule, which accepts only our vocabulary and nft
// identifiers as names) and printed from them, never as the stored text;
// a rule that does not parse (not nftproxy's, or its text was not
// recorded) becomes a comment, escaped so it stays on one line. A chain or
// set whose name is not an nft identifier, and map elements that jump to
// such a chain, are left out with a comment. A set of a type nftproxy does
// not use is left out silently (the default view reports it).
func RenderNFT(rs *nft.Ruleset) string {
	out := nft.NewRuleset()
	var notes []string
	note := func(format string, args ...any) { notes = append(notes, "# "+fmt.Sprintf(format, args...)+"\n") }
	for _, f := range rs.SortedFamilies() {
		src, dst := rs.Tables[f], out.Table(f)
		dst.Name = src.Name
		for _, s := range src.SortedSets() {
			switch {
			case len(s.Key) == 0: // a set of a shape we do not know cannot be rendered
			case !nft.IsName(s.Name):
				note("table %s %s: set %s left out: its name is not an nft identifier", f, src.Name, quote(s.Name))
			default:
				dst.Sets.Put(s.Name, safeElements(s, func(e nft.Element) {
					note("table %s %s: set %s element %s left out: its verdict names no nft identifier", f, src.Name, s.Name, quote(e.KeyString()))
				}))
			}
		}
		for _, c := range src.SortedChains() {
			if !nft.IsName(c.Name) || (c.Base != nil && (!nft.IsName(string(c.Base.Type)) || !nft.IsName(string(c.Base.Hook)))) {
				note("table %s %s: chain %s left out: its name or hook is not nft syntax", f, src.Name, quote(c.Name))
				continue
			}
			nc := &nft.Chain{Name: c.Name, Base: c.Base, Rules: make([]nft.Rule, len(c.Rules))}
			for i, r := range c.Rules {
				pr, err := parseRule(f, r)
				if err != nil {
					pr = nft.Rule{Stmts: []nft.Stmt{nft.Opaque{Text: "# " + quote(r.Render(f))}}}
				}
				nc.Rules[i] = pr
			}
			dst.Chains.Put(c.Name, nc)
		}
	}
	return strings.Join(notes, "") + out.Render()
}

// safeElements returns s, or a copy without the elements whose verdict
// names a chain that is not an nft identifier (reported to drop).
func safeElements(s *nft.Set, drop func(nft.Element)) *nft.Set {
	bad := func(e nft.Element) bool {
		return e.Verdict != nil && e.Verdict.Chain != "" && !nft.IsName(e.Verdict.Chain)
	}
	if !s.Verdict {
		return s
	}
	found := false
	s.Each(func(e nft.Element) { found = found || bad(e) }) // no sorting: the usual answer is no
	if !found {
		return s
	}
	c := &nft.Set{Name: s.Name, Key: s.Key, Data: s.Data, Verdict: s.Verdict, Proto: s.Proto, Comment: s.Comment, Dynamic: s.Dynamic, Timeout: s.Timeout}
	for _, e := range s.SortedElements() {
		if bad(e) {
			drop(e)
		} else {
			c.Put(e)
		}
	}
	return c
}

// quote returns text as is when it is printable ASCII, else Go-quoted
// (control characters, newlines included, and non-ASCII escaped): what is
// printed inside a comment stays on its line.
func quote(text string) string {
	for i := 0; i < len(text); i++ {
		if text[i] < 0x20 || text[i] > 0x7e {
			return strconv.QuoteToASCII(text)
		}
	}
	return text
}
