package trace

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/nftproxy/nftproxy/nftrules/nft"
)

const (
	// maxDepth is the kernel's jump stack size (NFT_JUMP_STACK_SIZE).
	maxDepth = 16
	// maxStatements bounds the work of one branch, so that a goto loop in
	// a broken ruleset is reported instead of hanging.
	maxStatements = 100000
)

// state is the packet as the rules see it at a point of its traversal.
type state struct {
	src, dst netip.Addr
	proto    nft.Protocol
	dport    uint16
	mark     uint32
	dnat     bool // ct status dnat
	masq     bool
}

// frame is one chain on the call stack and the position in it.
type frame struct {
	chain      *nft.Chain
	rule, stmt int
}

// thread is one branch of the traversal: a packet state, the base chain
// being evaluated, its call stack and the steps walked so far.
type thread struct {
	pkt     state
	base    int // index in evaluator.pipeline of the current base chain
	stack   []frame
	effects []string // what the statements of the current rule did
	steps   []Step
	work    int
	outcome Outcome
}

func (th *thread) clone() *thread {
	c := *th
	c.stack = slices.Clone(th.stack)
	c.effects = slices.Clone(th.effects)
	c.steps = slices.Clone(th.steps)
	return &c
}

// evaluator runs threads over one table.
type evaluator struct {
	pkt      Packet
	table    *nft.Table
	pipeline []*nft.Chain // base chains in evaluation order
	forkAt   int          // len(steps) at the first fork; -1 if none
	done     []*thread
}

func newEvaluator(rs *nft.Ruleset, p Packet) *evaluator {
	e := &evaluator{pkt: p, forkAt: -1}
	if rs != nil {
		e.table = rs.Tables[nft.FamilyOf(p.Dst)]
	}
	if e.table == nil {
		return e
	}
	hooks := p.Path.Hooks()
	for _, c := range e.table.Chains.All() {
		if c.Base != nil && slices.Contains(hooks, c.Base.Hook) {
			e.pipeline = append(e.pipeline, c)
		}
	}
	slices.SortFunc(e.pipeline, func(a, b *nft.Chain) int {
		return cmp.Or(
			cmp.Compare(slices.Index(hooks, a.Base.Hook), slices.Index(hooks, b.Base.Hook)),
			cmp.Compare(a.Base.Priority, b.Base.Priority),
			cmp.Compare(a.Name, b.Name))
	})
	return e
}

func (e *evaluator) start() *thread {
	p := e.pkt
	return &thread{base: -1, pkt: state{src: p.Src, dst: p.Dst, proto: p.Proto, dport: p.DstPort}}
}

func (e *evaluator) family() nft.Family { return e.table.Family }

func (e *evaluator) hook(th *thread) nft.Hook { return e.pipeline[th.base].Base.Hook }

// step records a step in the current chain of th.
func (e *evaluator) step(th *thread, rule string, matched bool, effect string) {
	s := Step{Hook: e.hook(th), Depth: len(th.stack) - 1, Rule: rule, Matched: matched, Effect: effect}
	if len(th.stack) > 0 {
		s.Chain = th.stack[len(th.stack)-1].chain.Name
	}
	if s.Depth < 0 {
		s.Depth = 0
	}
	th.steps = append(th.steps, s)
}

// run evaluates th to its end, forking when a statement has several
// possible results, and appends every finished branch to e.done.
func (e *evaluator) run(th *thread) error {
	for {
		if len(th.stack) == 0 {
			if !e.nextBaseChain(th) {
				e.finish(th, Accept)
				return nil
			}
			continue
		}
		fr := &th.stack[len(th.stack)-1]
		if fr.rule >= len(fr.chain.Rules) {
			e.chainEnd(th)
			continue
		}
		rule := fr.chain.Rules[fr.rule]
		if fr.stmt >= len(rule.Stmts) {
			e.ruleDone(th, true, "")
			continue
		}
		if th.work++; th.work > maxStatements {
			return fmt.Errorf("chain %s: evaluation does not terminate (goto loop?)", fr.chain.Name)
		}
		outs, err := e.exec(th, rule, fr.stmt)
		if err != nil {
			return fmt.Errorf("chain %s, rule %q: %w", fr.chain.Name, rule.Render(e.family()), err)
		}
		if len(outs) == 1 {
			done, err := e.apply(th, outs[0])
			if done || err != nil {
				return err
			}
			continue
		}
		if e.forkAt < 0 {
			e.forkAt = len(th.steps)
		}
		for _, o := range outs {
			c := th.clone()
			done, err := e.apply(c, o)
			if err == nil && !done {
				err = e.run(c)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
}

// nextBaseChain enters the next base chain of the pipeline that applies to
// the packet; false when there is none left.
func (e *evaluator) nextBaseChain(th *thread) bool {
	for th.base+1 < len(e.pipeline) {
		th.base++
		c := e.pipeline[th.base]
		b := c.Base
		if b.Type == nft.NATChain && e.natDone(th, b.Hook) {
			// The connection has its NAT binding for this manipulation:
			// the kernel does not consult further nat chains for it.
			continue
		}
		th.stack = []frame{{chain: c}}
		e.step(th, "", true, fmt.Sprintf("enter base chain (type %s hook %s priority %d)", b.Type, b.Hook, b.Priority))
		return true
	}
	return false
}

// natDone reports whether the NAT manipulation done at hook h (destination
// NAT before routing and for local output, source NAT after) is bound.
func (e *evaluator) natDone(th *thread, h nft.Hook) bool {
	switch h {
	case nft.Prerouting, nft.Output:
		return th.pkt.dnat
	default:
		return th.pkt.masq
	}
}

// chainEnd handles falling off the end of the current chain: back to the
// caller of the jump, or the base chain's policy.
func (e *evaluator) chainEnd(th *thread) {
	if len(th.stack) == 1 {
		e.step(th, "", true, "end of base chain: policy accept")
		th.stack = nil
		return
	}
	e.step(th, "", true, "end of chain: return")
	th.stack = th.stack[:len(th.stack)-1]
}

// ruleDone records the current rule and moves to the next one.
func (e *evaluator) ruleDone(th *thread, matched bool, effect string) {
	fr := &th.stack[len(th.stack)-1]
	effects := th.effects
	if effect != "" {
		effects = append(effects, effect)
	}
	text := "matched"
	if len(effects) > 0 {
		text = strings.Join(effects, ", ")
	}
	e.step(th, fr.chain.Rules[fr.rule].Render(e.family()), matched, text)
	th.effects = nil
	fr.rule++
	fr.stmt = 0
}

func (e *evaluator) finish(th *thread, o Outcome) {
	if o == Accept && th.pkt.dnat {
		o = DNAT
	}
	th.outcome = o
	th.stack = nil
	e.done = append(e.done, th)
}

// apply carries out one result of a statement on th; done is true when the
// branch has ended.
func (e *evaluator) apply(th *thread, r result) (done bool, err error) {
	th.pkt = r.pkt
	fr := &th.stack[len(th.stack)-1]
	switch r.ctl {
	case next:
		if r.effect != "" {
			th.effects = append(th.effects, r.effect)
		}
		fr.stmt++
	case noMatch:
		th.effects = nil
		e.ruleDone(th, false, "no match: "+r.effect)
	case nat:
		e.ruleDone(th, true, r.effect)
		th.stack = nil // a NAT statement accepts the packet for this base chain
	case reject:
		e.ruleDone(th, true, r.effect)
		e.finish(th, Reject)
		return true, nil
	case verdict:
		return e.verdict(th, r.verdict, r.effect)
	default:
		return false, fmt.Errorf("internal error: control %d", r.ctl)
	}
	return false, nil
}

// verdict applies a verdict (from a verdict statement or a verdict map).
func (e *evaluator) verdict(th *thread, v nft.Verdict, effect string) (bool, error) {
	if effect == "" {
		effect = v.String()
	}
	e.ruleDone(th, true, effect)
	switch v.Kind {
	case nft.Accept:
		th.stack = nil
	case nft.Drop:
		e.finish(th, Drop)
		return true, nil
	case nft.Return:
		if len(th.stack) == 1 {
			e.step(th, "", true, "return from base chain: policy accept")
		}
		th.stack = th.stack[:len(th.stack)-1]
	case nft.Jump, nft.Goto:
		c := e.table.Chains.Get(v.Chain)
		if c == nil {
			return false, fmt.Errorf("%s to missing chain %q", v.Kind, v.Chain)
		}
		if c.Base != nil {
			return false, fmt.Errorf("%s to base chain %q", v.Kind, v.Chain)
		}
		if v.Kind == nft.Goto {
			th.stack = th.stack[:len(th.stack)-1]
		}
		if len(th.stack) >= maxDepth {
			return false, fmt.Errorf("%s %s: jump stack exceeds %d chains", v.Kind, v.Chain, maxDepth)
		}
		th.stack = append(th.stack, frame{chain: c})
	default:
		return false, fmt.Errorf("unknown verdict %q", v.Kind)
	}
	return false, nil
}
