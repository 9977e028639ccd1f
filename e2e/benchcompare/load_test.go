package main

import (
	"testing"

	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftproxy/nftproxy/e2e/lab"
)

// Every ClusterIP of the load, up to the connection target, is inside the
// lab's service CIDRs and distinct; the dual-stack slice is the IPv4 one
// with IPv6 addresses, its own name and UID.
func TestLoadAddresses(t *testing.T) {
	seen := map[string]bool{}
	for _, i := range []int{0, 1, 255, 256, 49999, connIndex} {
		v4, v6 := clusterIPOf(i), clusterIP6Of(i)
		if !lab.ServiceCIDRV4.Contains(v4) || !lab.ServiceCIDRV6.Contains(v6) {
			t.Errorf("Service %d: %s / %s outside %s / %s", i, v4, v6, lab.ServiceCIDRV4, lab.ServiceCIDRV6)
		}
		for _, a := range []string{v4.String(), v6.String()} {
			if seen[a] {
				t.Errorf("Service %d: %s used twice", i, a)
			}
			seen[a] = true
		}
	}
	if a, b := endpointAddr6(0, 0, 10), endpointAddr6(49999, 9, 10); !a.Is6() || a == b || a.String() != "fd00:128::" || b.String() != "fd00:128::7:a11f" {
		t.Errorf("endpoint addresses %s, %s", a, b)
	}
	l := &loader{m: 3, dualStack: true}
	now := metav1.Now()
	s4, s6 := l.slice(7, now, "u"), l.slice6(7, now, "u")
	if s6.AddressType != discovery.AddressTypeIPv6 || s6.Name == s4.Name || s6.UID == s4.UID ||
		len(s6.Endpoints) != 3 || s6.Endpoints[2].Addresses[0] != endpointAddr6(7, 2, 3).String() ||
		s6.Labels[discovery.LabelServiceName] != serviceName(7) {
		t.Errorf("IPv6 slice: %+v", s6)
	}
	if s4.AddressType != discovery.AddressTypeIPv4 || s4.Endpoints[2].Addresses[0] != endpointAddr(7, 2, 3).String() {
		t.Errorf("making the IPv6 slice changed the IPv4 one: %+v", s4)
	}
	if l.families() != 2 || (&loader{}).families() != 1 {
		t.Error("families")
	}
}
