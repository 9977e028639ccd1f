package proxier

import (
	"context"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"testing"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftproxy/nftproxy/nftrules/nft/nftfake"
	"github.com/nftproxy/nftproxy/proxier/healthcheck"
)

func TestParseNodePortAddresses(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want NodePortAddresses
		lo   bool
		bad  bool
	}{
		{in: "", want: NodePortAddresses{Primary: true}},
		{in: "primary", want: NodePortAddresses{Primary: true}},
		{in: "10.0.0.0/8, fd00::1/64", want: NodePortAddresses{CIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/64")}}},
		{in: "primary,127.0.0.0/8", want: NodePortAddresses{Primary: true, CIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}, lo: true},
		{in: "0.0.0.0/0,::/0", want: NodePortAddresses{CIDRs: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}}, lo: true},
		{in: "::1/128", want: NodePortAddresses{CIDRs: []netip.Prefix{netip.MustParsePrefix("::1/128")}}},
		{in: "10.0.0.1", bad: true},
		{in: "all", bad: true},
		{in: "::ffff:10.0.0.0/104", bad: true},
	} {
		got, err := ParseNodePortAddresses(tc.in)
		if (err != nil) != tc.bad {
			t.Errorf("%q: err %v", tc.in, err)
			continue
		}
		if tc.bad {
			continue
		}
		if !reflect.DeepEqual(got, tc.want) || got.NeedsRouteLocalnet() != tc.lo {
			t.Errorf("%q: got %+v (route_localnet %v), want %+v (%v)", tc.in, got, got.NeedsRouteLocalnet(), tc.want, tc.lo)
		}
	}
}

func TestNodePortAddressesSelect(t *testing.T) {
	node := []netip.Addr{netip.MustParseAddr("192.168.0.10"), netip.MustParseAddr("fd00::10")}
	local := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1"), netip.MustParseAddr("192.168.0.10"),
		netip.MustParseAddr("10.9.0.1"), netip.MustParseAddr("fe80::1"), netip.MustParseAddr("::ffff:10.9.0.2")}
	a, _ := ParseNodePortAddresses("primary,127.0.0.0/8,10.0.0.0/8,::/0")
	got := a.Select(node, local)
	want := []netip.Addr{netip.MustParseAddr("10.9.0.1"), netip.MustParseAddr("10.9.0.2"), netip.MustParseAddr("127.0.0.1"),
		netip.MustParseAddr("192.168.0.10"), netip.MustParseAddr("::1"), netip.MustParseAddr("fd00::10")}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if got := (NodePortAddresses{}).Select(node, local); len(got) != 0 {
		t.Errorf("zero value selects %v", got)
	}
}

type fakeHealthChecks struct {
	mu    sync.Mutex
	calls [][]healthcheck.Service
	addrs [][]netip.Addr
}

func (f *fakeHealthChecks) Sync(addrs []netip.Addr, s []healthcheck.Service) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
	f.addrs = append(f.addrs, addrs)
}

func (f *fakeHealthChecks) lastAddrs() []netip.Addr {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.addrs) == 0 {
		return nil
	}
	return f.addrs[len(f.addrs)-1]
}

func (f *fakeHealthChecks) last() ([]healthcheck.Service, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return nil, false
	}
	return f.calls[len(f.calls)-1], true
}

// TestProxierExternalState: NodePort addresses and health check node ports
// follow the configuration, the Node and the EndpointSlices.
func TestProxierExternalState(t *testing.T) {
	rec := nftfake.New()
	hc := &fakeHealthChecks{}
	e := newEnvWith(t, 0, rec, func(c *Config) {
		c.NodePortAddresses = NodePortAddresses{Primary: true, CIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
		c.LocalAddrs = func() ([]netip.Addr, error) {
			return []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("10.0.0.5")}, nil
		}
		c.HealthChecks = hc
	})
	lb := service("lb", "172.30.0.20")
	lb.Spec.Type = v1.ServiceTypeLoadBalancer
	lb.Spec.Ports[0].NodePort = 30080
	lb.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
	lb.Spec.HealthCheckNodePort = 32000
	local, other := testNode, "node-b"
	yes, no := true, false
	eps := slice("lb-1", "lb", "10.244.1.1", "10.244.1.2", "10.244.2.1")
	eps.Endpoints[0].NodeName, eps.Endpoints[1].NodeName, eps.Endpoints[2].NodeName = &local, &local, &other
	e.create(lb, eps)
	e.recorded(1, 1)
	e.run()
	e.eventually("initial sync", func() bool { return e.syncCount() >= 1 })
	st := e.lastSync().State
	if want := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("192.168.0.10")}; !reflect.DeepEqual(st.NodePortIPs, want) {
		t.Errorf("NodePortIPs = %v, want %v", st.NodePortIPs, want)
	}
	if ports := slices.Collect(st.All()); len(ports) != 1 || ports[0].NodePort != 30080 || !ports[0].ExternalPolicyLocal {
		t.Errorf("services = %+v", ports)
	}
	want := []healthcheck.Service{{Name: nn("lb"), Port: 32000, LocalEndpoints: 2}}
	e.eventually("health check with 2 local endpoints", func() bool { got, _ := hc.last(); return reflect.DeepEqual(got, want) })
	// Served on the NodePort addresses, not on every address of the host.
	if got := hc.lastAddrs(); !reflect.DeepEqual(got, st.NodePortIPs) {
		t.Errorf("health check node ports on %v, want the NodePort addresses %v", got, st.NodePortIPs)
	}

	// One local endpoint stops being ready, the other terminates.
	updated := eps.DeepCopy()
	updated.ResourceVersion = "2"
	updated.Endpoints[0].Conditions = discovery.EndpointConditions{Ready: &no}
	updated.Endpoints[1].Conditions = discovery.EndpointConditions{Ready: &no, Serving: &yes, Terminating: &yes}
	if _, err := e.client.DiscoveryV1().EndpointSlices("ns").Update(context.Background(), updated, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	want = []healthcheck.Service{{Name: nn("lb"), Port: 32000, LocalEndpoints: 0}}
	e.eventually("health check with 0 local endpoints", func() bool { got, _ := hc.last(); return reflect.DeepEqual(got, want) })

	// Another Service appears: lb's health check stays as it was.
	calls := func() int { hc.mu.Lock(); defer hc.mu.Unlock(); return len(hc.calls) }
	before := calls()
	e.create(service("other", "10.96.0.99"))
	e.eventually("a sync after another Service appeared", func() bool { return calls() > before })
	if got, _ := hc.last(); !reflect.DeepEqual(got, want) {
		t.Errorf("after another Service appeared: health checks %+v, want %+v", got, want)
	}

	// The Service becomes ETP Cluster: no health check node port.
	lb2 := lb.DeepCopy()
	lb2.ResourceVersion = "2"
	lb2.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyCluster
	lb2.Spec.HealthCheckNodePort = 0
	if _, err := e.client.CoreV1().Services("ns").Update(context.Background(), lb2, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually("no health check", func() bool { got, ok := hc.last(); return ok && len(got) == 0 })
}
