// Package model is the desired state of one node's proxy: plain data built
// from Services, EndpointSlices and the Node, with no kernel or API client in
// sight. nftrules.Build turns a State into a ruleset.
package model

import (
	"cmp"
	"fmt"
	"iter"
	"net/netip"
	"slices"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// State is everything the ruleset of one node is built from.
type State struct {
	// NodeName is this node's name (--hostname-override or the host name).
	NodeName string
	// NodeZone is the node's topology.kubernetes.io/zone label.
	NodeZone string
	// NodeIPs are the node's InternalIPs (both families when present).
	NodeIPs []netip.Addr
	// ClusterCIDRs are the pod ranges (--cluster-cidr); traffic to a
	// ClusterIP from outside them is masqueraded. Empty: no such masquerade.
	ClusterCIDRs []netip.Prefix
	// MasqueradeAll masquerades all traffic to Services (--masquerade-all).
	MasqueradeAll bool
	// NodePortIPs are the addresses NodePorts are served on: this node's
	// addresses selected by --nodeport-addresses (both families; loopback
	// addresses for localhost NodePorts). Empty: no NodePorts.
	NodePortIPs []netip.Addr
	// NoIPv6 is set when this node's kernel has no IPv6: only the IPv4
	// table is programmed (upstream runs single-stack there too).
	NoIPv6 bool
	// Services are the service ports to program, sorted by Name; or,
	// when List is set (the proxier's States), List holds them and
	// Services is nil. Read them through Len, All and PortsOf.
	Services []*ServicePort
	List     *PortList

	// Gen numbers the States of one producer (0: not numbered), and
	// Delta, when set, says how this State differs from an earlier one:
	// together they let a Builder that built that State look at the
	// changed Services only instead of every service port.
	Gen   uint64
	Delta *Delta
}

// Delta describes a State as a change of the producer's State Since: only
// the service ports of the Services in Changed were added, replaced (a new
// *ServicePort value) or removed; every other service port is the same
// value and every other field is equal.
type Delta struct {
	Since   uint64
	Changed []types.NamespacedName
}

// PortsOf returns the service ports of Service k, by binary search.
func (st *State) PortsOf(k types.NamespacedName) []*ServicePort {
	if st.List != nil {
		return st.List.Of(k)
	}
	return portsOf(st.Services, k)
}

// Len returns the number of service ports.
func (st *State) Len() int {
	if st.List != nil {
		return st.List.Len()
	}
	return len(st.Services)
}

// All yields the service ports in order.
func (st *State) All() iter.Seq[*ServicePort] {
	if st.List != nil {
		return st.List.All()
	}
	return slices.Values(st.Services)
}

// CompareServices orders Services as State.Services is sorted: by
// namespace, then name.
func CompareServices(a, b types.NamespacedName) int {
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
}

// ServicePortName identifies one port of one Service.
type ServicePortName struct {
	types.NamespacedName
	Port     string // the port's name; empty for single-port Services
	Protocol v1.Protocol
}

func (n ServicePortName) String() string {
	return fmt.Sprintf("%s/%s/%s/%s", n.Namespace, n.Name, protoLower(n.Protocol), n.Port)
}

// Less orders service port names (namespace, name, port name, protocol).
func (n ServicePortName) Less(o ServicePortName) bool {
	if n.Namespace != o.Namespace {
		return n.Namespace < o.Namespace
	}
	if n.Name != o.Name {
		return n.Name < o.Name
	}
	if n.Port != o.Port {
		return n.Port < o.Port
	}
	return n.Protocol < o.Protocol
}

func protoLower(p v1.Protocol) string {
	switch p {
	case v1.ProtocolTCP:
		return "tcp"
	case v1.ProtocolUDP:
		return "udp"
	case v1.ProtocolSCTP:
		return "sctp"
	}
	return string(p)
}

// ServicePort is one port of a Service with everything needed to program it.
type ServicePort struct {
	Name ServicePortName
	// ID is a small integer, stable for the life of the service port in this
	// proxy process, assigned by the proxier. It places the service port's
	// endpoints in the shared endpoint maps (see nftrules/README.md).
	ID uint32

	// ClusterIPs holds the Service's cluster IPs (one per family).
	ClusterIPs []netip.Addr
	Port       uint16
	Protocol   v1.Protocol

	// SessionAffinityClientIP and AffinityTimeoutSeconds mirror
	// spec.sessionAffinity and its timeout (default 10800 s).
	SessionAffinityClientIP bool
	AffinityTimeoutSeconds  int32

	// NodePort is spec.ports[].nodePort (0 when none).
	NodePort uint16
	// ExternalIPs are spec.externalIPs; LoadBalancerIPs the VIP-mode
	// status.loadBalancer.ingress IPs; SourceRanges loadBalancerSourceRanges.
	// All three are sorted and de-duplicated. SourceRanges holds both
	// families; nil means no restriction, while a non-nil empty slice means
	// every range given was invalid and load balancer traffic must be
	// dropped (fail closed rather than open the Service to the world).
	ExternalIPs     []netip.Addr
	LoadBalancerIPs []netip.Addr
	SourceRanges    []netip.Prefix
	// ExternalPolicyLocal and InternalPolicyLocal are the traffic policies.
	ExternalPolicyLocal bool
	InternalPolicyLocal bool
	// HealthCheckNodePort is spec.healthCheckNodePort (0 when none).
	HealthCheckNodePort uint16

	// Endpoints are merged from all EndpointSlices of the Service,
	// de-duplicated by address and port, sorted by address then port.
	Endpoints []Endpoint
}

// Endpoint is one backend of a service port. The model holds one per
// endpoint and service port for the life of the process (100,000 at 10k
// Services x 10 endpoints): hints, rare, are behind a pointer, and the
// endpoint's own zone, which nothing reads (topology goes by the hints
// and this node's zone, as upstream), is not kept: 56 bytes an endpoint
// instead of 112.
type Endpoint struct {
	Addr        netip.Addr
	Port        uint16
	Ready       bool
	Serving     bool
	Terminating bool
	NodeName    string
	Hints       *Hints // nil: no topology hints
}

// Hints are an endpoint's topology hints, each list sorted.
type Hints struct {
	Zones []string
	Nodes []string
}

// NewHints returns the hints for these zones and nodes (nil for none).
func NewHints(zones, nodes []string) *Hints {
	if len(zones)+len(nodes) == 0 {
		return nil
	}
	return &Hints{Zones: zones, Nodes: nodes}
}

// ZoneHints returns the zones the endpoint is hinted for (none: nil).
func (e Endpoint) ZoneHints() []string {
	if e.Hints == nil {
		return nil
	}
	return e.Hints.Zones
}

// NodeHints returns the nodes the endpoint is hinted for (none: nil).
func (e Endpoint) NodeHints() []string {
	if e.Hints == nil {
		return nil
	}
	return e.Hints.Nodes
}

// AddrPort returns the endpoint's address and port.
func (e Endpoint) AddrPort() netip.AddrPort { return netip.AddrPortFrom(e.Addr, e.Port) }

// IsLocal reports whether the endpoint runs on the given node.
func (e Endpoint) IsLocal(node string) bool { return node != "" && e.NodeName == node }
