package model

import (
	"cmp"
	"fmt"
	"slices"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
)

// attachEndpoints merges the endpoints of all slices into the service ports
// they belong to. Work is linear in the size of the slices (each endpoint is
// parsed once per slice), plus a sort per port; each port's endpoint list
// is allocated once, at its final size.
func attachEndpoints(svc *v1.Service, ports []*ServicePort, eps []*discovery.EndpointSlice, r *rejector) {
	byKey := make(map[portKey]int, len(ports))
	for i, sp := range ports {
		byKey[keyOf(sp.Name)] = i
	}
	// Slice order decides which duplicate wins, so make it deterministic.
	ordered := slices.DeleteFunc(slices.Clone(eps), func(s *discovery.EndpointSlice) bool { return s == nil })
	slices.SortFunc(ordered, func(a, b *discovery.EndpointSlice) int { return cmp.Compare(a.Name, b.Name) })

	// What each slice port contributes, in slice order.
	type feed struct {
		port   int
		num    uint16
		parsed []Endpoint
	}
	var feeds []feed
	count := make([]int, len(ports))
	for _, slice := range ordered {
		if slice.Namespace != svc.Namespace || slice.Labels[LabelServiceName] != svc.Name {
			// The caller looks slices up by this label; a mismatch is a bug
			// upstream of us, but still must not leak endpoints across
			// Services.
			r.add("EndpointSlice", slice.Namespace, slice.Name, true, "WrongService",
				fmt.Sprintf("slice does not belong to Service %s/%s", svc.Namespace, svc.Name))
			continue
		}
		parsed := sliceEndpoints(slice, r)
		if len(parsed) == 0 {
			continue
		}
		for _, p := range slice.Ports {
			if i, num, ok := matchPort(slice, p, byKey, r); ok {
				feeds = append(feeds, feed{i, num, parsed})
				count[i] += len(parsed)
			}
		}
	}
	for i, sp := range ports {
		if count[i] > 0 {
			sp.Endpoints = make([]Endpoint, 0, count[i])
		}
	}
	for _, f := range feeds {
		sp := ports[f.port]
		for _, ep := range f.parsed {
			ep.Port = f.num
			sp.Endpoints = append(sp.Endpoints, ep)
		}
	}
	for _, sp := range ports {
		sp.Endpoints = dedupEndpoints(sp.Endpoints)
	}
}

// dedupEndpoints sorts endpoints by address and port and keeps one per
// address and port. During a move between slices an endpoint can be listed
// twice: the first ready copy wins, else the first slice's (the stable
// sort keeps slice order among equals).
func dedupEndpoints(eps []Endpoint) []Endpoint {
	slices.SortStableFunc(eps, compareEndpoints)
	out := eps[:0]
	for i := 0; i < len(eps); {
		j, pick := i+1, eps[i]
		for ; j < len(eps) && compareEndpoints(eps[j], eps[i]) == 0; j++ {
			if !pick.Ready && eps[j].Ready {
				pick = eps[j]
			}
		}
		out = append(out, pick)
		i = j
	}
	return out
}

// matchPort finds the service port a slice port feeds, by name and
// protocol. Unmatched ports are normal (a port removed from the Service
// before the controller caught up) and not reported.
func matchPort(slice *discovery.EndpointSlice, p discovery.EndpointPort, byKey map[portKey]int, r *rejector) (int, uint16, bool) {
	// nil name and protocol: the API server defaults them to "" and TCP.
	name := ""
	if p.Name != nil {
		name = *p.Name
	}
	proto := v1.ProtocolTCP
	if p.Protocol != nil {
		proto = *p.Protocol
	}
	bad := func(reason, format string, args ...any) (int, uint16, bool) {
		r.add("EndpointSlice", slice.Namespace, slice.Name, true, reason, fmt.Sprintf(format, args...))
		return 0, 0, false
	}
	if !knownProtocol(proto) {
		return bad("UnknownProtocol", "port %q: unknown protocol %q", name, proto)
	}
	i, ok := byKey[portKey{name, proto}]
	if !ok {
		return 0, 0, false
	}
	if p.Port == nil || *p.Port <= 0 || *p.Port > 65535 {
		n := "nil"
		if p.Port != nil {
			n = fmt.Sprint(*p.Port)
		}
		return bad("InvalidPort", "port %q: port %s out of range", name, n)
	}
	return i, uint16(*p.Port), true
}

// sliceEndpoints parses the endpoints of one slice (Port left zero). Bad
// endpoints are skipped and reported once per slice, so that a huge broken
// slice yields one rejection, not thousands.
func sliceEndpoints(slice *discovery.EndpointSlice, r *rejector) []Endpoint {
	var want4 bool
	switch slice.AddressType {
	case discovery.AddressTypeIPv4:
		want4 = true
	case discovery.AddressTypeIPv6:
		want4 = false
	case discovery.AddressTypeFQDN:
		r.add("EndpointSlice", slice.Namespace, slice.Name, false, "FQDNEndpoints", "FQDN endpoints are not proxied")
		return nil
	default:
		r.add("EndpointSlice", slice.Namespace, slice.Name, true, "UnknownAddressType",
			fmt.Sprintf("unknown addressType %q", slice.AddressType))
		return nil
	}

	out := make([]Endpoint, 0, len(slice.Endpoints))
	var bad int
	var firstErr error
	for i := range slice.Endpoints {
		ep, err := endpoint(&slice.Endpoints[i], want4)
		if err != nil {
			if bad == 0 {
				firstErr = err
			}
			bad++
			continue
		}
		out = append(out, ep)
	}
	if bad > 0 {
		r.add("EndpointSlice", slice.Namespace, slice.Name, true, "InvalidEndpoint",
			fmt.Sprintf("%d of %d endpoints ignored, first: %v", bad, len(slice.Endpoints), firstErr))
	}
	return out
}

// endpoint converts one endpoint. Only the first address counts, as the
// API documents and upstream does.
func endpoint(e *discovery.Endpoint, want4 bool) (Endpoint, error) {
	if len(e.Addresses) == 0 {
		return Endpoint{}, fmt.Errorf("endpoint without address")
	}
	addr, err := ParseIP(e.Addresses[0])
	if err != nil {
		return Endpoint{}, err
	}
	if addr.Is4() != want4 {
		return Endpoint{}, fmt.Errorf("address %s does not match the slice's addressType", addr)
	}
	if err := checkEndpointIP(addr); err != nil {
		return Endpoint{}, fmt.Errorf("address %s: %w", addr, err)
	}
	c := e.Conditions
	ep := Endpoint{
		Addr: addr,
		// Per the API: nil ready and serving mean true, nil terminating
		// false (upstream reads them the same way).
		Ready:       c.Ready == nil || *c.Ready,
		Serving:     c.Serving == nil || *c.Serving,
		Terminating: c.Terminating != nil && *c.Terminating,
	}
	if e.NodeName != nil {
		ep.NodeName = *e.NodeName
	}
	if h := e.Hints; h != nil && len(h.ForZones)+len(h.ForNodes) > 0 {
		ep.Hints = &Hints{}
		for _, z := range h.ForZones {
			ep.Hints.Zones = append(ep.Hints.Zones, z.Name)
		}
		for _, n := range h.ForNodes {
			ep.Hints.Nodes = append(ep.Hints.Nodes, n.Name)
		}
		slices.Sort(ep.Hints.Zones)
		slices.Sort(ep.Hints.Nodes)
	}
	return ep, nil
}
