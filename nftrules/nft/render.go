package nft

import (
	"fmt"
	"strings"
	"time"
)

// Render returns the ruleset in nft syntax, as `nft list table` prints it
// (modulo element ordering and line wrapping). Its output is accepted by
// `nft -f`, and it is what --dump-format=nft prints.
func (rs *Ruleset) Render() string {
	var b strings.Builder
	for _, f := range rs.SortedFamilies() {
		rs.Tables[f].render(&b)
	}
	return b.String()
}

func (t *Table) render(b *strings.Builder) {
	fmt.Fprintf(b, "table %s %s {\n", t.Family, t.Name)
	for _, s := range t.SortedSets() {
		s.render(b, t.Family)
	}
	for _, c := range t.SortedChains() {
		c.render(b, t.Family)
	}
	b.WriteString("}\n")
}

func (s *Set) render(b *strings.Builder, f Family) {
	kind := "set"
	if s.IsMap() {
		kind = "map"
	}
	fmt.Fprintf(b, "\t%s %s {\n\t\t%s\n", kind, s.Name, s.typeDecl(f))
	if s.Dynamic {
		// As nft lists it: the kernel gives the set this size when the
		// update rule binds to it (it is created without, see nlSet).
		fmt.Fprintf(b, "\t\tsize 65535\n\t\tflags dynamic,timeout\n\t\ttimeout %s\n", nftDuration(s.Timeout))
	}
	if s.Comment != "" {
		fmt.Fprintf(b, "\t\tcomment %q\n", s.Comment)
	}
	if s.Len() > 0 {
		b.WriteString("\t\telements = { ")
		for i, e := range s.SortedElements() {
			if i > 0 {
				b.WriteString(",\n\t\t\t     ")
			}
			b.WriteString(s.renderElement(e))
		}
		b.WriteString(" }\n")
	}
	b.WriteString("\t}\n")
}

// typeDecl is the "type ..." or "typeof ..." line of a set. Endpoint maps
// are declared with typeof because their key (a numgen result) has no
// named nft type.
func (s *Set) typeDecl(f Family) string {
	if len(s.Key) == 1 && s.Key[0] == TypeIndex {
		if s.Verdict {
			return "typeof numgen random mod 1 : verdict"
		}
		return fmt.Sprintf("typeof numgen random mod 1 : %s daddr . %s dport", f, s.Proto)
	}
	decl := "type " + typeNames(s.Key)
	switch {
	case s.Verdict:
		decl += " : verdict"
	case len(s.Data) > 0:
		decl += " : " + typeNames(s.Data)
	}
	return decl
}

// nftDuration prints a duration as nft does ("3h", "1h30m", "5s").
func nftDuration(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	var b strings.Builder
	for _, u := range []struct {
		suffix string
		unit   time.Duration
	}{{"d", 24 * time.Hour}, {"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}, {"ms", time.Millisecond}} {
		if n := d / u.unit; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.suffix)
			d -= n * u.unit
		}
	}
	return b.String()
}

func typeNames(ts []Datatype) string {
	parts := make([]string, len(ts))
	for i, t := range ts {
		parts[i] = t.String()
	}
	return strings.Join(parts, " . ")
}

func (t Datatype) String() string {
	switch t {
	case TypeIPv4Addr:
		return "ipv4_addr"
	case TypeIPv6Addr:
		return "ipv6_addr"
	case TypeInetProto:
		return "inet_proto"
	case TypeInetService:
		return "inet_service"
	case TypeIndex:
		return "integer"
	}
	return fmt.Sprintf("type(%d)", int(t))
}

func (s *Set) renderElement(e Element) string {
	key := renderTyped(e.Key, s.Key)
	if !s.IsMap() {
		return key
	}
	return key + " : " + s.renderValue(e)
}

func (s *Set) renderValue(e Element) string {
	if e.Verdict != nil {
		return e.Verdict.String()
	}
	return renderTyped(e.Data, s.Data)
}

func renderTyped(vs []Value, ts []Datatype) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		if i < len(ts) && ts[i] == TypeInetProto {
			parts[i] = Protocol(v.Num).String()
		} else {
			parts[i] = v.String()
		}
	}
	return strings.Join(parts, " . ")
}

func (c *Chain) render(b *strings.Builder, f Family) {
	fmt.Fprintf(b, "\tchain %s {\n", c.Name)
	if c.Base != nil {
		fmt.Fprintf(b, "\t\ttype %s hook %s priority %d; policy accept;\n", c.Base.Type, c.Base.Hook, c.Base.Priority)
	}
	for _, r := range c.Rules {
		fmt.Fprintf(b, "\t\t%s\n", r.Render(f))
	}
	b.WriteString("\t}\n")
}
