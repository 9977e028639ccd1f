package model

import (
	"fmt"
	"net/netip"
	"slices"

	v1 "k8s.io/api/core/v1"
)

// servicePorts converts the Service part (everything but endpoints).
func servicePorts(svc *v1.Service, r *rejector) []*ServicePort {
	spec := &svc.Spec
	if spec.Type == v1.ServiceTypeExternalName {
		r.skipped("ExternalName", "ExternalName Services are resolved by DNS, not proxied")
		return nil
	}
	clusterIPs := clusterIPsOf(svc, r)
	if clusterIPs == nil {
		return nil
	}
	families := map[bool]bool{} // is4 -> present
	for _, ip := range clusterIPs {
		families[ip.Is4()] = true
	}

	// Fields common to every port of the Service, computed once and shared.
	tmpl := ServicePort{
		ClusterIPs:          clusterIPs,
		ExternalIPs:         addrsOfFamilies(spec.ExternalIPs, families, "externalIPs", r),
		LoadBalancerIPs:     addrsOfFamilies(vipIngressIPs(svc), families, "status.loadBalancer.ingress", r),
		SourceRanges:        sourceRanges(spec.LoadBalancerSourceRanges, r),
		ExternalPolicyLocal: externalPolicyLocal(svc),
		InternalPolicyLocal: spec.InternalTrafficPolicy != nil && *spec.InternalTrafficPolicy == v1.ServiceInternalTrafficPolicyLocal,
	}
	if spec.SessionAffinity == v1.ServiceAffinityClientIP {
		tmpl.SessionAffinityClientIP = true
		tmpl.AffinityTimeoutSeconds = affinityTimeout(svc, r)
	}
	// Upstream only serves health checks for ETP Local LoadBalancers.
	if spec.Type == v1.ServiceTypeLoadBalancer && tmpl.ExternalPolicyLocal {
		if hc := spec.HealthCheckNodePort; hc > 0 && hc <= 65535 {
			tmpl.HealthCheckNodePort = uint16(hc)
		} else if hc != 0 {
			r.invalid("InvalidHealthCheckNodePort", "healthCheckNodePort %d out of range", hc)
		}
	}

	out := make([]*ServicePort, 0, len(spec.Ports))
	seenName := make(map[portKey]bool, len(spec.Ports))
	seenPort := make(map[numKey]bool, len(spec.Ports))
	for i := range spec.Ports {
		sp := servicePort(svc, &spec.Ports[i], &tmpl, r)
		if sp == nil {
			continue
		}
		byNum := numKey{port: sp.Port, proto: sp.Protocol}
		if seenName[keyOf(sp.Name)] || seenPort[byNum] {
			r.invalid("DuplicatePort", "port %q (%d/%s) duplicates an earlier port; ignored", sp.Name.Port, sp.Port, sp.Protocol)
			continue
		}
		seenName[keyOf(sp.Name)] = true
		seenPort[byNum] = true
		out = append(out, sp)
	}
	slices.SortFunc(out, func(a, b *ServicePort) int {
		switch {
		case a.Name.Less(b.Name):
			return -1
		case b.Name.Less(a.Name):
			return 1
		}
		return 0
	})
	return out
}

// numKey identifies a port by number: two ports of a Service may not share
// a number and protocol, or they would fight over the same dispatch entry.
type numKey struct {
	port  uint16
	proto v1.Protocol
}

// servicePort converts one spec.ports entry, or returns nil if it is
// unusable.
func servicePort(svc *v1.Service, p *v1.ServicePort, tmpl *ServicePort, r *rejector) *ServicePort {
	proto := p.Protocol
	if proto == "" {
		proto = v1.ProtocolTCP // the API server's default
	}
	if !knownProtocol(proto) {
		r.invalid("UnknownProtocol", "port %q: unknown protocol %q", p.Name, p.Protocol)
		return nil
	}
	if p.Port <= 0 || p.Port > 65535 {
		r.invalid("InvalidPort", "port %q: port %d out of range", p.Name, p.Port)
		return nil
	}
	if p.NodePort < 0 || p.NodePort > 65535 {
		r.invalid("InvalidNodePort", "port %q: nodePort %d out of range", p.Name, p.NodePort)
		return nil
	}
	sp := *tmpl
	sp.Name = ServicePortName{NamespacedName: serviceKey(svc), Port: p.Name, Protocol: proto}
	sp.Port = uint16(p.Port)
	sp.Protocol = proto
	sp.NodePort = uint16(p.NodePort)
	return &sp
}

// clusterIPsOf returns the Service's cluster IPs, primary first, or nil
// when it has none to program.
func clusterIPsOf(svc *v1.Service, r *rejector) []netip.Addr {
	raw := svc.Spec.ClusterIPs
	if len(raw) == 0 && svc.Spec.ClusterIP != "" {
		// Objects written before dual-stack only carry spec.clusterIP.
		raw = []string{svc.Spec.ClusterIP}
	}
	if len(raw) == 0 || raw[0] == v1.ClusterIPNone {
		r.skipped("Headless", "headless Service (no cluster IP): nothing to proxy")
		return nil
	}
	var out []netip.Addr
	for i, s := range raw {
		ip, err := ParseIP(s)
		if err != nil {
			r.invalid("InvalidClusterIP", "clusterIPs: %v", err)
			continue
		}
		if ip.IsUnspecified() {
			r.invalid("InvalidClusterIP", "clusterIPs: unspecified address %q", s)
			continue
		}
		if msg := familyMismatch(svc.Spec.IPFamilies, i, ip); msg != "" {
			r.invalid("InvalidClusterIP", "clusterIPs[%d] %s %s; ignored", i, ip, msg)
			continue
		}
		if slices.ContainsFunc(out, func(o netip.Addr) bool { return o.Is4() == ip.Is4() }) {
			r.invalid("InvalidClusterIP", "clusterIPs: second address %q of the same family ignored", s)
			continue
		}
		out = append(out, ip)
	}
	if len(out) == 0 {
		r.invalid("NoValidClusterIP", "no usable cluster IP in %q", raw)
		return nil
	}
	return out
}

// familyMismatch says why cluster IP i does not agree with ipFamilies
// (the apiserver keeps clusterIPs[i] of family ipFamilies[i]), or "".
// Objects without ipFamilies (written before dual-stack) are not checked.
func familyMismatch(families []v1.IPFamily, i int, ip netip.Addr) string {
	switch {
	case len(families) == 0:
		return ""
	case i >= len(families):
		return "has no entry in ipFamilies"
	case families[i] == v1.IPv4Protocol && ip.Is4(), families[i] == v1.IPv6Protocol && ip.Is6():
		return ""
	}
	return fmt.Sprintf("is not of family %q, which ipFamilies[%d] names", families[i], i)
}

// addrsOfFamilies parses IPs, keeping those of a family the Service has a
// cluster IP for (upstream does not translate between families), sorted
// and de-duplicated.
func addrsOfFamilies(raw []string, families map[bool]bool, field string, r *rejector) []netip.Addr {
	if len(raw) == 0 {
		return nil
	}
	out := make([]netip.Addr, 0, len(raw))
	for _, s := range raw {
		ip, err := ParseIP(s)
		if err != nil {
			r.invalid("InvalidIP", "%s: %v", field, err)
			continue
		}
		if ip.IsUnspecified() {
			r.invalid("InvalidIP", "%s: unspecified address %q", field, s)
			continue
		}
		if !families[ip.Is4()] {
			r.invalid("IPFamilyMismatch", "%s: %s ignored: the Service has no cluster IP of its family", field, ip)
			continue
		}
		out = append(out, ip)
	}
	if len(out) == 0 {
		return nil
	}
	return sortedUniqueAddrs(out)
}

// vipIngressIPs lists the load balancer IPs traffic arrives at unchanged:
// ipMode unset or VIP. With ipMode Proxy the load balancer itself delivers
// to the nodes, so capturing its IP here would break it.
func vipIngressIPs(svc *v1.Service) []string {
	var out []string
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		if ing.IP == "" {
			continue // hostname-only ingress
		}
		if ing.IPMode != nil && *ing.IPMode != v1.LoadBalancerIPModeVIP {
			continue
		}
		out = append(out, ing.IP)
	}
	return out
}

// sourceRanges parses loadBalancerSourceRanges of both families (Build
// applies each family's ranges to that family's table).
func sourceRanges(raw []string, r *rejector) []netip.Prefix {
	if len(raw) == 0 {
		return nil
	}
	out := make([]netip.Prefix, 0, len(raw))
	for _, s := range raw {
		p, err := ParseCIDR(s)
		if err != nil {
			r.invalid("InvalidSourceRange", "loadBalancerSourceRanges: %v", err)
			continue
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		// Every range was bad. Returning nil would open the load balancer
		// to the world; a range that matches nothing keeps it closed.
		r.invalid("InvalidSourceRange", "no valid loadBalancerSourceRanges: load balancer IPs accept no traffic")
		return []netip.Prefix{}
	}
	slices.SortFunc(out, comparePrefix)
	return slices.Compact(out)
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// externalPolicyLocal mirrors upstream: the policy only matters for
// Services reachable from outside (NodePort, LoadBalancer, or external IPs).
func externalPolicyLocal(svc *v1.Service) bool {
	s := &svc.Spec
	external := s.Type == v1.ServiceTypeNodePort || s.Type == v1.ServiceTypeLoadBalancer ||
		(s.Type == v1.ServiceTypeClusterIP && len(s.ExternalIPs) > 0)
	return external && s.ExternalTrafficPolicy == v1.ServiceExternalTrafficPolicyLocal
}

func affinityTimeout(svc *v1.Service, r *rejector) int32 {
	cfg := svc.Spec.SessionAffinityConfig
	if cfg == nil || cfg.ClientIP == nil || cfg.ClientIP.TimeoutSeconds == nil {
		return DefaultAffinityTimeoutSeconds
	}
	t := *cfg.ClientIP.TimeoutSeconds
	if t <= 0 || t > MaxAffinityTimeoutSeconds {
		r.invalid("InvalidAffinityTimeout", "sessionAffinityConfig.clientIP.timeoutSeconds %d out of range (1..%d); using %d",
			t, MaxAffinityTimeoutSeconds, DefaultAffinityTimeoutSeconds)
		return DefaultAffinityTimeoutSeconds
	}
	return t
}
