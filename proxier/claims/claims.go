// Package claims decides which service port may use a kernel dispatch key
// when several Services claim it.
//
// The kernel dispatches on `address . protocol . port` (ClusterIPs,
// externalIPs, load-balancer ingress IPs) and on `protocol . port`
// (NodePorts on the node's NodePort addresses). Two service ports asking
// for one key with different verdicts make the whole transaction fail, and
// whichever one the kernel ended up holding would capture the other's
// traffic. The API server allocates ClusterIPs and NodePorts, but anyone
// who may create a Service can write any externalIP, and anyone with
// status access any load-balancer IP (CVE-2020-8554). So:
//
//   - a ClusterIP always wins: an externalIP or load-balancer IP equal to
//     a ClusterIP (another Service's, or its own) on the same port and
//     protocol is dropped;
//   - an externalIP or load-balancer IP that is one of this node's NodePort
//     addresses, on the protocol and port of a NodePort, is dropped: the
//     allocated NodePort wins;
//   - otherwise the first claimant by service port name wins (namespace,
//     name, port name, protocol), the same answer on every node and after
//     every restart;
//   - with DenyNodeAddresses, externalIPs and load-balancer IPs equal to any
//     address of this node are dropped on every port (an opt-in guard: a
//     tenant could otherwise capture the node's own services, e.g. SSH or
//     the kubelet, which kube-proxy allows).
//
// The loser keeps everything else; it is reported once per change (a log
// line and an Event on the losing Service). The index is incremental: a
// change re-resolves only the Services that share a key with it, so the
// cost of a sync does not grow with the number of Services.
package claims

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/nftproxy/nftproxy/proxier/model"
)

// Event reasons, one per kind of lost claim.
const (
	ReasonDuplicateClusterIP       = "DuplicateClusterIP"
	ReasonExternalIsClusterIP      = "ExternalAddressIsClusterIP"
	ReasonDuplicateExternalAddress = "DuplicateExternalAddress"
	ReasonExternalOnNodePort       = "ExternalAddressOnNodePort"
	ReasonExternalIsNodeAddress    = "ExternalAddressIsNodeAddress"
	ReasonDuplicateNodePort        = "DuplicateNodePort"
)

// rank orders claimants of one key: the lower rank wins, then the name.
type rank uint8

const (
	rankClusterIP rank = iota // allocated by the API server
	rankExternal              // externalIPs and load-balancer IPs: written by users
)

// key is one key of the kernel's dispatch maps.
type key struct {
	nodePort bool       // protocol . port on the NodePort addresses
	addr     netip.Addr // zero for NodePort keys
	proto    v1.Protocol
	port     uint16
}

func dispatchKey(ip netip.Addr, sp *model.ServicePort) key {
	return key{addr: ip, proto: sp.Protocol, port: sp.Port}
}

func nodePortKey(proto v1.Protocol, port uint16) key {
	return key{nodePort: true, proto: proto, port: port}
}

// Options of a Resolver.
type Options struct {
	// DenyNodeAddresses drops externalIPs and load-balancer IPs equal to
	// one of the node's addresses (--deny-external-ips-on-node-addresses).
	DenyNodeAddresses bool
}

// Resolver keeps the claims of every Service and the service ports to
// program instead of those that lost one. Not safe for concurrent use.
type Resolver struct {
	opts Options
	// claimants[k] holds, per claimant, the best rank it claims k with.
	claimants map[key]*claimSet
	raw       map[types.NamespacedName][]*model.ServicePort
	// programmed holds, for Services that lost a claim, their ports with
	// the lost parts removed.
	programmed map[types.NamespacedName][]*model.ServicePort
	// copies keeps each losing port's copy while its losses stay the
	// same, so the Builder sees a stable value.
	copies map[*model.ServicePort]lossCopy
	// pending are the Services to re-resolve.
	pending map[types.NamespacedName]struct{}

	nodePortIPs, nodeIPs []netip.Addr
}

type lossCopy struct {
	sp     *model.ServicePort
	losses string // rendered, to compare and report
}

// New returns an empty Resolver.
func New(opts Options) *Resolver {
	return &Resolver{
		opts:       opts,
		claimants:  map[key]*claimSet{},
		raw:        map[types.NamespacedName][]*model.ServicePort{},
		programmed: map[types.NamespacedName][]*model.ServicePort{},
		copies:     map[*model.ServicePort]lossCopy{},
		pending:    map[types.NamespacedName]struct{}{},
	}
}

// SetService records the ports of a Service (none: the Service is gone).
func (r *Resolver) SetService(svc types.NamespacedName, ports []*model.ServicePort) {
	old := r.raw[svc]
	for _, sp := range old {
		r.forEachClaim(sp, func(k key, _ rank) { r.touch(k); r.claimants[k].del(sp.Name); r.dropEmpty(k) })
		delete(r.copies, sp)
	}
	if len(ports) == 0 {
		delete(r.raw, svc)
	} else {
		r.raw[svc] = ports
	}
	for _, sp := range ports {
		r.forEachClaim(sp, func(k key, rk rank) {
			c := r.claimants[k]
			if c == nil {
				c = &claimSet{}
				r.claimants[k] = c
			}
			c.keep(sp.Name, rk)
			r.touch(k)
		})
	}
	r.pending[svc] = struct{}{}
}

// SetNodeAddresses records the node's NodePort addresses and all its
// addresses; a change re-resolves every Service with external addresses.
func (r *Resolver) SetNodeAddresses(nodePortIPs, nodeIPs []netip.Addr) {
	if slices.Equal(nodePortIPs, r.nodePortIPs) && slices.Equal(nodeIPs, r.nodeIPs) {
		return
	}
	r.nodePortIPs, r.nodeIPs = slices.Clone(nodePortIPs), slices.Clone(nodeIPs)
	for svc, ports := range r.raw {
		for _, sp := range ports {
			if len(sp.ExternalIPs) > 0 || len(sp.LoadBalancerIPs) > 0 {
				r.pending[svc] = struct{}{}
				break
			}
		}
	}
}

// Ports returns the service ports of svc to program.
func (r *Resolver) Ports(svc types.NamespacedName) []*model.ServicePort {
	if p, ok := r.programmed[svc]; ok {
		return p
	}
	return r.raw[svc]
}

// Resolve re-resolves the Services touched since the last call. It returns
// those whose programmed ports changed, and a Rejection for every service
// port whose losses are new.
func (r *Resolver) Resolve() (changed []types.NamespacedName, rejections []model.Rejection) {
	for svc := range r.pending {
		before := r.Ports(svc)
		var ports []*model.ServicePort
		for i, sp := range r.raw[svc] {
			c, lost, reasons := r.resolve(sp)
			if lost == "" {
				delete(r.copies, sp)
				continue
			}
			if prev, ok := r.copies[sp]; ok && prev.losses == lost {
				c = prev.sp
			} else {
				r.copies[sp] = lossCopy{sp: c, losses: lost}
				rejections = append(rejections, reasons...)
			}
			if ports == nil {
				ports = slices.Clone(r.raw[svc])
			}
			ports[i] = c
		}
		if ports == nil {
			delete(r.programmed, svc)
		} else {
			r.programmed[svc] = ports
		}
		if !slices.Equal(before, r.Ports(svc)) {
			changed = append(changed, svc)
		}
	}
	// A new map, not clear(): a map keeps the buckets of its largest
	// size, and iterating the emptied map of the first sync (every
	// Service pending) cost ~0.2 ms per sync at 50,000 Services.
	r.pending = map[types.NamespacedName]struct{}{}
	slices.SortFunc(changed, func(a, b types.NamespacedName) int { return strings.Compare(a.String(), b.String()) })
	slices.SortStableFunc(rejections, func(a, b model.Rejection) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	return changed, rejections
}

// resolve returns sp without what it lost (sp itself when nothing), the
// losses rendered, and one Rejection per kind of loss.
func (r *Resolver) resolve(sp *model.ServicePort) (*model.ServicePort, string, []model.Rejection) {
	lost := map[string][]string{} // reason -> what, in order
	var order []string
	lose := func(reason, what string) {
		if _, ok := lost[reason]; !ok {
			order = append(order, reason)
		}
		lost[reason] = append(lost[reason], what)
	}
	addr := func(ip netip.Addr) string {
		return netip.AddrPortFrom(ip, sp.Port).String() + "/" + string(sp.Protocol)
	}

	clusterIPs := keepIf(sp.ClusterIPs, func(ip netip.Addr) bool {
		if w, _ := r.winner(dispatchKey(ip, sp)); w != sp.Name {
			lose(ReasonDuplicateClusterIP, fmt.Sprintf("ClusterIP %s (also the ClusterIP of %s)", addr(ip), w))
			return false
		}
		return true
	})
	external := func(kind string) func(netip.Addr) bool {
		return func(ip netip.Addr) bool {
			w, rk := r.winner(dispatchKey(ip, sp))
			switch {
			case rk == rankClusterIP && w == sp.Name:
				// The Service's own ClusterIP: programmed once, as
				// the ClusterIP (two verdicts under one key otherwise).
				lose(ReasonExternalIsClusterIP, fmt.Sprintf("%s %s (its own ClusterIP)", kind, addr(ip)))
			case rk == rankClusterIP:
				lose(ReasonExternalIsClusterIP, fmt.Sprintf("%s %s (the ClusterIP of %s)", kind, addr(ip), w))
			case w != sp.Name:
				lose(ReasonDuplicateExternalAddress, fmt.Sprintf("%s %s (used by %s)", kind, addr(ip), w))
			case slices.Contains(r.nodePortIPs, ip) && r.claimed(nodePortKey(sp.Protocol, sp.Port), sp.Name):
				lose(ReasonExternalOnNodePort, fmt.Sprintf("%s %s (a NodePort on this node's address)", kind, addr(ip)))
			case r.opts.DenyNodeAddresses && (slices.Contains(r.nodeIPs, ip) || slices.Contains(r.nodePortIPs, ip)):
				lose(ReasonExternalIsNodeAddress, fmt.Sprintf("%s %s (an address of this node)", kind, addr(ip)))
			default:
				return true
			}
			return false
		}
	}
	externalIPs := keepIf(sp.ExternalIPs, external("externalIP"))
	lbIPs := keepIf(sp.LoadBalancerIPs, external("load-balancer IP"))
	nodePort := sp.NodePort
	if nodePort != 0 {
		if w, _ := r.winner(nodePortKey(sp.Protocol, nodePort)); w != sp.Name {
			lose(ReasonDuplicateNodePort, fmt.Sprintf("nodePort %d/%s (also the nodePort of %s)", nodePort, sp.Protocol, w))
			nodePort = 0
		}
	}
	if len(order) == 0 {
		return sp, "", nil
	}
	c := *sp
	c.ClusterIPs, c.ExternalIPs, c.LoadBalancerIPs, c.NodePort = clusterIPs, externalIPs, lbIPs, nodePort
	var all []string
	var rejections []model.Rejection
	for _, reason := range order {
		what := strings.Join(lost[reason], ", ")
		all = append(all, reason+": "+what)
		rejections = append(rejections, model.Rejection{Kind: "Service", Namespace: sp.Name.Namespace, Name: sp.Name.Name,
			Invalid: true, Reason: reason, Message: fmt.Sprintf("port %s: not programmed: %s", portLabel(sp.Name), what)})
	}
	return &c, strings.Join(all, "; "), rejections
}

func portLabel(n model.ServicePortName) string {
	if n.Port == "" {
		return string(n.Protocol)
	}
	return n.Port + "/" + string(n.Protocol)
}

// keepIf returns the addresses keep accepts (ips itself when all are).
func keepIf(ips []netip.Addr, keep func(netip.Addr) bool) []netip.Addr {
	var out []netip.Addr
	dropped := false
	for _, ip := range ips {
		if keep(ip) {
			out = append(out, ip)
		} else {
			dropped = true
		}
	}
	if !dropped {
		return ips
	}
	return out
}

// winner returns the claimant of k that keeps it, and its rank.
func (r *Resolver) winner(k key) (model.ServicePortName, rank) {
	var best model.ServicePortName
	bestRank := rank(255)
	for name, rk := range r.claimants[k].all {
		if rk < bestRank || (rk == bestRank && name.Less(best)) {
			best, bestRank = name, rk
		}
	}
	return best, bestRank
}

// claimed reports whether anyone but self claims k.
func (r *Resolver) claimed(k key, self model.ServicePortName) bool {
	for name := range r.claimants[k].all {
		if name != self {
			return true
		}
	}
	return false
}

// forEachClaim calls fn for every key sp claims.
func (r *Resolver) forEachClaim(sp *model.ServicePort, fn func(key, rank)) {
	for _, ip := range sp.ClusterIPs {
		fn(dispatchKey(ip, sp), rankClusterIP)
	}
	for _, ip := range sp.ExternalIPs {
		fn(dispatchKey(ip, sp), rankExternal)
	}
	for _, ip := range sp.LoadBalancerIPs {
		fn(dispatchKey(ip, sp), rankExternal)
	}
	if sp.NodePort != 0 {
		fn(nodePortKey(sp.Protocol, sp.NodePort), rankClusterIP)
	}
}

// touch marks every claimant of k for re-resolution, and for a NodePort
// key also the claimants of that port on the node's NodePort addresses.
func (r *Resolver) touch(k key) {
	for name := range r.claimants[k].all {
		r.pending[name.NamespacedName] = struct{}{}
	}
	if k.nodePort {
		for _, ip := range r.nodePortIPs {
			for name := range r.claimants[key{addr: ip, proto: k.proto, port: k.port}].all {
				r.pending[name.NamespacedName] = struct{}{}
			}
		}
	}
}

func (r *Resolver) dropEmpty(k key) {
	if r.claimants[k].len() == 0 {
		delete(r.claimants, k)
	}
}

// claimSet holds the claimants of one key with their best rank. Almost
// every key has one claimant (its Service's): that one is kept inline,
// a map only for contested keys (a map per key was 11 of the 120 MB a
// proxy with 10k Services held).
type claimSet struct {
	first     model.ServicePortName
	firstRank rank
	hasFirst  bool
	more      map[model.ServicePortName]rank
}

// keep records that name claims the key with rank rk (its best rank wins).
func (c *claimSet) keep(name model.ServicePortName, rk rank) {
	switch {
	case c.hasFirst && c.first == name:
		c.firstRank = min(c.firstRank, rk)
	case !c.hasFirst && len(c.more) == 0:
		c.first, c.firstRank, c.hasFirst = name, rk, true
	default:
		if c.more == nil {
			c.more = map[model.ServicePortName]rank{}
		}
		if prev, ok := c.more[name]; !ok || rk < prev {
			c.more[name] = rk
		}
	}
}

func (c *claimSet) del(name model.ServicePortName) {
	if c == nil {
		return
	}
	if c.hasFirst && c.first == name {
		c.hasFirst = false
		return
	}
	delete(c.more, name)
}

func (c *claimSet) len() int {
	if c == nil {
		return 0
	}
	n := len(c.more)
	if c.hasFirst {
		n++
	}
	return n
}

// all yields every claimant and its rank.
func (c *claimSet) all(yield func(model.ServicePortName, rank) bool) {
	if c == nil {
		return
	}
	if c.hasFirst && !yield(c.first, c.firstRank) {
		return
	}
	for name, rk := range c.more {
		if !yield(name, rk) {
			return
		}
	}
}
