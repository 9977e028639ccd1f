package nftrules

import (
	"hash/maphash"
	"reflect"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/types"

	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// Build returns the ruleset for a desired state. It is pure and
// deterministic: the same State always yields the same Ruleset.
func Build(st *model.State) *nft.Ruleset { return NewBuilder().Build(st) }

// Builder builds rulesets incrementally. It remembers the fragment each
// service port produced, keyed by the *model.ServicePort, so a new State
// that shares most ServicePort values with the previous one costs only the
// changed service ports. The proxier treats ServicePorts as immutable: a
// changed service port is a new value. The result is always equal to
// Build(st).
//
// Successive rulesets share unchanged chains and element groups; they must
// not be modified by callers.
type Builder struct {
	last   *nft.Ruleset
	config model.State // st without Services: what every fragment depends on
	// frags holds the memos of the service ports by a hash of their
	// Service's name (svcKey; Services whose hashes collide share a
	// list): one map serves lookups by service port and the Builds that
	// look at changed Services only (model.Delta). A map by service port
	// and another by Service cost ~200 bytes per service port; one keyed
	// by the names themselves (32 bytes) ~140; this one ~100.
	frags map[uint64][]memo
	seed  maphash.Seed
	hash  func(types.NamespacedName) uint64 // svcKey's hash, when not the seed's (tests)
	gen   uint64                            // full Build count, to find service ports that are gone
	built uint64                            // the Gen of the State built last
}

// memo is what one service port produced (per family, in the order of
// nft.Families), and when it was last seen. It is kept for every service
// port between syncs: a small value, not a map.
type memo struct {
	sp       *model.ServicePort
	gen      uint64
	byFamily [2]placed
}

// svcKey is the key of a Service's memos in frags.
func (b *Builder) svcKey(k types.NamespacedName) uint64 {
	if b.hash != nil {
		return b.hash(k)
	}
	return maphash.Comparable(b.seed, k)
}

// memoOf returns the memo of sp, nil when sp is new to the Builder.
func (b *Builder) memoOf(sp *model.ServicePort) *memo {
	ms := b.frags[b.svcKey(sp.Name.NamespacedName)]
	for i := range ms {
		if ms[i].sp == sp {
			return &ms[i]
		}
	}
	return nil
}

// familyIndex is f's place in memo.byFamily.
func familyIndex(f nft.Family) int {
	if f == nft.IPv6 {
		return 1
	}
	return 0
}

// NewBuilder returns a Builder with nothing built yet.
func NewBuilder() *Builder { return &Builder{} }

// Build returns the ruleset of st, derived from the previous one (see
// nft.Derivation): Diff against the previous one looks only at what
// changed. When st.Delta names the State built last (by its Gen), only
// the Services it names are looked at: a change then costs the same among
// 1,000 or 50,000 Services.
func (b *Builder) Build(st *model.State) *nft.Ruleset {
	cfg := *st
	cfg.Services, cfg.List, cfg.Gen, cfg.Delta = nil, nil, 0, nil
	incremental := st.Delta != nil && b.built != 0 && st.Delta.Since == b.built
	if b.last == nil || !reflect.DeepEqual(cfg, b.config) {
		b.reset(cfg)
		incremental = false
	}
	d := b.last.Derive()
	if incremental {
		b.buildChanged(d, st)
	} else {
		b.buildAll(d, st)
	}
	b.built = st.Gen
	b.last = d.Ruleset()
	return b.last
}

// buildAll finds the added and removed service ports among all of st's.
func (b *Builder) buildAll(d *nft.Derivation, st *model.State) {
	b.gen++
	var added []*model.ServicePort
	for sp := range st.All() {
		if m := b.memoOf(sp); m != nil {
			m.gen = b.gen
		} else {
			added = append(added, sp)
		}
	}
	var gone []*model.ServicePort // not removed while ranging: remove edits the lists
	for _, ms := range b.frags {
		for _, m := range ms {
			if m.gen != b.gen {
				gone = append(gone, m.sp)
			}
		}
	}
	for _, sp := range gone {
		b.remove(d, sp)
	}
	b.addAll(d, st, added)
}

// buildChanged looks at the Services st.Delta names only. All removals
// come before all additions, as in buildAll: a new service port may take
// over the ID (shard map keys) a removed one of another Service had.
func (b *Builder) buildChanged(d *nft.Derivation, st *model.State) {
	now := make([][]*model.ServicePort, len(st.Delta.Changed))
	for i, k := range st.Delta.Changed {
		now[i] = st.PortsOf(k)
		for _, m := range slices.Clone(b.frags[b.svcKey(k)]) {
			if m.sp.Name.NamespacedName == k && !slices.Contains(now[i], m.sp) {
				b.remove(d, m.sp)
			}
		}
	}
	for _, ports := range now {
		for _, sp := range ports {
			if b.memoOf(sp) == nil {
				b.add(d, st, sp)
			}
		}
	}
}

// add builds the fragments of a service port new to the Builder.
func (b *Builder) add(d *nft.Derivation, st *model.State, sp *model.ServicePort) {
	fams := FamiliesOf(st)
	b.place(d, fams, sp, makePort(st, fams, sp))
}

// place puts a new service port's fragments into d and remembers them.
func (b *Builder) place(d *nft.Derivation, fams []nft.Family, sp *model.ServicePort, made madePort) {
	m := memo{sp: sp, gen: b.gen}
	for _, f := range fams {
		if fr := made.frs[familyIndex(f)]; fr != nil {
			m.byFamily[familyIndex(f)] = addFragment(d, f, made.owner, fr)
		}
	}
	k := b.svcKey(sp.Name.NamespacedName)
	b.frags[k] = append(b.frags[k], m)
}

// remove takes a service port's fragments out.
func (b *Builder) remove(d *nft.Derivation, sp *model.ServicePort) {
	m := b.memoOf(sp)
	if m.byFamily != [2]placed{} {
		owner := ServiceChainName(sp.Name)
		for i, pl := range m.byFamily {
			removeFragment(d, nft.Families[i], sp, owner, pl)
		}
	}
	k := b.svcKey(sp.Name.NamespacedName)
	if rest := slices.DeleteFunc(b.frags[k], func(m memo) bool { return m.sp == sp }); len(rest) > 0 {
		b.frags[k] = rest
	} else {
		delete(b.frags, k)
	}
}

// reset forgets every fragment and starts again from the skeleton.
func (b *Builder) reset(cfg model.State) {
	b.config = cfg
	b.frags = map[uint64][]memo{}
	b.seed = maphash.MakeSeed()
	b.built = 0
	b.last = nft.NewRuleset()
	for _, f := range FamiliesOf(&cfg) {
		buildSkeleton(b.last.Table(f), &cfg)
	}
}

// FamiliesOf returns the families programmed for a state: both, or IPv4
// alone on a node without IPv6.
func FamiliesOf(st *model.State) []nft.Family {
	if st.NoIPv6 {
		return []nft.Family{nft.IPv4}
	}
	return nft.Families
}

// newShardMap makes an endpoint map or an endpoint-chains map, the sets
// service ports share by ID (see README.md).
func newShardMap(f nft.Family, name string) *nft.Set {
	if p, _, isEndpointMap := parseEndpointMapName(name); isEndpointMap {
		return newEndpointMap(f, p, name)
	}
	return newEndpointChainsMap(name)
}

// isShardMap reports whether a set is one newShardMap makes.
func isShardMap(name string) bool {
	_, _, isEndpointMap := parseEndpointMapName(name)
	return isEndpointMap || strings.HasPrefix(name, endpointChainsMapPrefix)
}
