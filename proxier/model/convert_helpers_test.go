package model

import (
	"fmt"
	"net/netip"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Builders for test objects: a base object plus modifiers keeps each table
// entry down to what the case is about.

func testService(mods ...func(*v1.Service)) *v1.Service {
	s := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "svc"},
		Spec: v1.ServiceSpec{
			Type:       v1.ServiceTypeClusterIP,
			ClusterIP:  "10.96.0.10",
			ClusterIPs: []string{"10.96.0.10"},
			Ports:      []v1.ServicePort{{Name: "http", Port: 80, Protocol: v1.ProtocolTCP}},
		},
	}
	for _, m := range mods {
		m(s)
	}
	return s
}

func testSlice(name string, at discovery.AddressType, ports []discovery.EndpointPort, eps ...discovery.Endpoint) *discovery.EndpointSlice {
	return &discovery.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "ns", Name: name,
			Labels: map[string]string{discovery.LabelServiceName: "svc"},
		},
		AddressType: at,
		Ports:       ports,
		Endpoints:   eps,
	}
}

func slicePort(name string, proto v1.Protocol, port int32) discovery.EndpointPort {
	return discovery.EndpointPort{Name: &name, Protocol: &proto, Port: &port}
}

func testEndpoint(addr string, mods ...func(*discovery.Endpoint)) discovery.Endpoint {
	e := discovery.Endpoint{Addresses: []string{addr}}
	for _, m := range mods {
		m(&e)
	}
	return e
}

func conds(ready, serving, terminating *bool) func(*discovery.Endpoint) {
	return func(e *discovery.Endpoint) {
		e.Conditions = discovery.EndpointConditions{Ready: ready, Serving: serving, Terminating: terminating}
	}
}

func onNode(node, zone string) func(*discovery.Endpoint) {
	return func(e *discovery.Endpoint) { e.NodeName = &node; e.Zone = &zone }
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func prefixes(ss ...string) []netip.Prefix {
	out := []netip.Prefix{}
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// wantPort is the expected conversion of the base test Service's port.
func wantPort(port string, proto v1.Protocol, num uint16, mods ...func(*ServicePort)) *ServicePort {
	sp := &ServicePort{
		Name: ServicePortName{
			NamespacedName: types.NamespacedName{Namespace: "ns", Name: "svc"},
			Port:           port, Protocol: proto,
		},
		ClusterIPs: addrs("10.96.0.10"),
		Port:       num,
		Protocol:   proto,
	}
	for _, m := range mods {
		m(sp)
	}
	return sp
}

func ready(addr string, port uint16) Endpoint {
	return Endpoint{Addr: netip.MustParseAddr(addr), Port: port, Ready: true, Serving: true}
}

// summary renders rejections without their free-text message, which tests
// should not pin down.
func summary(rs []Rejection) []string {
	var out []string
	for _, r := range rs {
		sev := "skip"
		if r.Invalid {
			sev = "invalid"
		}
		out = append(out, fmt.Sprintf("%s/%s:%s:%s", r.Kind, r.Name, r.Reason, sev))
	}
	return out
}
