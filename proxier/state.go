package proxier

import (
	"fmt"
	"maps"
	"reflect"
	"slices"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/nftproxy/nftproxy/informers"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// loadAll converts every Service and reads the Node: the starting point
// before the first sync. Changes recorded so far are covered by it.
func (p *Proxier) loadAll() {
	// A wake-up left by changes this load covers would cost a sync, and a
	// token of the burst, for nothing. Drained before Take: a change
	// recorded after it signals again.
	select {
	case <-p.changes.Wake():
	default:
	}
	p.changes.Take()
	keys := p.src.ServiceKeys()
	// Converting in sorted order makes IDs a function of the set of
	// Services: after a restart on a stable cluster they match the rules
	// already in the kernel, so the first full sync changes little.
	slices.SortFunc(keys, model.CompareServices)
	for _, k := range keys {
		p.convert(k)
	}
	p.refreshNode()
	p.dirty = true
	klog.V(2).InfoS("Loaded initial state", "services", len(keys), "servicePorts", p.ids.inUse)
}

// applyChanges reconverts the Services touched by c (and those whose lookup
// failed before) and rereads the Node if it changed. It returns how many
// Services were converted.
func (p *Proxier) applyChanges(c informers.Changes) int {
	keys := p.retry
	p.retry = map[types.NamespacedName]struct{}{}
	for k := range c.Services {
		keys[k] = struct{}{}
	}
	for k := range c.Endpoints {
		keys[k] = struct{}{}
	}
	// Sorted, so that IDs do not depend on map iteration order.
	for _, k := range slices.SortedFunc(maps.Keys(keys), model.CompareServices) {
		p.convert(k)
	}
	if c.Node {
		p.refreshNode()
	}
	return len(keys)
}

// convert reconverts one Service from the caches into p.services.
func (p *Proxier) convert(key types.NamespacedName) {
	svc, err := p.src.Service(key)
	if err != nil {
		klog.ErrorS(err, "Cannot read Service, will retry", "service", key)
		p.retry[key] = struct{}{}
		return
	}
	var ports []*model.ServicePort
	var rejections []model.Rejection
	if svc != nil {
		eps, err := p.src.EndpointSlices(key)
		if err != nil {
			klog.ErrorS(err, "Cannot read EndpointSlices, will retry", "service", key)
			p.retry[key] = struct{}{}
			return
		}
		ports, rejections = model.ServicePorts(svc, eps)
	}
	p.report(rejections)
	p.setService(key, ports)
}

// setService replaces the ports of one Service, keeping the IDs of ports
// that survive, freeing those of ports that are gone and allocating new ones.
func (p *Proxier) setService(key types.NamespacedName, ports []*model.ServicePort) {
	old := p.services[key]
	oldIDs := make(map[model.ServicePortName]uint32, len(old))
	for _, sp := range old {
		oldIDs[sp.Name] = sp.ID
	}
	// Free first, so that a renamed port can reuse the lowest ID at once.
	for _, sp := range old {
		if !slices.ContainsFunc(ports, func(n *model.ServicePort) bool { return n.Name == sp.Name }) {
			p.ids.release(sp.ID)
		}
	}
	kept := ports[:0]
	for _, sp := range ports {
		if id, ok := oldIDs[sp.Name]; ok {
			sp.ID = id
		} else {
			id, err := p.ids.allocate()
			if err != nil {
				p.report([]model.Rejection{{Kind: "Service", Namespace: key.Namespace, Name: key.Name, Invalid: true,
					Reason: "TooManyServicePorts", Message: fmt.Sprintf("port %s not programmed: %v", sp.Name, err)}})
				continue
			}
			sp.ID = id
		}
		kept = append(kept, sp)
	}
	ports = kept

	// Unchanged content (e.g. an annotation edit, or a slice update that
	// only touched fields we ignore): keep the old values, no sync needed.
	if reflect.DeepEqual(old, ports) || (len(old) == 0 && len(ports) == 0) {
		return
	}
	if len(ports) == 0 {
		delete(p.services, key)
	} else {
		p.services[key] = ports
	}
	p.claims.SetService(key, ports)
	p.flatStale = true
	if p.changedKeys == nil {
		p.changedKeys = map[types.NamespacedName]bool{}
	}
	p.changedKeys[key] = true
	p.dirty = true
	klog.V(4).InfoS("Service ports updated", "service", key, "ports", len(ports))
}

// refreshNode rereads the Node's zone and addresses. A Node that goes
// missing (deleted, or not yet re-registered after a kubelet restart)
// keeps its last known zone and addresses: emptying them would withdraw
// every NodePort served on the primary addresses while the node still
// forwards traffic. (Upstream reads the addresses once at start-up and
// exits when the Node is deleted or its addresses change; nftproxy follows
// address changes and keeps serving.) Before the Node is first seen they
// are unknown: no NodePort is served on primary addresses until it
// appears.
func (p *Proxier) refreshNode() {
	n, err := p.src.Node()
	if err != nil {
		klog.ErrorS(err, "Cannot read Node; keeping its previous zone and addresses")
		return
	}
	if n == nil {
		if p.nodeSeen {
			klog.InfoS("Node object not found; keeping its last known zone and addresses", "node", p.cfg.NodeName,
				"zone", p.nodeZone, "ips", p.nodeIPs)
		} else {
			klog.InfoS("Node object not found; node addresses and zone unknown until it appears (no NodePort on primary addresses)",
				"node", p.cfg.NodeName)
		}
		return
	}
	p.nodeSeen = true
	zone, ips := nodeInfo(n)
	if zone == p.nodeZone && slices.Equal(ips, p.nodeIPs) {
		return
	}
	klog.V(2).InfoS("Node changed", "node", p.cfg.NodeName, "zone", zone, "ips", ips)
	p.nodeZone, p.nodeIPs = zone, ips
	p.dirty = true
}

// state returns the desired State. It shares unchanged parts with earlier
// States; none of them is ever modified after being handed out.
func (p *Proxier) state() *model.State {
	p.resolveClaims()
	// delta tells the Builder which Services changed since the last
	// State, when flat is that State's list patched (not rebuilt).
	var delta *model.Delta
	if p.flat != nil && (!p.flatStale || len(p.changedKeys) <= maxPatchedKeys) {
		delta = &model.Delta{Since: p.stateGen, Changed: slices.SortedFunc(maps.Keys(p.changedKeys), model.CompareServices)}
	}
	if p.flat != nil && p.flatStale && len(p.changedKeys) <= maxPatchedKeys {
		p.flat = p.flat.Patch(delta.Changed, p.claims.Ports)
		p.flatStale = false
	}
	p.changedKeys = nil
	if p.flatStale || p.flat == nil {
		keys := make([]types.NamespacedName, 0, len(p.services))
		n := 0
		for k, ports := range p.services {
			keys = append(keys, k)
			n += len(ports)
		}
		// The programmed ports: conflicting claims removed.
		// Ports of a Service are sorted by Name and Names sort by
		// namespace/name first, so sorting the Services sorts the ports.
		slices.SortFunc(keys, model.CompareServices)
		flat := make([]*model.ServicePort, 0, n)
		for _, k := range keys {
			flat = append(flat, p.claims.Ports(k)...)
		}
		p.flat, p.flatStale = model.NewPortList(flat), false
	}
	p.stateGen++
	st := &model.State{
		Gen:           p.stateGen,
		NodeName:      p.cfg.NodeName,
		NodeZone:      p.nodeZone,
		NodeIPs:       p.nodeIPs,
		ClusterCIDRs:  p.cfg.ClusterCIDRs,
		MasqueradeAll: p.cfg.MasqueradeAll,
		NoIPv6:        p.cfg.NoIPv6,
		NodePortIPs:   p.nodePortIPs,
		List:          p.flat,
	}
	// A Delta promises that only the named Services changed: not after
	// a node change (zone, addresses), which every service port's rules
	// and endpoint selection may depend on.
	node := *st
	node.List, node.Gen = nil, 0
	if delta != nil && reflect.DeepEqual(node, p.stateNode) {
		st.Delta = delta
	}
	p.stateNode = node
	return st
}

// resolveClaims settles conflicting addresses and NodePorts among the
// Services changed since the last State, reports new losers, and marks the
// Services whose programmed ports changed.
func (p *Proxier) resolveClaims() {
	p.claims.SetNodeAddresses(p.nodePortIPs, p.nodeIPs)
	changed, rejections := p.claims.Resolve()
	p.report(rejections)
	for _, k := range changed {
		if p.changedKeys == nil {
			p.changedKeys = map[types.NamespacedName]bool{}
		}
		p.changedKeys[k] = true
		p.flatStale = true
	}
}

// maxPatchedKeys bounds the changed Services state() patches into the
// previous list; more changes re-sort everything.
const maxPatchedKeys = 64

// report logs rejections and passes them on for Events.
func (p *Proxier) report(rs []model.Rejection) {
	for _, r := range rs {
		ref := klog.KRef(r.Namespace, r.Name)
		if r.Invalid {
			klog.InfoS("Ignoring invalid input", "kind", r.Kind, "object", ref, "reason", r.Reason, "detail", r.Message)
		} else {
			klog.V(4).InfoS("Nothing to program", "kind", r.Kind, "object", ref, "reason", r.Reason, "detail", r.Message)
		}
		if p.cfg.OnReject != nil {
			p.cfg.OnReject(r)
		}
	}
}
