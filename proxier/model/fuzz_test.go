package model

import (
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
)

// FuzzServicePorts decodes a Service and EndpointSlices from the fuzzer's
// bytes (fuzz_decode_test.go) and checks that ServicePorts neither panics
// nor changes its input, that its result does not depend on the order of
// the slices, and that the result is well-formed and accounted for: every
// port, address, range and endpoint the input offers is either in the
// result or named by a rejection. testdata/fuzz/FuzzServicePorts holds the
// inputs worth keeping.
func FuzzServicePorts(f *testing.F) {
	// Each byte is one choice of fuzzInput, in the order it decodes them.
	f.Add([]byte{})
	f.Add([]byte{
		// Service ns/svc, LoadBalancer, ClusterIPs 10.96.0.10 and fd00::10
		0, 0, 0, 2, 2, 0, 1, 0,
		// ports http/TCP 80 nodePort 30000, dns/UDP 53
		2, 1, 1, 3, 6, 2, 2, 2, 0,
		// externalIP 203.0.113.7, ingress 2001:db8::7, range 10.0.0.0/8,
		// ETP Local, ITP Cluster, ClientIP affinity (1 s), HC port 443
		1, 6, 1, 7, 0, 1, 0, 1, 1, 0, 1, 1, 1, 1, 2, 4,
		// two slices; IPv4 with ports http 8080 and dns 53 ...
		2, 1, 3, 0, 2, 1, 1, 1, 1, 1, 5, 1, 2, 1, 2, 1, 2,
		// ... endpoints 10.0.0.1 (on this node), 10.0.0.2 (serving,
		// terminating, elsewhere) and 10.0.0.1 again
		3, 1, 2, 0, 0, 0, 1, 0, 0, 1,
		1, 3, 1, 0, 1, 1, 1, 1, 1, 1, 0, 1,
		1, 2, 0, 0, 0, 0, 0, 1,
		// IPv6 with port http 8080: 24 generated endpoints, duplicates
		1, 3, 1, 1, 1, 1, 1, 1, 1, 5, 0x83, 1, 10,
	})
	f.Add([]byte{
		// legacy and mapped cluster IPs, bad and duplicate ports, every
		// spelling of a bad address and range
		0, 1, 2, 1, 3, 10, 12, 24, 1, 11, 4, 0, 4, 9, 3, 1, 4, 5, 10, 10, 3, 3, 3,
		4, 15, 17, 19, 21, 3, 22, 0, 26, 1, 33, 2, 3, 8, 9, 14,
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		in := &fuzzInput{b: data}
		svc := in.service()
		eps := in.slices(svc)
		svcCopy, epsCopy := svc.DeepCopy(), deepCopySlices(eps)

		ports, rejections := ServicePorts(svc, eps)

		if !reflect.DeepEqual(svc, svcCopy) || !reflect.DeepEqual(eps, epsCopy) {
			t.Fatal("ServicePorts changed its input")
		}
		reversed := slices.Clone(eps)
		slices.Reverse(reversed)
		again, againRej := ServicePorts(svc, reversed)
		if !reflect.DeepEqual(ports, again) || !reflect.DeepEqual(rejections, againRej) {
			t.Fatalf("result depends on the order of the slices:\n%v\n%v\nthen\n%v\n%v", ports, rejections, again, againRej)
		}
		if svc == nil {
			if ports != nil || rejections != nil {
				t.Fatalf("nil Service: got %v, %v", ports, rejections)
			}
			return
		}
		checkServicePorts(t, svc, eps, ports, rejections)
	})
}

func deepCopySlices(eps []*discovery.EndpointSlice) []*discovery.EndpointSlice {
	if eps == nil {
		return nil
	}
	out := make([]*discovery.EndpointSlice, len(eps))
	for i, s := range eps {
		out[i] = s.DeepCopy()
	}
	return out
}

// rejectionCount counts the rejections of a kind whose reason is one of
// reasons (any reason if none is given) and whose message has the prefix.
func rejectionCount(rs []Rejection, kind, name, prefix string, reasons ...string) int {
	n := 0
	for _, r := range rs {
		if r.Kind == kind && (name == "" || r.Name == name) && strings.HasPrefix(r.Message, prefix) &&
			(len(reasons) == 0 || slices.Contains(reasons, r.Reason)) {
			n++
		}
	}
	return n
}

func checkServicePorts(t *testing.T, svc *v1.Service, eps []*discovery.EndpointSlice, ports []*ServicePort, rs []Rejection) {
	t.Helper()
	for _, r := range rs {
		if r.Reason == "" || (r.Kind != "Service" && r.Kind != "EndpointSlice") ||
			(r.Kind == "Service" && (r.Namespace != svc.Namespace || r.Name != svc.Name)) {
			t.Errorf("malformed rejection %+v", r)
		}
	}
	skipped := rejectionCount(rs, "Service", "", "", "ExternalName", "Headless", "NoValidClusterIP") > 0
	if skipped && len(ports) > 0 {
		t.Fatalf("skipped Service has ports: %v; rejections %v", ports, rs)
	}
	if skipped {
		return
	}
	// Every spec port is converted or rejected, exactly once.
	portRejects := rejectionCount(rs, "Service", "", "", "UnknownProtocol", "InvalidPort", "InvalidNodePort", "DuplicatePort")
	if len(ports)+portRejects != len(svc.Spec.Ports) {
		t.Errorf("%d spec ports, %d converted, %d rejected", len(svc.Spec.Ports), len(ports), portRejects)
	}
	for i, sp := range ports {
		checkServicePort(t, svc, sp)
		if i > 0 && !ports[i-1].Name.Less(sp.Name) {
			t.Errorf("ports not sorted and unique: %v before %v", ports[i-1].Name, sp.Name)
		}
		for _, o := range ports[:i] {
			if o.Port == sp.Port && o.Protocol == sp.Protocol {
				t.Errorf("two ports %v and %v on %d/%s", o.Name, sp.Name, sp.Port, sp.Protocol)
			}
		}
	}
	if len(ports) == 0 {
		return
	}
	// Dropped addresses and ranges are rejected one by one (all ports share
	// the Service's fields, so the first tells).
	sp := ports[0]
	accountAddrs(t, "externalIPs", svc.Spec.ExternalIPs, sp.ExternalIPs, rs)
	accountAddrs(t, "status.loadBalancer.ingress", vipIngressIPs(svc), sp.LoadBalancerIPs, rs)
	badRanges := 0
	for _, s := range svc.Spec.LoadBalancerSourceRanges {
		if _, err := ParseCIDR(s); err != nil {
			badRanges++
		}
	}
	wantRangeRejects := badRanges
	if raw := svc.Spec.LoadBalancerSourceRanges; len(raw) > 0 && badRanges == len(raw) {
		wantRangeRejects++ // and one for "no valid range: fail closed"
	}
	if got := rejectionCount(rs, "Service", "", "", "InvalidSourceRange"); got != wantRangeRejects {
		t.Errorf("%d invalid source ranges of %q, %d rejections", badRanges, svc.Spec.LoadBalancerSourceRanges, got)
	}
	if (len(svc.Spec.LoadBalancerSourceRanges) == 0) != (sp.SourceRanges == nil) {
		t.Errorf("source ranges %q converted to %v (nil means no restriction)", svc.Spec.LoadBalancerSourceRanges, sp.SourceRanges)
	}
	checkEndpoints(t, svc, eps, ports, rs)
}

// checkServicePort checks one converted port on its own.
func checkServicePort(t *testing.T, svc *v1.Service, sp *ServicePort) {
	t.Helper()
	if sp.Name.Namespace != svc.Namespace || sp.Name.Name != svc.Name || sp.Name.Protocol != sp.Protocol ||
		!knownProtocol(sp.Protocol) || sp.Port == 0 || sp.ID != 0 {
		t.Errorf("bad port %+v", sp)
	}
	if len(sp.ClusterIPs) == 0 || len(sp.ClusterIPs) > 2 ||
		(len(sp.ClusterIPs) == 2 && sp.ClusterIPs[0].Is4() == sp.ClusterIPs[1].Is4()) {
		t.Errorf("%v: cluster IPs %v: want one per family", sp.Name, sp.ClusterIPs)
	}
	families := map[bool]bool{}
	for _, ip := range sp.ClusterIPs {
		checkAddr(t, sp.Name, "cluster IP", ip)
		families[ip.Is4()] = true
	}
	for what, ips := range map[string][]netip.Addr{"external IP": sp.ExternalIPs, "load balancer IP": sp.LoadBalancerIPs} {
		for i, ip := range ips {
			checkAddr(t, sp.Name, what, ip)
			if !families[ip.Is4()] {
				t.Errorf("%v: %s %s of a family without a cluster IP %v", sp.Name, what, ip, sp.ClusterIPs)
			}
			if i > 0 && ips[i-1].Compare(ip) >= 0 {
				t.Errorf("%v: %ss not sorted and unique: %v", sp.Name, what, ips)
			}
		}
	}
	for i, p := range sp.SourceRanges {
		if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() || p.Addr().Zone() != "" ||
			(i > 0 && comparePrefix(sp.SourceRanges[i-1], p) >= 0) {
			t.Errorf("%v: source ranges %v: want valid, masked, sorted, unique", sp.Name, sp.SourceRanges)
		}
	}
	if sp.SessionAffinityClientIP != (svc.Spec.SessionAffinity == v1.ServiceAffinityClientIP) ||
		(sp.SessionAffinityClientIP && (sp.AffinityTimeoutSeconds < 1 || sp.AffinityTimeoutSeconds > MaxAffinityTimeoutSeconds)) ||
		(!sp.SessionAffinityClientIP && sp.AffinityTimeoutSeconds != 0) {
		t.Errorf("%v: affinity %v, timeout %d", sp.Name, sp.SessionAffinityClientIP, sp.AffinityTimeoutSeconds)
	}
	if sp.HealthCheckNodePort != 0 && (svc.Spec.Type != v1.ServiceTypeLoadBalancer || !sp.ExternalPolicyLocal) {
		t.Errorf("%v: health check node port %d on a %s Service, external policy Local %v", sp.Name, sp.HealthCheckNodePort, svc.Spec.Type, sp.ExternalPolicyLocal)
	}
	for i, ep := range sp.Endpoints {
		checkAddr(t, sp.Name, "endpoint", ep.Addr)
		if err := checkEndpointIP(ep.Addr); err != nil || ep.Port == 0 {
			t.Errorf("%v: endpoint %v: %v", sp.Name, ep.AddrPort(), err)
		}
		if i > 0 && compareEndpoints(sp.Endpoints[i-1], ep) >= 0 {
			t.Errorf("%v: endpoints not sorted and unique: %v, %v", sp.Name, sp.Endpoints[i-1].AddrPort(), ep.AddrPort())
		}
		if !slices.IsSorted(ep.ZoneHints()) || !slices.IsSorted(ep.NodeHints()) {
			t.Errorf("%v: endpoint %v: hints not sorted: %v %v", sp.Name, ep.AddrPort(), ep.ZoneHints(), ep.NodeHints())
		}
	}
}

// checkAddr checks what every converted address must be: valid, specified,
// IPv4 as IPv4 (never IPv4-mapped IPv6) and without a zone.
func checkAddr(t *testing.T, name ServicePortName, what string, ip netip.Addr) {
	t.Helper()
	if !ip.IsValid() || ip.IsUnspecified() || ip.Is4In6() || ip.Zone() != "" {
		t.Errorf("%v: bad %s %v", name, what, ip)
	}
}

// accountAddrs checks that each raw address missing from the result (bad,
// unspecified, or of a family without a cluster IP) has its rejection.
func accountAddrs(t *testing.T, field string, raw []string, got []netip.Addr, rs []Rejection) {
	t.Helper()
	dropped := 0
	for _, s := range raw {
		ip, err := ParseIP(s)
		if err != nil || !slices.Contains(got, ip) {
			dropped++
		}
	}
	if n := rejectionCount(rs, "Service", "", field+":"); n != dropped {
		t.Errorf("%s %q: %d dropped, %d rejected (kept %v)", field, raw, dropped, n, got)
	}
}

// checkEndpoints recomputes, independently of attachEndpoints, which
// endpoints each port must have, and which slices must be rejected.
func checkEndpoints(t *testing.T, svc *v1.Service, eps []*discovery.EndpointSlice, ports []*ServicePort, rs []Rejection) {
	t.Helper()
	want := make([]map[netip.AddrPort]bool, len(ports)) // -> some copy is ready
	for i := range want {
		want[i] = map[netip.AddrPort]bool{}
	}
	for _, sl := range eps {
		if sl == nil {
			continue
		}
		mustReject := func(reason string, invalid bool) {
			for _, r := range rs {
				if r.Kind == "EndpointSlice" && r.Name == sl.Name && r.Reason == reason && r.Invalid == invalid {
					return
				}
			}
			t.Errorf("slice %s/%s: no %s rejection in %v", sl.Namespace, sl.Name, reason, rs)
		}
		if sl.Namespace != svc.Namespace || sl.Labels[LabelServiceName] != svc.Name {
			mustReject("WrongService", true)
			continue
		}
		var want4 bool
		switch sl.AddressType {
		case discovery.AddressTypeIPv4:
			want4 = true
		case discovery.AddressTypeIPv6:
		case discovery.AddressTypeFQDN:
			mustReject("FQDNEndpoints", false)
			continue
		default:
			mustReject("UnknownAddressType", true)
			continue
		}
		var valid []discovery.Endpoint
		for _, e := range sl.Endpoints {
			if len(e.Addresses) == 0 {
				continue
			}
			ip, err := ParseIP(e.Addresses[0])
			if err == nil && ip.Is4() == want4 && checkEndpointIP(ip) == nil {
				valid = append(valid, e)
			}
		}
		if n := rejectionCount(rs, "EndpointSlice", sl.Name, "", "InvalidEndpoint"); (len(valid) < len(sl.Endpoints)) != (n == 1) || n > 1 {
			t.Errorf("slice %s: %d of %d endpoints valid, %d InvalidEndpoint rejections", sl.Name, len(valid), len(sl.Endpoints), n)
		}
		if len(valid) == 0 {
			continue
		}
		for _, p := range sl.Ports {
			name, proto := "", v1.ProtocolTCP
			if p.Name != nil {
				name = *p.Name
			}
			if p.Protocol != nil {
				proto = *p.Protocol
			}
			i := slices.IndexFunc(ports, func(sp *ServicePort) bool { return sp.Name.Port == name && sp.Protocol == proto })
			if i < 0 {
				continue
			}
			if p.Port == nil || *p.Port < 1 || *p.Port > 65535 {
				mustReject("InvalidPort", true)
				continue
			}
			for _, e := range valid {
				ip, _ := ParseIP(e.Addresses[0])
				ap := netip.AddrPortFrom(ip, uint16(*p.Port))
				want[i][ap] = want[i][ap] || e.Conditions.Ready == nil || *e.Conditions.Ready
			}
		}
	}
	for i, sp := range ports {
		got := map[netip.AddrPort]bool{}
		for _, ep := range sp.Endpoints {
			got[ep.AddrPort()] = ep.Ready
		}
		if !maps.Equal(got, want[i]) {
			t.Errorf("%v: endpoints (address:port -> ready)\n%v\nwant\n%v", sp.Name, got, want[i])
		}
	}
}
