package claims

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/nftproxy/nftproxy/proxier/model"
)

var (
	nodeIP    = netip.MustParseAddr("192.168.0.10")
	victimIP  = netip.MustParseAddr("10.96.0.10")
	otherIP   = netip.MustParseAddr("10.96.0.11")
	publicIP  = netip.MustParseAddr("203.0.113.7")
	publicIP2 = netip.MustParseAddr("203.0.113.8")
)

// port is one service port of Service ns/name.
type port struct {
	name     string
	proto    v1.Protocol
	port     uint16
	cluster  []netip.Addr
	external []netip.Addr
	lb       []netip.Addr
	nodePort uint16
}

func (p port) servicePort() *model.ServicePort {
	proto := p.proto
	if proto == "" {
		proto = v1.ProtocolTCP
	}
	sp := &model.ServicePort{Protocol: proto, Port: p.port, ClusterIPs: p.cluster, ExternalIPs: p.external,
		LoadBalancerIPs: p.lb, NodePort: p.nodePort}
	sp.Name.Namespace, sp.Name.Name, sp.Name.Protocol = "ns", p.name, proto
	return sp
}

func svc(name string) types.NamespacedName { return types.NamespacedName{Namespace: "ns", Name: name} }

// programmed is what a port keeps: "cluster=… external=… lb=… nodePort=…".
func programmed(sp *model.ServicePort) string {
	return fmt.Sprintf("cluster=%v external=%v lb=%v nodePort=%d", sp.ClusterIPs, sp.ExternalIPs, sp.LoadBalancerIPs, sp.NodePort)
}

// TestResolve is the specification: who keeps a contested key.
func TestResolve(t *testing.T) {
	a := func(ips ...netip.Addr) []netip.Addr { return ips }
	for _, tc := range []struct {
		what  string
		opts  Options
		ports []port
		// want maps a Service to what it keeps; Services not listed keep
		// everything.
		want map[string]string
		// reasons of the Events, per losing Service.
		reasons map[string][]string
	}{{
		what: "an externalIP equal to another Service's ClusterIP loses, even first by name",
		ports: []port{
			{name: "a-attacker", port: 80, cluster: a(otherIP), external: a(victimIP)},
			{name: "victim", port: 80, cluster: a(victimIP)},
		},
		want:    map[string]string{"a-attacker": "cluster=[10.96.0.11] external=[] lb=[] nodePort=0"},
		reasons: map[string][]string{"a-attacker": {ReasonExternalIsClusterIP}},
	}, {
		what: "a load-balancer IP equal to another Service's ClusterIP loses",
		ports: []port{
			{name: "victim", port: 80, cluster: a(victimIP)},
			{name: "z-attacker", port: 80, cluster: a(otherIP), lb: a(victimIP, publicIP)},
		},
		want:    map[string]string{"z-attacker": "cluster=[10.96.0.11] external=[] lb=[203.0.113.7] nodePort=0"},
		reasons: map[string][]string{"z-attacker": {ReasonExternalIsClusterIP}},
	}, {
		what: "an externalIP equal to the Service's own ClusterIP is programmed once, as the ClusterIP",
		ports: []port{
			{name: "a", port: 80, cluster: a(victimIP), external: a(victimIP, publicIP)},
		},
		want:    map[string]string{"a": "cluster=[10.96.0.10] external=[203.0.113.7] lb=[] nodePort=0"},
		reasons: map[string][]string{"a": {ReasonExternalIsClusterIP}},
	}, {
		what: "the same address on another port or protocol is no conflict",
		ports: []port{
			{name: "a", port: 81, cluster: a(otherIP), external: a(victimIP)},
			{name: "b", port: 80, proto: v1.ProtocolUDP, cluster: a(publicIP), external: a(victimIP)},
			{name: "victim", port: 80, cluster: a(victimIP)},
		},
	}, {
		what: "two Services with one externalIP: the first by name keeps it",
		ports: []port{
			{name: "a", port: 80, cluster: a(victimIP), external: a(publicIP)},
			{name: "b", port: 80, cluster: a(otherIP), external: a(publicIP, publicIP2)},
		},
		want:    map[string]string{"b": "cluster=[10.96.0.11] external=[203.0.113.8] lb=[] nodePort=0"},
		reasons: map[string][]string{"b": {ReasonDuplicateExternalAddress}},
	}, {
		what: "an externalIP and a load-balancer IP of one Service on one address do not conflict",
		ports: []port{
			{name: "a", port: 80, cluster: a(victimIP), external: a(publicIP), lb: a(publicIP)},
		},
	}, {
		what: "two Services with one ClusterIP (inconsistent API data): the first by name keeps it",
		ports: []port{
			{name: "a", port: 80, cluster: a(victimIP)},
			{name: "b", port: 80, cluster: a(victimIP, netip.MustParseAddr("fd00::10"))},
		},
		want:    map[string]string{"b": "cluster=[fd00::10] external=[] lb=[] nodePort=0"},
		reasons: map[string][]string{"b": {ReasonDuplicateClusterIP}},
	}, {
		what: "two Services with one NodePort (inconsistent API data): the first by name keeps it",
		ports: []port{
			{name: "a", port: 80, cluster: a(victimIP), nodePort: 30080},
			{name: "b", port: 81, cluster: a(otherIP), nodePort: 30080},
			{name: "c", port: 82, proto: v1.ProtocolUDP, cluster: a(otherIP), nodePort: 30080},
		},
		want:    map[string]string{"b": "cluster=[10.96.0.11] external=[] lb=[] nodePort=0"},
		reasons: map[string][]string{"b": {ReasonDuplicateNodePort}},
	}, {
		what: "an externalIP on this node's NodePort address and a NodePort's port loses to the NodePort",
		ports: []port{
			{name: "a-attacker", port: 30080, cluster: a(otherIP), external: a(nodeIP)},
			{name: "b", port: 30081, cluster: a(publicIP), external: a(nodeIP)},
			{name: "victim", port: 80, cluster: a(victimIP), nodePort: 30080},
		},
		want:    map[string]string{"a-attacker": "cluster=[10.96.0.11] external=[] lb=[] nodePort=0"},
		reasons: map[string][]string{"a-attacker": {ReasonExternalOnNodePort}},
	}, {
		what: "without the guard an externalIP equal to a node address is kept (as kube-proxy)",
		ports: []port{
			{name: "a", port: 22, cluster: a(otherIP), external: a(nodeIP)},
		},
	}, {
		what: "with the guard an externalIP or LB IP equal to a node address loses on every port",
		opts: Options{DenyNodeAddresses: true},
		ports: []port{
			{name: "a", port: 22, cluster: a(otherIP), external: a(nodeIP, publicIP), lb: a(nodeIP)},
		},
		want:    map[string]string{"a": "cluster=[10.96.0.11] external=[203.0.113.7] lb=[] nodePort=0"},
		reasons: map[string][]string{"a": {ReasonExternalIsNodeAddress}},
	}} {
		t.Run(tc.what, func(t *testing.T) {
			r := New(tc.opts)
			r.SetNodeAddresses([]netip.Addr{nodeIP}, []netip.Addr{nodeIP})
			raw := map[string]*model.ServicePort{}
			for _, p := range tc.ports {
				sp := p.servicePort()
				raw[p.name] = sp
				r.SetService(svc(p.name), []*model.ServicePort{sp})
			}
			_, rejections := r.Resolve()
			for _, p := range tc.ports {
				got := r.Ports(svc(p.name))
				want, loses := tc.want[p.name]
				if !loses {
					if len(got) != 1 || got[0] != raw[p.name] {
						t.Errorf("%s: programmed %s, want its own unchanged port", p.name, programmed(got[0]))
					}
					continue
				}
				if got[0] == raw[p.name] || programmed(got[0]) != want {
					t.Errorf("%s: programmed %s, want %s (in a copy)", p.name, programmed(got[0]), want)
				}
				if programmed(raw[p.name]) == want {
					t.Errorf("%s: the original port was modified", p.name)
				}
			}
			gotReasons := map[string][]string{}
			for _, rj := range rejections {
				gotReasons[rj.Name] = append(gotReasons[rj.Name], rj.Reason)
				if rj.Kind != "Service" || rj.Namespace != "ns" || !rj.Invalid || rj.Message == "" {
					t.Errorf("rejection %+v: want an invalid-input report on the losing Service", rj)
				}
			}
			if fmt.Sprint(gotReasons) != fmt.Sprint(orEmpty(tc.reasons)) {
				t.Errorf("Events %v, want %v", gotReasons, tc.reasons)
			}
		})
	}
}

func orEmpty(m map[string][]string) map[string][]string {
	if m == nil {
		return map[string][]string{}
	}
	return m
}

// TestResolveFollowsChanges: the loser is reported once, keeps one copy
// while nothing changes, is untouched by the winner's endpoint changes,
// and gets the address back when the winner goes.
func TestResolveFollowsChanges(t *testing.T) {
	r := New(Options{})
	victim := port{name: "victim", port: 80, cluster: []netip.Addr{victimIP}}.servicePort()
	attacker := port{name: "a-attacker", port: 80, cluster: []netip.Addr{otherIP}, external: []netip.Addr{victimIP}}.servicePort()
	r.SetService(svc("victim"), []*model.ServicePort{victim})
	r.SetService(svc("a-attacker"), []*model.ServicePort{attacker})
	changed, rejections := r.Resolve()
	if len(rejections) != 1 || !slices.Contains(changed, svc("a-attacker")) {
		t.Fatalf("first resolve: changed %v, rejections %v", changed, rejections)
	}
	lost := r.Ports(svc("a-attacker"))[0]

	// The attacker's endpoints flap: a new value with the same claims.
	flapped := *attacker
	flapped.Endpoints = []model.Endpoint{{Addr: netip.MustParseAddr("10.244.0.5"), Port: 80, Ready: true}}
	r.SetService(svc("a-attacker"), []*model.ServicePort{&flapped})
	changed, rejections = r.Resolve()
	if !slices.Equal(changed, []types.NamespacedName{svc("a-attacker")}) || len(r.Ports(svc("victim"))) != 1 || r.Ports(svc("victim"))[0] != victim {
		t.Errorf("after the attacker's endpoint change: changed %v, victim programmed %v", changed, r.Ports(svc("victim")))
	}
	if len(rejections) != 1 {
		t.Errorf("a new port value with the same loss is reported again once: got %d reports", len(rejections))
	}
	if got := r.Ports(svc("a-attacker"))[0]; got == lost || len(got.ExternalIPs) != 0 || len(got.Endpoints) != 1 {
		t.Errorf("the attacker's new value is programmed without the address: %+v", got)
	}

	// Nothing changed: no work, no report, the same copy.
	kept := r.Ports(svc("a-attacker"))[0]
	r.pending[svc("a-attacker")] = struct{}{}
	if changed, rejections := r.Resolve(); len(changed) != 0 || len(rejections) != 0 || r.Ports(svc("a-attacker"))[0] != kept {
		t.Errorf("a repeated resolve changed %v, reported %v", changed, rejections)
	}

	// The victim goes: the externalIP is programmed again.
	r.SetService(svc("victim"), nil)
	changed, _ = r.Resolve()
	if !slices.Contains(changed, svc("a-attacker")) || r.Ports(svc("a-attacker"))[0] != &flapped {
		t.Errorf("without the victim the attacker's own port is programmed: changed %v", changed)
	}
}

// TestResolveIncrementalEqualsFresh drives a Resolver through random
// changes among Services that share a few addresses and ports, and checks
// after each step that it programs what a fresh Resolver fed the same
// Services programs.
func TestResolveIncrementalEqualsFresh(t *testing.T) {
	ips := []netip.Addr{victimIP, otherIP, publicIP, nodeIP}
	for seed := uint64(1); seed <= 30; seed++ {
		rnd := rand.New(rand.NewPCG(seed, 7))
		pick := func() []netip.Addr {
			var out []netip.Addr
			for _, ip := range ips {
				if rnd.IntN(3) == 0 {
					out = append(out, ip)
				}
			}
			return out
		}
		opts := Options{DenyNodeAddresses: seed%2 == 0}
		r := New(opts)
		current := map[types.NamespacedName][]*model.ServicePort{}
		for step := 0; step < 80; step++ {
			if rnd.IntN(10) == 0 {
				r.SetNodeAddresses(pick(), pick())
			}
			name := svc(fmt.Sprint("s", rnd.IntN(8)))
			var ports []*model.ServicePort
			for i := rnd.IntN(3); i > 0; i-- {
				p := port{name: name.Name, port: uint16(80 + rnd.IntN(2)), cluster: ips[rnd.IntN(len(ips)):][:1],
					external: pick(), lb: pick(), nodePort: uint16(rnd.IntN(2) * (30000 + rnd.IntN(2)))}
				sp := p.servicePort()
				sp.Name.Port = fmt.Sprint("p", i)
				ports = append(ports, sp)
			}
			r.SetService(name, ports)
			current[name] = ports
			r.Resolve()

			fresh := New(opts)
			fresh.SetNodeAddresses(r.nodePortIPs, r.nodeIPs)
			for k, ps := range current {
				fresh.SetService(k, ps)
			}
			fresh.Resolve()
			for k := range current {
				got, want := r.Ports(k), fresh.Ports(k)
				if len(got) != len(want) {
					t.Fatalf("seed %d step %d %s: %d ports, want %d", seed, step, k, len(got), len(want))
				}
				for i := range got {
					if programmed(got[i]) != programmed(want[i]) {
						t.Fatalf("seed %d step %d %s: programs %s, a fresh resolver %s", seed, step, k, programmed(got[i]), programmed(want[i]))
					}
				}
			}
		}
	}
}
