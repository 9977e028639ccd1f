package nftrules

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nftproxy/nftproxy/proxier/model"
)

// Base chains, one per hook we need (see README.md for what each does).
const (
	ChainNATPrerouting  = "nat-prerouting"
	ChainNATOutput      = "nat-output"
	ChainNATPostrouting = "nat-postrouting"
	ChainFilterForward  = "filter-forward"
	ChainFilterOutput   = "filter-output"
	ChainFilterInput    = "filter-input"
	// ChainFilterPrerouting and ChainFilterOutputPreDNAT run before
	// destination NAT (priority -110): the load balancer source-range
	// firewall sees the load balancer IP there.
	ChainFilterPrerouting    = "filter-prerouting"
	ChainFilterOutputPreDNAT = "filter-output-pre-dnat"
)

// Regular chains shared by all Services.
const (
	// ChainServices dispatches new connections to service chains.
	ChainServices = "services"
	// ChainEndpointsCheck rejects connections to Services without endpoints.
	ChainEndpointsCheck = "service-endpoints-check"
	// ChainMarkForMasquerade sets the masquerade bit of the packet mark.
	ChainMarkForMasquerade = "mark-for-masquerade"
	// ChainReject answers with ICMP port unreachable.
	ChainReject = "reject-chain"
)

// Sets and maps shared by all Services.
const (
	// SetServiceIPs maps daddr . l4proto . dport of a Service to its chain.
	SetServiceIPs = "service-ips"
	// SetNoEndpointServices maps daddr . l4proto . dport of a Service that
	// has no usable endpoint to a reject (or drop) verdict.
	SetNoEndpointServices = "no-endpoint-services"
	// SetClusterIPs holds the ClusterIPs of Services with endpoints:
	// connections to them from outside the cluster CIDR are masqueraded.
	SetClusterIPs = "cluster-ips"
	// SetHairpin holds endpoint . endpoint pairs of this node's endpoints: a
	// connection DNATed back to its own source is masqueraded so the reply
	// comes back through us.
	SetHairpin = "hairpin"

	// SetNodePortIPs holds the addresses NodePorts are served on (the
	// node's addresses selected by --nodeport-addresses).
	SetNodePortIPs = "nodeport-ips"
	// SetServiceNodePorts maps l4proto . dport of a NodePort to the chain
	// its traffic goes to.
	SetServiceNodePorts = "service-nodeports"
	// SetNoEndpointNodePorts maps l4proto . dport of a NodePort whose
	// Service has no usable endpoint to a reject verdict.
	SetNoEndpointNodePorts = "no-endpoint-nodeports"
	// SetMasqueradeExternalIPs holds daddr . l4proto . dport of external IPs
	// and load balancer IPs of service ports with externalTrafficPolicy
	// Cluster: their traffic is masqueraded.
	SetMasqueradeExternalIPs = "masquerade-external-ips"
	// SetMasqueradeNodePorts holds l4proto . dport of NodePorts with
	// externalTrafficPolicy Cluster: their traffic is masqueraded.
	SetMasqueradeNodePorts = "masquerade-nodeports"
	// SetFirewallIPs maps daddr . l4proto . dport of load balancer IPs with
	// loadBalancerSourceRanges to the service port's firewall chain (or to
	// drop when no range of the family is valid).
	SetFirewallIPs = "firewall-ips"
)

// ServicePortsPerEndpointMap is how many service ports share one endpoint
// map. The kernel checks every new map element against every rule bound to
// the map, and every new binding walks every element, so programming cost
// grows with elements × bindings per map: one map for 10k Services × 10
// endpoints took 15 s to commit, maps of 64 service ports take well under
// one. (See README.md.)
const ServicePortsPerEndpointMap = 64

// endpointMapShard is ServicePortsPerEndpointMap, a variable only so that
// BenchmarkKernelEndpointMapShards can measure the layout with one map.
var endpointMapShard uint32 = ServicePortsPerEndpointMap

// EndpointMapName returns the endpoint map holding a service port's
// endpoints: one family of maps per protocol, because nft requires a map's
// value type to name the protocol of the rule that uses it (typeof ip daddr
// . tcp dport), sharded by service port ID.
func EndpointMapName(p nft.Protocol, id uint32) string {
	key := endpointMapKey{p, id / endpointMapShard}
	endpointMapNames.Lock()
	defer endpointMapNames.Unlock()
	name, ok := endpointMapNames.m[key]
	if !ok {
		name = fmt.Sprintf("endpoints-%s-%d", p, key.shard)
		endpointMapNames.m[key] = name
	}
	return name
}

// endpointMapNames are the endpoint maps' names made so far: every service
// chain's rule names its map, and a Builder keeps those rules, so the 64
// service ports of a shard share one string rather than one each (~0.3 MB
// at 10k). At most a few thousand shards per protocol.
var endpointMapNames = struct {
	sync.Mutex
	m map[endpointMapKey]string
}{m: map[endpointMapKey]string{}}

type endpointMapKey struct {
	p     nft.Protocol
	shard uint32
}

// EndpointChainsMapName returns the verdict map from endpoint index to
// endpoint chain, used by service ports with session affinity; sharded
// like the endpoint maps.
func EndpointChainsMapName(id uint32) string {
	return fmt.Sprintf(endpointChainsMapPrefix+"%d", id/endpointMapShard)
}

// EndpointChainName returns the chain of one endpoint of a service port
// with session affinity: "sep-" + hash + ns/name/proto/port__addr/port.
func EndpointChainName(name model.ServicePortName, ep netip.AddrPort) string {
	return chainName("sep", endpointIdentity(name, ep))
}

// AffinitySetName returns the dynamic set of the clients an endpoint of a
// service port with session affinity served. The timeout is part of the
// hashed identity: a new timeout makes a new set rather than a set of
// another shape under the same name.
func AffinitySetName(name model.ServicePortName, ep netip.AddrPort, timeout time.Duration) string {
	return chainName("aff", endpointIdentity(name, ep)+"/"+timeout.String())
}

// endpointChainsMapPrefix starts every EndpointChainsMapName.
const endpointChainsMapPrefix = "endpoint-chains-"

// affinitySetPrefix starts every AffinitySetName.
const affinitySetPrefix = "aff-"

func endpointIdentity(name model.ServicePortName, ep netip.AddrPort) string {
	return name.String() + "__" + ep.Addr().String() + "/" + strconv.Itoa(int(ep.Port()))
}

// parseEndpointMapName is the inverse of EndpointMapName (ok false for
// other names).
func parseEndpointMapName(name string) (p nft.Protocol, shard uint32, ok bool) {
	for _, proto := range nft.Protocols {
		prefix := "endpoints-" + proto.String() + "-"
		if rest, found := strings.CutPrefix(name, prefix); found {
			n, err := strconv.ParseUint(rest, 10, 32)
			return proto, uint32(n), err == nil
		}
	}
	return 0, 0, false
}

// Packet mark and endpoint indexing.
const (
	// MasqueradeBit is the packet-mark bit meaning "masquerade in
	// postrouting", the same bit as kube-proxy's default (1<<14).
	MasqueradeBit uint32 = 0x4000

	// IndexBits is the number of low bits of an endpoint-map key that index
	// an endpoint within its service port: a service port with ID n owns
	// keys [n<<IndexBits, (n+1)<<IndexBits). So at most MaxEndpoints
	// endpoints per service port and family are programmed, and IDs go up to
	// MaxServicePortID.
	IndexBits        = 14
	MaxEndpoints     = 1 << IndexBits
	MaxServicePortID = 1<<(32-IndexBits) - 1
)

// maxIdentityLen bounds the readable part of a chain name so that names stay
// well below the kernel's limit whatever the namespace and Service names.
const maxIdentityLen = 96

// ServiceChainName returns the chain of one service port in one family:
// "svc-" + a short hash of the identity + "-" + ns/name/proto/port. The hash
// keeps names unique when the readable part is truncated.
func ServiceChainName(name model.ServicePortName) string {
	return chainName("svc", name.String())
}

// ExternalChainName returns the chain external traffic (NodePort, external
// IPs, load balancer IPs) of a service port goes to when it cannot go
// straight to the service chain: externalTrafficPolicy Local, or
// internalTrafficPolicy Local with external exposure.
func ExternalChainName(name model.ServicePortName) string {
	return chainName("ext", name.String())
}

// FirewallChainName returns the chain checking the source of traffic to a
// service port's load balancer IPs against loadBalancerSourceRanges.
func FirewallChainName(name model.ServicePortName) string {
	return chainName("fw", name.String())
}

func chainName(prefix, identity string) string {
	sum := sha256.Sum256([]byte(prefix + "/" + identity))
	hash := strings.ToLower(base32.StdEncoding.EncodeToString(sum[:5]))
	// nft cannot parse ':' in a name (IPv6 endpoint addresses): print it
	// as '.'; the hash is of the real identity.
	identity = strings.ReplaceAll(identity, ":", ".")
	if len(identity) > maxIdentityLen {
		identity = identity[:maxIdentityLen]
	}
	return prefix + "-" + hash + "-" + identity
}
