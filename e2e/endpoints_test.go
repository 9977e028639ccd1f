package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/nftproxy/nftproxy/e2e/lab"
)

// TestEndpointSemantics proves on a real lab how nftproxy chooses
// endpoints: session affinity, terminating fallback, topology hints, UDP
// flows following a replaced backend, and Services of another proxy. The
// lab's nodes: node-1 and node-3 in zone-a, node-2 in zone-b. Endpoint
// choice does not depend on the cross-node mode, so one (routed) lab runs
// it.
func TestEndpointSemantics(t *testing.T) {
	l := startLab(t, lab.Options{Mode: lab.Routed, Nodes: 3, Prefix: "nftep-"})
	s := &endpointSuite{l: l}
	ctx := ctxFor(t)
	if _, err := l.CreateDeployment(ctx, "client", 1, "node-1"); err != nil {
		t.Fatal(err)
	}
	t.Run("SessionAffinity", s.sessionAffinity)
	t.Run("TerminatingFallback", s.terminatingFallback)
	t.Run("TopologyHints", s.topologyHints)
	t.Run("UDPFollowsReplacedBackend", s.udpFollowsReplacedBackend)
	t.Run("OtherProxysService", s.otherProxysService)
}

type endpointSuite struct{ l *lab.Lab }

// backends dials addr n times from `from` and counts who answered.
func (s *endpointSuite) backends(t *testing.T, from string, addr netip.AddrPort, n int) map[string]int {
	t.Helper()
	seen, err := s.tryBackends(from, addr, n)
	if err != nil {
		t.Fatal(err)
	}
	return seen
}

// tryBackends is backends for polling loops: an error ends the round.
func (s *endpointSuite) tryBackends(from string, addr netip.AddrPort, n int) (map[string]int, error) {
	seen := map[string]int{}
	for i := 0; i < n; i++ {
		a, err := s.l.DialWithin(from, addr, lab.TCP, 500*time.Millisecond)
		if err != nil {
			return seen, fmt.Errorf("dial %s from %s: %w", addr, from, err)
		}
		seen[a.Pod]++
	}
	return seen, nil
}

func clusterIP(svc *corev1.Service) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr(svc.Spec.ClusterIP), lab.SvcPort)
}

// settle bounds how long these semantics tests wait for a change to reach
// the data path; latency itself is asserted by the ClusterIP suite and the
// UDP case below.
const settle = 3 * time.Second

// followed retries cond for up to settle.
func followed(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(settle)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s (%s)", settle, what, detail)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *endpointSuite) sessionAffinity(t *testing.T) {
	ctx := ctxFor(t)
	if _, err := s.l.CreateDeployment(ctx, "sticky", 3); err != nil {
		t.Fatal(err)
	}
	spec := lab.ServiceFor("sticky", "sticky", false)
	spec.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	spec.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](60)}}
	svc, err := s.l.CreateService(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.l.WaitForEndpoints(ctx, "sticky", 3); err != nil {
		t.Fatal(err)
	}
	addr := clusterIP(svc)
	time.Sleep(followWithin) // let every node program the Service
	if seen := s.backends(t, "client-0", addr, 20); len(seen) != 1 {
		t.Errorf("20 connections of one client reached %v, want one endpoint", seen)
	}
	// Eight more clients (pods on every node): they spread.
	if _, err := s.l.CreateDeployment(ctx, "clients", 8); err != nil {
		t.Fatal(err)
	}
	all := map[string]bool{}
	for _, c := range s.l.PodsOf("clients") {
		seen := s.backends(t, c, addr, 3)
		if len(seen) != 1 {
			t.Errorf("client %s reached %v, want one endpoint", c, seen)
		}
		for p := range seen {
			all[p] = true
		}
	}
	if len(all) < 2 {
		t.Errorf("nine clients all reached %v (chance 1 in 2187)", all)
	}

	// A short timeout: after it a new choice is made.
	svc = updateService(t, s.l, "sticky", func(svc *corev1.Service) {
		svc.Spec.SessionAffinityConfig.ClientIP.TimeoutSeconds = ptr.To[int32](1)
	})
	time.Sleep(followWithin)
	prev := s.backends(t, "client-0", addr, 1)
	changed := false
	for trial := 0; trial < 8 && !changed; trial++ {
		time.Sleep(1500 * time.Millisecond)
		next := s.backends(t, "client-0", addr, 1)
		changed = fmt.Sprint(next) != fmt.Sprint(prev)
		prev = next
	}
	if !changed {
		t.Error("after eight expiries the client still reached the same endpoint (chance 1 in 6561)")
	}

	// Affinity off: one client spreads again.
	updateService(t, s.l, "sticky", func(svc *corev1.Service) {
		svc.Spec.SessionAffinity = corev1.ServiceAffinityNone
		svc.Spec.SessionAffinityConfig = nil
	})
	followed(t, "one client spreads over the three endpoints once affinity is off", func() (bool, string) {
		seen, err := s.tryBackends("client-0", addr, 30)
		return err == nil && len(seen) == 3, fmt.Sprint(seen, err)
	})
}

func (s *endpointSuite) terminatingFallback(t *testing.T) {
	ctx := ctxFor(t)
	if _, err := s.l.CreateDeployment(ctx, "term", 2, "node-2", "node-3"); err != nil {
		t.Fatal(err)
	}
	svc, err := s.l.CreateService(ctx, lab.ServiceFor("term", "term", false))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.l.WaitForEndpoints(ctx, "term", 2); err != nil {
		t.Fatal(err)
	}
	addr := clusterIP(svc)
	old := s.l.PodsOf("term")
	for _, p := range old {
		if err := s.l.DeletePod(ctx, p, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	// Every endpoint is terminating but serving: traffic still flows to them.
	followed(t, "traffic reaches the terminating endpoints", func() (bool, string) {
		a, err := s.l.DialWithin("client-0", addr, lab.TCP, 300*time.Millisecond)
		return err == nil && (a.Pod == old[0] || a.Pod == old[1]), fmt.Sprint(a.Pod, err)
	})
	time.Sleep(followWithin)
	if seen := s.backends(t, "client-0", addr, 10); seen[old[0]]+seen[old[1]] != 10 {
		t.Errorf("with only terminating endpoints, reached %v", seen)
	}
	// A new ready endpoint: only it receives new connections.
	fresh, err := s.l.RunPod(ctx, "term-fresh", "node-1", map[string]string{"app": "term"})
	if err != nil {
		t.Fatal(err)
	}
	followed(t, "new connections go only to the new ready endpoint", func() (bool, string) {
		seen, err := s.tryBackends("client-0", addr, 10)
		return err == nil && seen[fresh.Name] == 10, fmt.Sprint(seen, err)
	})
}

// topologyHints uses a selector-less Service and a hand-written slice, so
// that the test decides the hints exactly.
func (s *endpointSuite) topologyHints(t *testing.T) {
	ctx := ctxFor(t)
	if _, err := s.l.CreateDeployment(ctx, "zoned", 3, "node-1", "node-2", "node-3"); err != nil {
		t.Fatal(err)
	}
	spec := lab.ServiceFor("zoned", "", false)
	spec.Spec.Selector = nil
	svc, err := s.l.CreateService(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	slice := &discovery.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "zoned-manual", Namespace: "default", Labels: map[string]string{discovery.LabelServiceName: "zoned"}},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       []discovery.EndpointPort{{Name: ptr.To("tcp"), Port: ptr.To[int32](lab.PodPort), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	zoneOf := map[string]string{"node-1": "zone-a", "node-2": "zone-b", "node-3": "zone-a"}
	for _, name := range s.l.PodsOf("zoned") {
		p := s.l.Pod(name)
		zone := zoneOf[p.Node.Name]
		slice.Endpoints = append(slice.Endpoints, discovery.Endpoint{
			Addresses:  []string{p.IPv4.String()},
			Conditions: discovery.EndpointConditions{Ready: ptr.To(true)},
			NodeName:   ptr.To(p.Node.Name),
			Zone:       ptr.To(zone),
			Hints:      &discovery.EndpointHints{ForZones: []discovery.ForZone{{Name: zone}}},
		})
	}
	slices := s.l.Client().DiscoveryV1().EndpointSlices("default")
	created, err := slices.Create(ctx, slice, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	addr := clusterIP(svc)
	sameZone := map[string]bool{}
	for _, name := range s.l.PodsOf("zoned") {
		if zoneOf[s.l.Pod(name).Node.Name] == "zone-a" {
			sameZone[name] = true
		}
	}
	followed(t, "a client in zone-a reaches only zone-a endpoints", func() (bool, string) {
		seen, err := s.tryBackends("client-0", addr, 20)
		if err != nil {
			return false, err.Error()
		}
		for p := range seen {
			if !sameZone[p] {
				return false, fmt.Sprint(seen)
			}
		}
		return len(seen) == len(sameZone), fmt.Sprint(seen)
	})
	// One endpoint loses its hint: hints are no longer usable, all endpoints.
	created.Endpoints[0].Hints = nil
	if _, err := slices.Update(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	followed(t, "without a hint on every endpoint, all endpoints are used", func() (bool, string) {
		seen, err := s.tryBackends("client-0", addr, 30)
		return err == nil && len(seen) == 3, fmt.Sprint(seen, err)
	})
}

// udpFollowsReplacedBackend is upstream's "should be able to preserve UDP
// traffic when server pod cycles": a client sending every 100 ms from one
// socket keeps getting answers within a second after its backend is
// replaced, through the ClusterIP and through a NodePort.
func (s *endpointSuite) udpFollowsReplacedBackend(t *testing.T) {
	ctx := ctxFor(t)
	if _, err := s.l.CreateDeployment(ctx, "udp", 1, "node-2"); err != nil {
		t.Fatal(err)
	}
	spec := lab.ServiceFor("udp", "udp", false)
	spec.Spec.Type = corev1.ServiceTypeNodePort
	svc, err := s.l.CreateService(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.l.WaitForEndpoints(ctx, "udp", 1); err != nil {
		t.Fatal(err)
	}
	var nodePort int32
	for _, p := range svc.Spec.Ports {
		if p.Protocol == corev1.ProtocolUDP {
			nodePort = p.NodePort
		}
	}
	targets := []struct {
		name, from string
		addr       netip.AddrPort
	}{
		{"ClusterIP", "client-0", netip.AddrPortFrom(netip.MustParseAddr(svc.Spec.ClusterIP), lab.SvcPort)},
		{"NodePort", lab.External1, netip.AddrPortFrom(s.l.Node("node-1").IPv4, uint16(nodePort))},
	}
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			time.Sleep(followWithin)
			ns, err := s.l.NS(tg.from)
			if err != nil {
				t.Fatal(err)
			}
			var conn *net.UDPConn
			if err := ns.Do(func() (err error) {
				conn, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(tg.addr))
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ask := func() string {
				if _, err := conn.Write([]byte("who")); err != nil {
					return "write: " + err.Error()
				}
				_ = conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				buf := make([]byte, 256)
				n, err := conn.Read(buf)
				if err != nil {
					return ""
				}
				return strings.Fields(string(buf[:n]))[0]
			}
			old := s.l.PodsOf("udp")[0]
			if got := waitAnswer(ask, 5*time.Second); got != old {
				t.Fatalf("before the replacement the client reached %q, want %s", got, old)
			}
			if err := s.l.ForceDeletePod(ctx, old); err != nil {
				t.Fatal(err)
			}
			if err := s.l.Scale(ctx, "udp", 1); err != nil {
				t.Fatal(err)
			}
			fresh := s.l.PodsOf("udp")[0]
			replaced := time.Now()
			if got := waitAnswer(ask, 5*time.Second); got != fresh {
				t.Fatalf("after the replacement the client reached %q, want %s", got, fresh)
			}
			if d := time.Since(replaced); d > followWithin {
				t.Errorf("the client waited %v for an answer from the new backend", d)
			}
		})
	}
}

// waitAnswer asks every 100 ms until an answer comes, for up to max.
func waitAnswer(ask func() string, max time.Duration) string {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		if got := ask(); got != "" {
			return got
		}
	}
	return ""
}

func (s *endpointSuite) otherProxysService(t *testing.T) {
	ctx := ctxFor(t)
	if _, err := s.l.CreateDeployment(ctx, "other", 1, "node-2"); err != nil {
		t.Fatal(err)
	}
	spec := lab.ServiceFor("other", "other", false)
	spec.Labels = map[string]string{"service.kubernetes.io/service-proxy-name": "someone-else"}
	svc, err := s.l.CreateService(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.l.WaitForEndpoints(ctx, "other", 1); err != nil {
		t.Fatal(err)
	}
	// Absence proves nothing until every proxy has processed the change:
	// a Service of ours created afterwards, with the same pod, must be
	// programmed first.
	marker, err := s.l.CreateService(ctx, lab.ServiceFor("other-marker", "other", false))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.l.DeleteService(context.Background(), "other-marker") })
	for _, n := range s.l.Nodes() {
		var rules string
		err := retryFor(10*followWithin, func() error {
			var err error
			if rules, err = s.l.NodeRules(n.Name); err == nil && !strings.Contains(rules, "default/other-marker/") {
				err = fmt.Errorf("node %s has not programmed the later Service %s yet", n.Name, marker.Spec.ClusterIP)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(rules, svc.Spec.ClusterIP+" ") || strings.Contains(rules, "default/other/") {
			t.Errorf("node %s programmed the other proxy's Service %s", n.Name, svc.Spec.ClusterIP)
		}
	}
	if a, err := s.l.DialWithin("client-0", clusterIP(svc), lab.TCP, 500*time.Millisecond); err == nil {
		t.Errorf("the other proxy's Service answered (%s)", a.Pod)
	}
}
