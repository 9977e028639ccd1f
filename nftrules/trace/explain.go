package trace

import (
	"fmt"
	"net/netip"
	"strings"
)

// String summarises the result in one line:
//
//	DNAT to 10.1.0.2:80, 10.1.0.3:80 (masqueraded)
//	DNAT to 10.1.0.2:80, 10.1.0.3:80 (masqueraded to 10.1.0.2:80)
//	accept
//	reject
func (r Result) String() string {
	if r.Outcome == Mixed {
		parts := make([]string, len(r.Branches))
		for i, b := range r.Branches {
			parts[i] = b.String()
		}
		return "mixed: " + strings.Join(parts, "; ")
	}
	if r.Outcome != DNAT {
		s := r.Outcome.String()
		if r.Masquerade {
			s += " (masqueraded)"
		}
		return s
	}
	s := "DNAT to " + joinAddrPorts(r.Targets)
	var masq []netip.AddrPort
	for _, b := range r.Branches {
		if b.Masquerade && b.Outcome == DNAT {
			masq = append(masq, b.Target)
		}
	}
	switch {
	case len(masq) == 0:
	case len(masq) == len(r.Branches):
		s += " (masqueraded)"
	default:
		s += " (masqueraded to " + joinAddrPorts(masq) + ")"
	}
	return s
}

// String summarises one branch: "DNAT to 10.1.0.2:80 (masqueraded)".
func (b Branch) String() string {
	s := b.Outcome.String()
	if b.Target.IsValid() {
		if b.Outcome == DNAT {
			s = "DNAT to " + b.Target.String()
		} else {
			s += " after DNAT to " + b.Target.String()
		}
	}
	if b.Masquerade {
		s += " (masqueraded)"
	}
	return s
}

// String renders a step as one line of an explanation, indented by depth.
func (s Step) String() string {
	ind := strings.Repeat("  ", s.Depth)
	if s.Rule == "" {
		return fmt.Sprintf("%s[%s] %s", ind, s.Chain, s.Effect)
	}
	return fmt.Sprintf("%s[%s] %s  => %s", ind, s.Chain, s.Rule, s.Effect)
}

// Explain renders the whole trace for a human: the packet, the rules walked
// grouped by hook, every branch after a random choice, and the verdict.
func (r Result) Explain() string {
	var b strings.Builder
	fmt.Fprintf(&b, "packet: %s\n", r.Packet)
	writeSteps(&b, r.Steps, "")
	if len(r.Branches) > 1 || len(r.Branches) == 1 && len(r.Branches[0].Steps) > 0 {
		for i, br := range r.Branches {
			fmt.Fprintf(&b, "branch %d/%d: %s\n", i+1, len(r.Branches), br)
			writeSteps(&b, br.Steps, "  ")
		}
	}
	fmt.Fprintf(&b, "result: %s\n", r)
	return b.String()
}

func writeSteps(b *strings.Builder, steps []Step, indent string) {
	hook := ""
	for _, s := range steps {
		if h := string(s.Hook); h != hook {
			hook = h
			fmt.Fprintf(b, "%shook %s:\n", indent, h)
		}
		fmt.Fprintf(b, "%s  %s\n", indent, s)
	}
}

func joinAddrPorts(aps []netip.AddrPort) string {
	parts := make([]string, len(aps))
	for i, ap := range aps {
		parts[i] = ap.String()
	}
	return strings.Join(parts, ", ")
}
