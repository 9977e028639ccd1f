package nftrules

import (
	"crypto/sha256"
	"encoding/base32"
	"strings"

	"github.com/nftproxy/nftproxy/proxier/model"
)

// TableName is the name of our table in both families. Nothing outside
// tables of this name is ever read, changed or deleted.
const TableName = "nftproxy"

// Base chains, one per hook we need (see README.md for what each does).
const (
	ChainNATPrerouting  = "nat-prerouting"
	ChainNATOutput      = "nat-output"
	ChainNATPostrouting = "nat-postrouting"
	ChainFilterForward  = "filter-forward"
	ChainFilterOutput   = "filter-output"
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
	// SetHairpin holds endpoint . endpoint pairs: a connection DNATed back to
	// its own source is masqueraded so the reply comes back through us.
	SetHairpin = "hairpin"
)

// EndpointMapName returns the endpoint map of a protocol. There is one per
// protocol because nft requires the map's value type to name the protocol
// of the rule that uses it (typeof ip daddr . tcp dport).
func EndpointMapName(p Protocol) string { return "endpoints-" + p.String() }

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

func chainName(prefix, identity string) string {
	sum := sha256.Sum256([]byte(prefix + "/" + identity))
	hash := strings.ToLower(base32.StdEncoding.EncodeToString(sum[:5]))
	if len(identity) > maxIdentityLen {
		identity = identity[:maxIdentityLen]
	}
	return prefix + "-" + hash + "-" + identity
}
