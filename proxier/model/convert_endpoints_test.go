package model

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"
)

func TestServicePortsEndpoints(t *testing.T) {
	tcp, udp := v1.ProtocolTCP, v1.ProtocolUDP
	v4, v6 := discovery.AddressTypeIPv4, discovery.AddressTypeIPv6
	httpDNS := testService(func(s *v1.Service) {
		s.Spec.ClusterIPs = []string{"10.96.0.10", "fd00::10"}
		s.Spec.Ports = []v1.ServicePort{
			{Name: "http", Port: 80, Protocol: tcp},
			{Name: "dns", Port: 53, Protocol: udp},
		}
	})
	withEndpoints := func(port string, proto v1.Protocol, num uint16, eps ...Endpoint) *ServicePort {
		return wantPort(port, proto, num, func(sp *ServicePort) {
			sp.ClusterIPs = addrs("10.96.0.10", "fd00::10")
			sp.Endpoints = eps
		})
	}
	ep := func(e Endpoint, mod func(*Endpoint)) Endpoint {
		mod(&e)
		return e
	}
	http8080 := []discovery.EndpointPort{slicePort("http", tcp, 8080)}

	tests := []struct {
		name    string
		slices  []*discovery.EndpointSlice
		want    []*ServicePort
		rejects []string
	}{
		{
			name: "no slices: ports without endpoints",
			want: []*ServicePort{withEndpoints("dns", udp, 53), withEndpoints("http", tcp, 80)},
		},
		{
			name: "matched by name and protocol, never by number",
			slices: []*discovery.EndpointSlice{
				testSlice("s1", v4, []discovery.EndpointPort{
					slicePort("http", tcp, 8080),
					slicePort("dns", udp, 5353),
					slicePort("dns", tcp, 53), // no such service port
					slicePort("other", tcp, 80),
				}, testEndpoint("10.0.0.2"), testEndpoint("10.0.0.1")),
			},
			want: []*ServicePort{
				withEndpoints("dns", udp, 53, ready("10.0.0.1", 5353), ready("10.0.0.2", 5353)),
				withEndpoints("http", tcp, 80, ready("10.0.0.1", 8080), ready("10.0.0.2", 8080)),
			},
		},
		{
			name: "merged across slices and families, de-duplicated, sorted",
			slices: []*discovery.EndpointSlice{
				testSlice("s2", v6, http8080, testEndpoint("fd01::1")),
				testSlice("s1", v4, http8080, testEndpoint("10.0.0.9"), testEndpoint("10.0.0.1")),
				// Same address+port as in s1, plus a new port for it.
				testSlice("s3", v4, []discovery.EndpointPort{slicePort("http", tcp, 8080), slicePort("http", tcp, 9090)},
					testEndpoint("10.0.0.1")),
			},
			want: []*ServicePort{
				withEndpoints("dns", udp, 53),
				withEndpoints("http", tcp, 80,
					ready("10.0.0.1", 8080), ready("10.0.0.1", 9090), ready("10.0.0.9", 8080), ready("fd01::1", 8080)),
			},
		},
		{
			name: "duplicate: a ready copy wins, else the first slice's",
			slices: []*discovery.EndpointSlice{
				testSlice("a", v4, http8080, testEndpoint("10.0.0.1", conds(ptr.To(false), ptr.To(true), ptr.To(true)))),
				testSlice("b", v4, http8080, testEndpoint("10.0.0.1", onNode("n1", "z1"))),
				testSlice("c", v4, http8080, testEndpoint("10.0.0.1", onNode("n2", "z2"))),
			},
			want: []*ServicePort{
				withEndpoints("dns", udp, 53),
				withEndpoints("http", tcp, 80, ep(ready("10.0.0.1", 8080), func(e *Endpoint) { e.NodeName = "n1" })),
			},
		},
		{
			name: "conditions, node, zone and hints",
			slices: []*discovery.EndpointSlice{
				testSlice("s", v4, http8080,
					testEndpoint("10.0.0.1"), // nil conditions
					testEndpoint("10.0.0.2", conds(ptr.To(false), ptr.To(true), ptr.To(true)), onNode("n1", "z1")),
					testEndpoint("10.0.0.3", conds(ptr.To(false), nil, nil)),
					testEndpoint("10.0.0.4", conds(ptr.To(false), ptr.To(false), ptr.To(false))),
					testEndpoint("10.0.0.5", func(e *discovery.Endpoint) {
						e.Hints = &discovery.EndpointHints{
							ForZones: []discovery.ForZone{{Name: "z2"}, {Name: "z1"}},
							ForNodes: []discovery.ForNode{{Name: "n1"}},
						}
					}),
				),
			},
			want: []*ServicePort{
				withEndpoints("dns", udp, 53),
				withEndpoints("http", tcp, 80,
					ready("10.0.0.1", 8080),
					ep(ready("10.0.0.2", 8080), func(e *Endpoint) { e.Ready, e.Terminating, e.NodeName = false, true, "n1" }),
					// Serving nil reads as true, as the API documents.
					ep(ready("10.0.0.3", 8080), func(e *Endpoint) { e.Ready = false }),
					ep(ready("10.0.0.4", 8080), func(e *Endpoint) { e.Ready, e.Serving = false, false }),
					ep(ready("10.0.0.5", 8080), func(e *Endpoint) { e.Hints = &Hints{Zones: []string{"z1", "z2"}, Nodes: []string{"n1"}} }),
				),
			},
		},
		{
			name: "bad endpoints skipped, one rejection per slice",
			slices: []*discovery.EndpointSlice{
				testSlice("s", v4, http8080,
					testEndpoint("fd00::1"),   // wrong family
					testEndpoint("127.0.0.1"), // loopback
					testEndpoint("0.0.0.0"),   // unspecified
					testEndpoint("224.0.0.5"), // multicast
					testEndpoint("not-an-ip"),
					discovery.Endpoint{}, // no address
					testEndpoint("10.0.0.1"),
				),
			},
			want: []*ServicePort{
				withEndpoints("dns", udp, 53),
				withEndpoints("http", tcp, 80, ready("10.0.0.1", 8080)),
			},
			rejects: []string{"EndpointSlice/s:InvalidEndpoint:invalid"},
		},
		{
			name: "bad slice ports skipped, good ones kept",
			slices: []*discovery.EndpointSlice{
				testSlice("s", v4, []discovery.EndpointPort{
					slicePort("http", tcp, 0),
					slicePort("http", tcp, 70000),
					{Name: ptr.To("http"), Protocol: ptr.To(tcp)}, // nil port
					slicePort("dns", "ICMP", 53),
					slicePort("dns", udp, 5353),
				}, testEndpoint("10.0.0.1")),
			},
			want: []*ServicePort{
				withEndpoints("dns", udp, 53, ready("10.0.0.1", 5353)),
				withEndpoints("http", tcp, 80),
			},
			rejects: []string{
				"EndpointSlice/s:InvalidPort:invalid", "EndpointSlice/s:InvalidPort:invalid",
				"EndpointSlice/s:InvalidPort:invalid", "EndpointSlice/s:UnknownProtocol:invalid",
			},
		},
		{
			name: "FQDN, unknown address type and foreign slices are skipped",
			slices: []*discovery.EndpointSlice{
				testSlice("fqdn", discovery.AddressTypeFQDN, http8080, testEndpoint("example.com")),
				testSlice("odd", "IPv5", http8080, testEndpoint("10.0.0.1")),
				func() *discovery.EndpointSlice {
					s := testSlice("other", v4, http8080, testEndpoint("10.0.0.2"))
					s.Labels[discovery.LabelServiceName] = "other-svc"
					return s
				}(),
				func() *discovery.EndpointSlice {
					s := testSlice("elsewhere", v4, http8080, testEndpoint("10.0.0.3"))
					s.Namespace = "other-ns"
					return s
				}(),
				nil,
			},
			want: []*ServicePort{withEndpoints("dns", udp, 53), withEndpoints("http", tcp, 80)},
			rejects: []string{
				"EndpointSlice/fqdn:FQDNEndpoints:skip", "EndpointSlice/odd:UnknownAddressType:invalid",
				"EndpointSlice/other:WrongService:invalid", "EndpointSlice/elsewhere:WrongService:invalid",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, rj := ServicePorts(httpDNS, tc.slices)
			if diff := cmp.Diff(tc.want, got, cmpAddrs, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("ports (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.rejects, summary(rj), cmpopts.EquateEmpty(), cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
				t.Errorf("rejections (-want +got):\n%s\nall: %v", diff, rj)
			}
		})
	}
}

// A single unnamed port: slices with nil name and protocol match it, as the
// API server would have defaulted them to "" and TCP.
func TestServicePortsUnnamedPortDefaults(t *testing.T) {
	svc := testService(func(s *v1.Service) { s.Spec.Ports[0].Name = "" })
	port := int32(8080)
	sl := testSlice("s", discovery.AddressTypeIPv4, []discovery.EndpointPort{{Port: &port}}, testEndpoint("10.0.0.1"))
	got, rj := ServicePorts(svc, []*discovery.EndpointSlice{sl})
	if len(rj) != 0 || len(got) != 1 || len(got[0].Endpoints) != 1 || got[0].Endpoints[0].Port != 8080 {
		t.Fatalf("got %+v, rejections %v", got, rj)
	}
}

// Large inputs must stay linear: 200 slices x 500 endpoints x 4 ports, with
// every endpoint listed twice. Quadratic merging would not finish in the
// test's time budget.
func TestServicePortsLarge(t *testing.T) {
	const nSlices, perSlice = 200, 500
	var svcPorts []v1.ServicePort
	var slicePorts []discovery.EndpointPort
	for p := range 4 {
		name := fmt.Sprintf("p%d", p)
		svcPorts = append(svcPorts, v1.ServicePort{Name: name, Port: int32(80 + p), Protocol: v1.ProtocolTCP})
		slicePorts = append(slicePorts, slicePort(name, v1.ProtocolTCP, int32(8080+p)))
	}
	svc := testService(func(s *v1.Service) { s.Spec.Ports = svcPorts })
	var sl []*discovery.EndpointSlice
	for s := range nSlices {
		var eps []discovery.Endpoint
		for e := range perSlice {
			n := (s*perSlice + e) % (nSlices * perSlice / 2) // each address twice
			eps = append(eps, testEndpoint(fmt.Sprintf("10.%d.%d.%d", n>>16, (n>>8)&255, n&255)))
		}
		sl = append(sl, testSlice(fmt.Sprintf("s%03d", s), discovery.AddressTypeIPv4, slicePorts, eps...))
	}
	got, rj := ServicePorts(svc, sl)
	if len(rj) != 0 {
		t.Fatalf("unexpected rejections: %v", rj[:min(3, len(rj))])
	}
	for _, sp := range got {
		if len(sp.Endpoints) != nSlices*perSlice/2 {
			t.Fatalf("%s: %d endpoints, want %d", sp.Name, len(sp.Endpoints), nSlices*perSlice/2)
		}
		for i := 1; i < len(sp.Endpoints); i++ {
			if compareEndpoints(sp.Endpoints[i-1], sp.Endpoints[i]) >= 0 {
				t.Fatalf("%s: endpoints not sorted at %d", sp.Name, i)
			}
		}
	}
}
