// Package dump turns nftproxy's live nftables tables into an admin's view:
// one entry per Service port with its addresses and the endpoints the
// kernel may DNAT to, reconstructed from the sets, maps and service chains
// (see nftrules/README.md for the layout), optionally compared with what
// the Kubernetes API says the node should program.
//
// The types below are the JSON output of `nftproxy --dump --dump-format=json`,
// documented in docs/dump-schema.md. Schema changes that could break a
// script bump SchemaVersion; adding optional fields does not.
package dump

// SchemaVersion is the version of the JSON schema below.
const SchemaVersion = 1

// Dump is the whole view.
type Dump struct {
	// SchemaVersion is always SchemaVersion (1).
	SchemaVersion int `json:"schemaVersion"`
	// ComparedWithAPI is true when the kernel was compared with the API's
	// objects (a kubeconfig was available): Drift fields are meaningful.
	ComparedWithAPI bool `json:"comparedWithAPI"`
	// Node is the node name the API objects were evaluated for (empty
	// without API comparison).
	Node string `json:"node,omitempty"`
	// Tables describes each of our tables found in the kernel; none when
	// nftproxy has programmed nothing (or after --cleanup).
	Tables []Table `json:"tables"`
	// Services holds one entry per Service port, sorted by namespace,
	// name, port name and protocol; ports whose name the kernel does not
	// record (no endpoints, no API) come last.
	Services []ServicePort `json:"services"`
}

// Table summarises one nftables table of ours.
type Table struct {
	// Family is "ip" or "ip6".
	Family string `json:"family"`
	// Name is the table name ("nftproxy").
	Name   string `json:"name"`
	Chains int    `json:"chains"`
	Rules  int    `json:"rules"`
	Sets   int    `json:"sets"`
	// Elements counts the elements of the sets read; UnreadSets names
	// sets whose elements the dump did not read (the hairpin set: one
	// element per endpoint address, not needed by the view).
	Elements   int      `json:"elements"`
	UnreadSets []string `json:"unreadSets,omitempty"`
	// Masquerade is how ClusterIP traffic of this family is masqueraded.
	Masquerade Masquerade `json:"masquerade"`
	// Problems lists inconsistencies found in the table that belong to no
	// single Service port (rules not written by nftproxy, orphan chains or
	// map entries, unknown sets).
	Problems []string `json:"problems,omitempty"`
	// Drift lists differences of table-wide settings with the API view.
	Drift []string `json:"drift,omitempty"`
}

// Masquerade modes.
const (
	// MasqueradeNone: ClusterIP traffic is not masqueraded (no
	// --cluster-cidr, no --masquerade-all); hairpin traffic still is.
	MasqueradeNone = "none"
	// MasqueradeAll: all ClusterIP traffic is masqueraded.
	MasqueradeAll = "all"
	// MasqueradeOffCluster: traffic from outside ClusterCIDRs is.
	MasqueradeOffCluster = "off-cluster"
	// MasqueradeUnknown: the services chain holds a rule we cannot read.
	MasqueradeUnknown = "unknown"
)

// Masquerade is the ClusterIP masquerade policy of one family.
type Masquerade struct {
	// Mode is one of "none", "all", "off-cluster", "unknown".
	Mode string `json:"mode"`
	// ClusterCIDRs are the pod ranges whose traffic is not masqueraded
	// (mode "off-cluster" only).
	ClusterCIDRs []string `json:"clusterCIDRs,omitempty"`
}

// ServicePort is one port of one Service as programmed.
type ServicePort struct {
	// Namespace and Name of the Service; empty when unknown (the kernel
	// records no name for an address that rejects or drops everything;
	// pass a kubeconfig).
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
	// PortName is the Service port's name ("" for an unnamed port).
	PortName string `json:"portName"`
	// Protocol is "TCP", "UDP" or "SCTP".
	Protocol string `json:"protocol"`
	// Port is the Service port number.
	Port uint16 `json:"port"`
	// NameTruncated is true when the chain name holds only the start of a
	// long namespace/name (the full name needs a kubeconfig).
	NameTruncated bool `json:"nameTruncated,omitempty"`
	// Frontends are the ways clients reach the port, per family: cluster
	// IPs first, then external IPs, then node ports; "ip" before "ip6".
	Frontends []Frontend `json:"frontends"`
	// API holds what the Kubernetes API says about this port (only with
	// a kubeconfig; nil when the API has no such port).
	API *APIPort `json:"api,omitempty"`
	// Drift lists differences between the kernel and the API view; empty
	// when they agree or when not compared.
	Drift []string `json:"drift,omitempty"`
	// Problems lists inconsistencies of this port's kernel objects
	// (missing map entries, unreadable rules...).
	Problems []string `json:"problems,omitempty"`
}

// Frontend kinds.
const (
	KindClusterIP = "clusterIP"
	// KindExternalIP is an address of spec.externalIPs or a load-balancer
	// ingress IP (the kernel does not tell them apart).
	KindExternalIP = "externalIP"
	KindNodePort   = "nodePort"
	// KindIP is an address whose traffic is rejected or dropped: the
	// kernel does not record whether it is a cluster or an external IP.
	KindIP = "ip"
)

// Status values of a Frontend.
const (
	// StatusActive: new connections are DNATed to one of Endpoints.
	StatusActive = "active"
	// StatusNoEndpoints: new connections are rejected (TCP reset for TCP,
	// ICMP port unreachable otherwise).
	StatusNoEndpoints = "no-endpoints"
	// StatusDrop: new connections are dropped (a Local traffic policy
	// without local endpoints).
	StatusDrop = "drop"
	// StatusMissing: the API view has this frontend, the kernel does not.
	StatusMissing = "missing"
)

// Frontend is one address (or node port) of a Service port in one table.
type Frontend struct {
	// Kind is "clusterIP", "externalIP", "nodePort" or "ip".
	Kind string `json:"kind"`
	// Family is "ip" or "ip6".
	Family string `json:"family"`
	// Address is the destination address; empty for a node port (any
	// local address of the node).
	Address string `json:"address,omitempty"`
	// Port is the destination port: the Service port, or the node port.
	Port uint16 `json:"port"`
	// Status is "active", "no-endpoints", "drop" or "missing".
	Status string `json:"status"`
	// Chain is the chain the dispatch map sends new connections to.
	Chain string `json:"chain,omitempty"`
	// Map and FirstKey locate the endpoints in the shared maps: entries
	// FirstKey.. of the endpoint map (or, with session affinity, of the
	// endpoint-chains map) Map.
	Map      string `json:"map,omitempty"`
	FirstKey uint32 `json:"firstKey,omitempty"`
	// Endpoints are the DNAT destinations in map order; each new
	// connection picks one uniformly at random (weight 1/len) unless
	// SourceDependent.
	Endpoints []Endpoint `json:"endpoints"`
	// SourceDependent: the chain chooses by client (externalTrafficPolicy
	// Local: pods and the node reach every endpoint, other clients only
	// local ones, or are dropped); Endpoints is then the union.
	SourceDependent bool `json:"sourceDependent,omitempty"`
	// AffinityTimeoutSeconds is set when the rules keep ClientIP session
	// affinity: a client returns to its endpoint for that long.
	AffinityTimeoutSeconds int `json:"affinityTimeoutSeconds,omitempty"`
}

// Endpoint is one DNAT destination.
type Endpoint struct {
	Address string `json:"address"`
	Port    uint16 `json:"port"`
}

// APIPort is the API's view of a Service port, as the proxier converts it
// (only fields that affect or describe the programmed rules).
type APIPort struct {
	ClusterIPs      []string `json:"clusterIPs"`
	NodePort        uint16   `json:"nodePort,omitempty"`
	ExternalIPs     []string `json:"externalIPs,omitempty"`
	LoadBalancerIPs []string `json:"loadBalancerIPs,omitempty"`
	// SessionAffinity is "ClientIP" or "None"; AffinityTimeoutSeconds is
	// set for ClientIP.
	SessionAffinity        string `json:"sessionAffinity"`
	AffinityTimeoutSeconds int32  `json:"affinityTimeoutSeconds,omitempty"`
	// ExternalTrafficPolicy and InternalTrafficPolicy are "Cluster" or
	// "Local".
	ExternalTrafficPolicy string `json:"externalTrafficPolicy"`
	InternalTrafficPolicy string `json:"internalTrafficPolicy"`
	// Endpoints counts the endpoints of the API objects (all conditions);
	// ready and serving-terminating ones are eligible.
	Endpoints int `json:"endpoints"`
}
