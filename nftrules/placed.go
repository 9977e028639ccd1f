package nftrules

import (
	"slices"
	"strings"

	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// The chains of a service port named after it (ServiceChainName,
// ExternalChainName, FirewallChainName), by kind.
const (
	svcChain = iota
	extChain
	fwChain
	ownChains
)

// ownChainName returns the name of a service port's chain of that kind
// (svcName is its ServiceChainName).
func ownChainName(kind int, name model.ServicePortName, svcName string) string {
	switch kind {
	case svcChain:
		return svcName
	case extChain:
		return ExternalChainName(name)
	}
	return FirewallChainName(name)
}

// fragmentSets are the shared sets a fragment may fill, by bit of
// placed.sets; the shard maps it fills (named after its ID) follow.
var fragmentSets = [...]string{SetServiceIPs, SetNoEndpointServices, SetClusterIPs, SetHairpin,
	SetServiceNodePorts, SetNoEndpointNodePorts, SetMasqueradeExternalIPs, SetMasqueradeNodePorts, SetFirewallIPs}

const (
	endpointMapBit       = len(fragmentSets)
	endpointChainsMapBit = endpointMapBit + 1
)

// placed is what removeFragment needs of a fragment added to a ruleset,
// kept for every service port and family between syncs: which of the
// chains and sets named after the service port (or shared by all) it
// has, as bits, their names derived again on removal from the service
// port's name, ID and protocol, which a ServicePort value never changes;
// by name only what session affinity adds. It replaces the fragment
// itself and the list of its sets' names (~190 bytes per service port).
type placed struct {
	chains uint8  // bit k: own chain of kind k
	sets   uint16 // bit i: fragmentSets[i], then the shard maps
	named  *namedObjects
}

// namedObjects are what a fragment adds beyond its placed bits.
type namedObjects struct {
	chains, sets []string // its own, added and deleted whole
	inSets       []string // shared sets it has a group in
}

func (pl *placed) more() *namedObjects {
	if pl.named == nil {
		pl.named = &namedObjects{}
	}
	return pl.named
}

// filled records that the fragment has a group in the named set.
func (pl *placed) filled(set string) {
	if i := slices.Index(fragmentSets[:], set); i >= 0 {
		pl.sets |= 1 << i
	} else if _, _, ok := parseEndpointMapName(set); ok {
		pl.sets |= 1 << endpointMapBit
	} else if strings.HasPrefix(set, endpointChainsMapPrefix) {
		pl.sets |= 1 << endpointChainsMapBit
	} else {
		pl.more().inSets = append(pl.more().inSets, set)
	}
}

// addFragment puts a fragment's objects into the derived ruleset. The
// ruleset keeps the elements (packed, see nft.Derivation.SetGroup); what
// is returned names what removeFragment will take out.
func addFragment(d *nft.Derivation, f nft.Family, owner string, fr *fragment) placed {
	var pl placed
	for k, c := range fr.own {
		if c != nil {
			d.PutChain(f, c)
			pl.chains |= 1 << k
		}
	}
	for _, c := range fr.chains {
		d.PutChain(f, c)
		pl.more().chains = append(pl.more().chains, c.Name)
	}
	for _, s := range fr.sets {
		d.PutSet(f, s)
		pl.more().sets = append(pl.more().sets, s.Name)
	}
	for name, els := range fr.elements {
		d.SetGroup(f, name, owner, els, newShardMap)
		pl.filled(name)
	}
	for _, pe := range fr.packs {
		d.SetPacked(f, pe.set, owner, pe.p, newShardMap)
		pl.filled(pe.set)
	}
	return pl
}

// removeFragment takes out what addFragment put in for service port sp
// (owner is its ServiceChainName).
func removeFragment(d *nft.Derivation, f nft.Family, sp *model.ServicePort, owner string, pl placed) {
	for k := range ownChains {
		if pl.chains&(1<<k) != 0 {
			d.DeleteChain(f, ownChainName(k, sp.Name, owner))
		}
	}
	var inSets []string
	if m := pl.named; m != nil {
		for _, name := range m.chains {
			d.DeleteChain(f, name)
		}
		for _, name := range m.sets {
			d.DeleteSet(f, name)
		}
		inSets = append(inSets, m.inSets...)
	}
	for i, name := range fragmentSets {
		if pl.sets&(1<<i) != 0 {
			inSets = append(inSets, name)
		}
	}
	if pl.sets&(1<<endpointMapBit) != 0 {
		proto, _ := ProtocolOf(sp.Protocol)
		inSets = append(inSets, EndpointMapName(proto, sp.ID))
	}
	if pl.sets&(1<<endpointChainsMapBit) != 0 {
		inSets = append(inSets, EndpointChainsMapName(sp.ID))
	}
	for _, name := range inSets {
		if d.DeleteGroup(f, name, owner) == 0 && isShardMap(name) {
			d.DeleteSet(f, name) // the shard's last service port is gone
		}
	}
}
