package model

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Rejection records one piece of input that gets no rules, and why. The
// conversion functions are pure: they do not log, they return rejections so
// that the caller can log them and later turn them into Events.
type Rejection struct {
	// Kind is "Service" or "EndpointSlice".
	Kind      string
	Namespace string
	Name      string
	// Invalid is true for malformed input (worth a warning); false for
	// objects that by design get no rules (ExternalName, headless, FQDN).
	Invalid bool
	// Reason is a CamelCase word, usable as an Event reason.
	Reason  string
	Message string
}

func (r Rejection) String() string {
	return fmt.Sprintf("%s %s/%s: %s: %s", r.Kind, r.Namespace, r.Name, r.Reason, r.Message)
}

// Label that ties an EndpointSlice to its Service.
const LabelServiceName = discovery.LabelServiceName

// DefaultAffinityTimeoutSeconds is the ClientIP affinity timeout when the
// Service does not set one (same as the API default).
const DefaultAffinityTimeoutSeconds = v1.DefaultClientIPServiceAffinitySeconds

// MaxAffinityTimeoutSeconds is the largest timeout the API accepts (one day).
const MaxAffinityTimeoutSeconds int32 = 86400

// ServicePorts converts a Service and all its EndpointSlices into service
// ports sorted by Name, with endpoints attached. IDs are left zero: the
// proxier owns them. It never fails as a whole: a malformed field, port,
// slice or endpoint is left out and reported, and the rest is converted.
//
// The returned ServicePorts share slices (ExternalIPs, ...) between them;
// callers must treat them as immutable.
func ServicePorts(svc *v1.Service, slices []*discovery.EndpointSlice) ([]*ServicePort, []Rejection) {
	if svc == nil {
		return nil, nil
	}
	r := &rejector{kind: "Service", namespace: svc.Namespace, name: svc.Name}
	ports := servicePorts(svc, r)
	if len(ports) > 0 {
		attachEndpoints(svc, ports, slices, r)
	}
	return ports, r.list
}

// rejector collects the rejections of one conversion.
type rejector struct {
	kind, namespace, name string
	list                  []Rejection
}

func (r *rejector) invalid(reason, format string, args ...any) {
	r.add(r.kind, r.namespace, r.name, true, reason, fmt.Sprintf(format, args...))
}

func (r *rejector) skipped(reason, format string, args ...any) {
	r.add(r.kind, r.namespace, r.name, false, reason, fmt.Sprintf(format, args...))
}

func (r *rejector) add(kind, ns, name string, invalid bool, reason, msg string) {
	r.list = append(r.list, Rejection{Kind: kind, Namespace: ns, Name: name, Invalid: invalid, Reason: reason, Message: msg})
}

// portKey is how endpoint ports are matched to service ports: by port name
// and protocol, as upstream kube-proxy does (never by number).
type portKey struct {
	name  string
	proto v1.Protocol
}

func keyOf(n ServicePortName) portKey { return portKey{n.Port, n.Protocol} }

// knownProtocol reports whether we can program the protocol.
func knownProtocol(p v1.Protocol) bool {
	return p == v1.ProtocolTCP || p == v1.ProtocolUDP || p == v1.ProtocolSCTP
}

// compareEndpoints orders endpoints by address, then port.
func compareEndpoints(a, b Endpoint) int {
	if c := a.Addr.Compare(b.Addr); c != 0 {
		return c
	}
	return cmp.Compare(a.Port, b.Port)
}

// sortedUniqueAddrs sorts and de-duplicates in place.
func sortedUniqueAddrs(a []netip.Addr) []netip.Addr {
	slices.SortFunc(a, netip.Addr.Compare)
	return slices.Compact(a)
}

func serviceKey(svc *v1.Service) types.NamespacedName {
	return types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}
}
