// Package trace follows a packet through a *nft.Ruleset without a
// kernel: it evaluates the base chains of the packet's family table in hook
// and priority order, following jump, goto and return as nftables does, and
// reports what happens to the first packet of a new connection: accepted
// untouched, destination-NATed (to every endpoint it could pick),
// masqueraded, rejected or dropped.
//
// It is the specification engine of nftrules' packet-flow tests and the
// back end of `--trace`. Each statement kind has its meaning in one switch
// (stmt.go); an unknown kind is an error, never a silent no-op.
package trace

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/nftproxy/nftproxy/nftrules/nft"
)

// Path is the way a packet crosses the node, which decides the hooks it
// traverses. The tracer does not route: the caller says which path to take.
type Path int

const (
	// Forwarded packets arrive on an interface and leave on another:
	// prerouting, forward, postrouting.
	Forwarded Path = iota
	// LocalOut packets are sent by a process of the node: output,
	// postrouting.
	LocalOut
	// ToLocal packets arrive on an interface for the node itself:
	// prerouting, input.
	ToLocal
)

// FromPod is a packet sent by a pod of this node: for the host it is
// forwarded.
const FromPod = Forwarded

// Hooks returns the hooks a packet on path p traverses, in order.
func (p Path) Hooks() []nft.Hook {
	switch p {
	case Forwarded:
		return []nft.Hook{nft.Prerouting, nft.Forward, nft.Postrouting}
	case LocalOut:
		return []nft.Hook{nft.Output, nft.Postrouting}
	case ToLocal:
		return []nft.Hook{nft.Prerouting, nft.Input}
	}
	return nil
}

func (p Path) String() string {
	switch p {
	case Forwarded:
		return "forwarded"
	case LocalOut:
		return "local-out"
	case ToLocal:
		return "to-local"
	}
	return fmt.Sprintf("path(%d)", int(p))
}

// Packet is the first packet of a connection.
type Packet struct {
	Src, Dst netip.Addr
	Proto    nft.Protocol
	DstPort  uint16
	Path     Path
}

func (p Packet) String() string {
	return fmt.Sprintf("%s %s -> %s (%s)", p.Proto, p.Src, netip.AddrPortFrom(p.Dst, p.DstPort), p.Path)
}

// Outcome is what happens to a packet.
type Outcome int

const (
	// Accept: the packet passes without destination NAT.
	Accept Outcome = iota
	// DNAT: the packet passes, destination-NATed to an endpoint.
	DNAT
	// Reject: the packet is answered with an ICMP error.
	Reject
	// Drop: the packet is silently discarded.
	Drop
	// Mixed: the possible DNAT destinations do not all share one fate
	// (see Result.Branches).
	Mixed
)

func (o Outcome) String() string {
	switch o {
	case Accept:
		return "accept"
	case DNAT:
		return "DNAT"
	case Reject:
		return "reject"
	case Drop:
		return "drop"
	case Mixed:
		return "mixed"
	}
	return fmt.Sprintf("outcome(%d)", int(o))
}

// Result is what a Trace found.
type Result struct {
	Packet Packet
	// Outcome is the common outcome of all branches (Mixed if they differ).
	Outcome Outcome
	// Targets is every possible destination of branches whose outcome is
	// DNAT, sorted.
	Targets []netip.AddrPort
	// Masquerade is true when some accepted branch is masqueraded; see
	// Branches for which.
	Masquerade bool
	// Steps are the rules walked before the packet's fate forked (all of
	// them when it never forked).
	Steps []Step
	// Branches holds one entry per possible fate: one per DNAT destination
	// when the packet was DNATed, else exactly one.
	Branches []Branch
}

// Branch is one possible fate of the packet, after a random choice.
type Branch struct {
	// Target is the DNAT destination; invalid when there was no DNAT.
	Target     netip.AddrPort
	Outcome    Outcome
	Masquerade bool
	// Steps are the rules walked after the fork (the common part is in
	// Result.Steps).
	Steps []Step
}

// Step is one rule evaluated, or one chain event (Rule empty).
type Step struct {
	Hook  nft.Hook
	Chain string
	// Depth is the call depth: 0 in a base chain, 1 in a chain jumped to
	// from it, and so on.
	Depth int
	// Rule is the rule's nft text; empty for chain entry and exit.
	Rule string
	// Matched reports whether every match of the rule held.
	Matched bool
	// Effect says what happened: the actions taken, the verdict, or why
	// the rule did not match.
	Effect string
}

// Trace follows p through rs. An error means the ruleset is inconsistent
// (a missing chain, set or endpoint entry, a type mismatch, an unknown
// statement) or the packet is malformed.
func Trace(rs *nft.Ruleset, p Packet) (Result, error) {
	p.Src, p.Dst = p.Src.Unmap(), p.Dst.Unmap()
	if !p.Src.IsValid() || !p.Dst.IsValid() {
		return Result{}, fmt.Errorf("trace %v: source and destination are required", p)
	}
	if p.Src.Is4() != p.Dst.Is4() {
		return Result{}, fmt.Errorf("trace %v: source and destination are of different families", p)
	}
	if p.Path.Hooks() == nil {
		return Result{}, fmt.Errorf("trace %v: unknown path", p)
	}
	e := newEvaluator(rs, p)
	if err := e.run(e.start()); err != nil {
		return Result{}, fmt.Errorf("trace %v: %w", p, err)
	}
	return e.result(), nil
}

// result folds the finished branches into a Result.
func (e *evaluator) result() Result {
	r := Result{Packet: e.pkt}
	fork := e.forkAt
	if fork < 0 {
		fork = len(e.done[0].steps)
	}
	r.Steps = e.done[0].steps[:fork]
	for i, th := range e.done {
		b := Branch{Outcome: th.outcome, Masquerade: th.pkt.masq, Steps: th.steps[fork:]}
		if th.pkt.dnat {
			b.Target = netip.AddrPortFrom(th.pkt.dst, th.pkt.dport)
		}
		r.Branches = append(r.Branches, b)
		if i == 0 {
			r.Outcome = b.Outcome
		} else if r.Outcome != b.Outcome {
			r.Outcome = Mixed
		}
		if b.Outcome == DNAT && !slices.Contains(r.Targets, b.Target) {
			r.Targets = append(r.Targets, b.Target)
		}
		if b.Masquerade && (b.Outcome == DNAT || b.Outcome == Accept) {
			r.Masquerade = true
		}
	}
	slices.SortFunc(r.Branches, func(a, b Branch) int { return a.Target.Compare(b.Target) })
	slices.SortFunc(r.Targets, netip.AddrPort.Compare)
	return r
}
