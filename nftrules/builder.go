package nftrules

import (
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"reflect"
	"strings"

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
	frags  map[*model.ServicePort]*memo
	gen    uint64 // Build count, to find service ports that are gone
}

// memo is what one service port produced, and when it was last seen.
type memo struct {
	gen      uint64
	byFamily map[nft.Family]*fragment
}

// NewBuilder returns a Builder with nothing built yet.
func NewBuilder() *Builder { return &Builder{} }

// Build returns the ruleset of st, derived from the previous one (see
// nft.Derivation): Diff against the previous one looks only at what
// changed.
func (b *Builder) Build(st *model.State) *nft.Ruleset {
	cfg := *st
	cfg.Services = nil
	if b.last == nil || !reflect.DeepEqual(cfg, b.config) {
		b.reset(cfg)
	}
	d := b.last.Derive()
	b.gen++
	var added []*model.ServicePort
	for _, sp := range st.Services {
		if m, ok := b.frags[sp]; ok {
			m.gen = b.gen
		} else {
			added = append(added, sp)
		}
	}
	for sp, m := range b.frags {
		if m.gen != b.gen {
			for f, fr := range m.byFamily {
				removeFragment(d, f, ServiceChainName(sp.Name), fr)
			}
			delete(b.frags, sp)
		}
	}
	for _, sp := range added {
		m := &memo{gen: b.gen, byFamily: map[nft.Family]*fragment{}}
		for _, f := range FamiliesOf(st) {
			if fr := serviceFragment(st, sp, f); fr != nil {
				m.byFamily[f] = fr
				addFragment(d, f, ServiceChainName(sp.Name), fr)
			}
		}
		b.frags[sp] = m
	}
	b.last = d.Ruleset()
	return b.last
}

// reset forgets every fragment and starts again from the skeleton.
func (b *Builder) reset(cfg model.State) {
	b.config = cfg
	b.frags = map[*model.ServicePort]*memo{}
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

func addFragment(d *nft.Derivation, f nft.Family, owner string, fr *fragment) {
	for _, c := range fr.chains {
		d.PutChain(f, c)
	}
	for _, s := range fr.sets {
		d.PutSet(f, s)
	}
	for name, els := range fr.elements {
		d.SetGroup(f, name, owner, els, newShardMap)
	}
}

func removeFragment(d *nft.Derivation, f nft.Family, owner string, fr *fragment) {
	for _, c := range fr.chains {
		d.DeleteChain(f, c.Name)
	}
	for _, s := range fr.sets {
		d.DeleteSet(f, s.Name)
	}
	for name := range fr.elements {
		if d.DeleteGroup(f, name, owner) == 0 && isShardMap(name) {
			d.DeleteSet(f, name) // the shard's last service port is gone
		}
	}
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
