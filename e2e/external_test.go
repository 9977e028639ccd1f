package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftproxy/nftproxy/e2e/lab"
)

// TestExternal proves external traffic on a 3-node lab in each cross-node
// mode, with real packets from the external client namespaces (ext-1,
// ext-2 on the underlay, outside every cluster CIDR): NodePorts,
// externalTrafficPolicy, health-check node ports, load balancer IPs,
// external IPs, source ranges, internalTrafficPolicy, localhost NodePorts
// (off by default), IPv6, and Services changing shape.
//
// Load balancer and external IPs come from extVIPs; the external clients
// route them to one node at a time (viaNode), as an upstream router or
// an L2 announcement would.
func TestExternal(t *testing.T) {
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			l := startLab(t, lab.Options{Mode: mode, Nodes: 3, Prefix: "nftext-"})
			s := &externalSuite{l: l}
			s.setup(t)
			t.Run("NodePortCluster", s.nodePortCluster)
			t.Run("NodePortLocal", s.nodePortLocal)
			t.Run("LoadBalancerAndExternalIP", s.loadBalancerAndExternalIP)
			t.Run("SourceRanges", s.sourceRanges)
			t.Run("InternalTrafficPolicyLocal", s.internalTrafficPolicyLocal)
			t.Run("IPv6", s.ipv6)
			t.Run("HealthCheckNodePort", s.healthCheckNodePort)
			t.Run("LocalhostNodePortOff", s.localhostNodePortOff)
			t.Run("ServiceChanges", s.serviceChanges)
		})
	}
	// Localhost NodePorts are opt-in: a lab of their own.
	t.Run("LocalhostNodePort", func(t *testing.T) {
		l := startLab(t, lab.Options{Mode: lab.Routed, Nodes: 3, Prefix: "nftext-",
			ProxyArgs: []string{"--nodeport-addresses=primary,127.0.0.0/8"}})
		s := &externalSuite{l: l}
		s.localhostNodePortOn(t)
	})
}

// Where load balancer and external IPs live: outside the underlay, the
// cluster and the Service CIDRs, so only the external clients' routes
// (viaNode) lead there.
var (
	extVIPsV4 = netip.MustParsePrefix("10.200.0.0/16")
	extVIPsV6 = netip.MustParsePrefix("fd20::/64")
)

const (
	// dropWait is how long a dial that must go unanswered waits (the
	// lab answers a live connection in milliseconds).
	dropWait = 700 * time.Millisecond
	// spreadDials dials per spread check: missing one of 3 backends has
	// probability 3*(2/3)^30 < 2e-5.
	spreadDials = 30
)

type externalSuite struct {
	l *lab.Lab
	// web: dual-stack LoadBalancer, ETP Cluster, pods web-0..2 on
	// node-1..3, ingress extVIP(1) in both families.
	web *corev1.Service
	// loc: dual-stack LoadBalancer, ETP Local, pods loc-0, loc-1 on
	// node-2 and loc-2 on node-3; none on node-1.
	loc *corev1.Service
}

func (s *externalSuite) setup(t *testing.T) {
	ctx := ctxFor(t)
	l := s.l
	if _, err := l.CreateDeployment(ctx, "client", 2, "node-1", "node-2"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateDeployment(ctx, "web", 3, "node-1", "node-2", "node-3"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateDeployment(ctx, "loc", 3, "node-2", "node-2", "node-3"); err != nil {
		t.Fatal(err)
	}
	web := lab.ServiceFor("web", "web", true)
	web.Spec.Type = corev1.ServiceTypeLoadBalancer
	var err error
	if s.web, err = l.CreateService(ctx, web); err != nil {
		t.Fatal(err)
	}
	s.web = s.setIngress(t, "web", extVIP(1, false), extVIP(1, true))
	loc := lab.ServiceFor("loc", "loc", true)
	loc.Spec.Type = corev1.ServiceTypeLoadBalancer
	loc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	if s.loc, err = l.CreateService(ctx, loc); err != nil {
		t.Fatal(err)
	}
	s.loc = s.setIngress(t, "loc", extVIP(2, false), extVIP(2, true))
	for name, n := range map[string]int{"web": 3, "loc": 3} {
		if err := l.WaitForEndpoints(ctx, name, n); err != nil {
			t.Fatal(err)
		}
	}
	// The external clients' routes to the load balancer / external IPs.
	for _, ext := range []string{lab.External1, lab.External2} {
		ns, err := l.NS(ext)
		if err != nil {
			t.Fatal(err)
		}
		n1 := l.Node("node-1")
		if err := ns.AddRoute(extVIPsV4, n1.IPv4); err != nil {
			t.Fatal(err)
		}
		if err := ns.AddRoute(extVIPsV6, n1.IPv6); err != nil {
			t.Fatal(err)
		}
	}
}

// extVIP is the i-th load balancer / external IP of a family.
func extVIP(i int, v6 bool) netip.Addr {
	p := extVIPsV4
	if v6 {
		p = extVIPsV6
	}
	a := p.Addr()
	for range i {
		a = a.Next()
	}
	return a
}

// viaNode points both external clients' routes to the load balancer and
// external IPs at node (replacing the previous next hop).
func (s *externalSuite) viaNode(t *testing.T, node string) {
	t.Helper()
	n := s.l.Node(node)
	for _, ext := range []string{lab.External1, lab.External2} {
		ns, err := s.l.NS(ext)
		if err != nil {
			t.Fatal(err)
		}
		h, err := netlink.NewHandleAt(netns.NsHandle(ns.FD()))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range []struct {
			dst netip.Prefix
			gw  netip.Addr
		}{{extVIPsV4, n.IPv4}, {extVIPsV6, n.IPv6}} {
			err := h.RouteReplace(&netlink.Route{
				Dst: &net.IPNet{IP: r.dst.Addr().AsSlice(), Mask: net.CIDRMask(r.dst.Bits(), r.dst.Addr().BitLen())},
				Gw:  r.gw.AsSlice(),
			})
			if err != nil {
				h.Close()
				t.Fatalf("route %s via %s in %s: %v", r.dst, r.gw, ext, err)
			}
		}
		h.Close()
	}
}

// setIngress sets status.loadBalancer.ingress of Service name to ips, as
// a load balancer controller would (status subresource).
func (s *externalSuite) setIngress(t *testing.T, name string, ips ...netip.Addr) *corev1.Service {
	t.Helper()
	ctx := ctxFor(t)
	svcs := s.l.Client().CoreV1().Services("default")
	cur, err := svcs.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Status.LoadBalancer.Ingress = nil
	for _, ip := range ips {
		cur.Status.LoadBalancer.Ingress = append(cur.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip.String()})
	}
	out, err := svcs.UpdateStatus(ctx, cur, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("set ingress of %s to %v: %v", name, ips, err)
	}
	return out
}

func (s *externalSuite) update(t *testing.T, name string, change func(*corev1.Service)) *corev1.Service {
	t.Helper()
	ctx := ctxFor(t)
	svcs := s.l.Client().CoreV1().Services("default")
	cur, err := svcs.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	change(cur)
	out, err := svcs.Update(ctx, cur, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("update Service %s: %v", name, err)
	}
	return out
}

// nodePort is the nodePort of svc's port named name.
func nodePort(t *testing.T, svc *corev1.Service, name string) uint16 {
	t.Helper()
	for _, p := range svc.Spec.Ports {
		if p.Name == name && p.NodePort != 0 {
			return uint16(p.NodePort)
		}
	}
	t.Fatalf("Service %s has no nodePort for port %q: %+v", svc.Name, name, svc.Spec.Ports)
	return 0
}

func nodeIP(l *lab.Lab, node string, v6 bool) netip.Addr {
	n := l.Node(node)
	if v6 {
		return n.IPv6
	}
	return n.IPv4
}

// reach waits (up to settle) until dst answers from `from` over proto.
func (s *externalSuite) reach(t *testing.T, from string, dst netip.AddrPort, proto lab.Proto) lab.Answer {
	t.Helper()
	var ans lab.Answer
	err := retryFor(settle, func() error {
		var err error
		ans, err = s.l.DialWithin(from, dst, proto, 500*time.Millisecond)
		return err
	})
	if err != nil {
		t.Fatalf("%s %s -> %v: no answer within %s: %v", proto, from, dst, settle, err)
	}
	return ans
}

// spread dials dst n times over TCP and returns who answered and the
// sources they saw.
func (s *externalSuite) spread(t *testing.T, from string, dst netip.AddrPort, n int) (map[string]int, map[netip.Addr]bool) {
	t.Helper()
	pods, srcs := map[string]int{}, map[netip.Addr]bool{}
	for range n {
		ans, err := s.l.DialWithin(from, dst, lab.TCP, lab.DialTimeout)
		if err != nil {
			t.Fatalf("%s -> %v: %v (answers so far %v)", from, dst, err, pods)
		}
		pods[ans.Pod]++
		srcs[ans.Source.Addr()] = true
	}
	return pods, srcs
}

// unanswered waits (up to settle) until dst no longer answers from
// `from`, then requires three more dials in a row to fail the same way.
// wantTimeout asks for a drop (no RST, no ICMP error); otherwise any
// failure counts (refused or dropped).
func (s *externalSuite) unanswered(t *testing.T, from string, dst netip.AddrPort, proto lab.Proto, wantTimeout bool, why string) {
	t.Helper()
	check := func() error {
		ans, err := s.l.DialWithin(from, dst, proto, dropWait)
		switch {
		case err == nil:
			return fmt.Errorf("answered by %s (saw %v)", ans.Pod, ans.Source)
		case wantTimeout && !lab.IsTimeout(err):
			return fmt.Errorf("want a drop (timeout), got %v", err)
		}
		return nil
	}
	if err := retryFor(settle, check); err != nil {
		t.Fatalf("%s %s -> %v (%s): not within %s: %v", proto, from, dst, why, settle, err)
	}
	for range 3 {
		if err := check(); err != nil {
			t.Fatalf("%s %s -> %v (%s): %v", proto, from, dst, why, err)
		}
	}
}

// NodePort with externalTrafficPolicy Cluster: on every node's address,
// every endpoint (on all three nodes) answers, and the backend sees an
// address of the node the client dialed (masqueraded), TCP and UDP.
func (s *externalSuite) nodePortCluster(t *testing.T) {
	np := nodePort(t, s.web, "tcp")
	for _, n := range s.l.Nodes() {
		own, err := nodeAddrs(s.l, n.Name)
		if err != nil {
			t.Fatal(err)
		}
		dst := netip.AddrPortFrom(n.IPv4, np)
		s.reach(t, lab.External1, dst, lab.TCP)
		pods, srcs := s.spread(t, lab.External1, dst, spreadDials)
		if len(pods) != 3 {
			t.Errorf("NodePort %v (ETP Cluster) from %s: answers %v, want web-0, web-1 and web-2 (one per node)", dst, lab.External1, pods)
		}
		for src := range srcs {
			if !own[src] {
				t.Errorf("NodePort %v (ETP Cluster): a backend saw source %v, want an address of %s (masquerade) %v", dst, src, n.Name, keys(own))
			}
		}
		udp := netip.AddrPortFrom(n.IPv4, nodePort(t, s.web, "udp"))
		if ans, err := s.l.Dial(lab.External1, udp, lab.UDP); err != nil || !strings.HasPrefix(ans.Pod, "web-") {
			t.Errorf("UDP NodePort %v: %+v, %v", udp, ans, err)
		} else if !own[ans.Source.Addr()] {
			t.Errorf("UDP NodePort %v: %s saw source %v, want an address of %s", udp, ans.Pod, ans.Source, n.Name)
		}
	}
}

// NodePort with externalTrafficPolicy Local: only the dialed node's own
// endpoints answer, they see the client's real address, and a node
// without local endpoints drops.
func (s *externalSuite) nodePortLocal(t *testing.T) {
	np := nodePort(t, s.loc, "tcp")
	client := lab.ExternalIP(lab.External1, false)
	want := map[string][]string{"node-2": {"loc-0", "loc-1"}, "node-3": {"loc-2"}}
	for _, node := range []string{"node-2", "node-3"} {
		dst := netip.AddrPortFrom(nodeIP(s.l, node, false), np)
		s.reach(t, lab.External1, dst, lab.TCP)
		pods, srcs := s.spread(t, lab.External1, dst, spreadDials)
		if !sameSet(pods, want[node]) {
			t.Errorf("NodePort %v on %s (ETP Local): answers %v, want exactly the local %v", dst, node, pods, want[node])
		}
		if len(srcs) != 1 || !srcs[client] {
			t.Errorf("NodePort %v on %s (ETP Local): backends saw sources %v, want only the client's %v", dst, node, keys(srcs), client)
		}
	}
	dst := netip.AddrPortFrom(nodeIP(s.l, "node-1", false), np)
	s.unanswered(t, lab.External1, dst, lab.TCP, true, "ETP Local NodePort on node-1, which has no local endpoint")
	udp := netip.AddrPortFrom(nodeIP(s.l, "node-1", false), nodePort(t, s.loc, "udp"))
	s.unanswered(t, lab.External1, udp, lab.UDP, true, "ETP Local UDP NodePort on node-1, which has no local endpoint")
}

// The web Service's load balancer IP and an external IP answer through
// every node (ETP Cluster: all endpoints, masqueraded).
func (s *externalSuite) loadBalancerAndExternalIP(t *testing.T) {
	ctx := ctxFor(t)
	spec := lab.ServiceFor("extip", "web", false)
	spec.Spec.ExternalIPs = []string{extVIP(3, false).String()}
	if _, err := s.l.CreateService(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if err := s.l.WaitForEndpoints(ctx, "extip", 3); err != nil {
		t.Fatal(err)
	}
	defer s.viaNode(t, "node-1")
	for _, n := range s.l.Nodes() {
		s.viaNode(t, n.Name)
		own, err := nodeAddrs(s.l, n.Name)
		if err != nil {
			t.Fatal(err)
		}
		for _, tg := range []struct {
			what string
			dst  netip.AddrPort
		}{
			{"load balancer IP", netip.AddrPortFrom(extVIP(1, false), lab.SvcPort)},
			{"external IP", netip.AddrPortFrom(extVIP(3, false), lab.SvcPort)},
		} {
			s.reach(t, lab.External1, tg.dst, lab.TCP)
			pods, srcs := s.spread(t, lab.External1, tg.dst, spreadDials)
			if len(pods) != 3 {
				t.Errorf("%s %v via %s: answers %v, want web-0, web-1 and web-2", tg.what, tg.dst, n.Name, pods)
			}
			for src := range srcs {
				if !own[src] {
					t.Errorf("%s %v via %s: a backend saw source %v, want an address of %s (masquerade)", tg.what, tg.dst, n.Name, src, n.Name)
				}
			}
			if ans, err := s.l.Dial(lab.External2, tg.dst, lab.UDP); err != nil {
				t.Errorf("UDP %s %v via %s from %s: %v", tg.what, tg.dst, n.Name, lab.External2, err)
			} else if !strings.HasPrefix(ans.Pod, "web-") {
				t.Errorf("UDP %s %v: answered by %s", tg.what, tg.dst, ans.Pod)
			}
		}
	}
	// ETP Local load balancer IP: through node-2 only its local
	// endpoints with the client's address, through node-1 dropped.
	dst := netip.AddrPortFrom(extVIP(2, false), lab.SvcPort)
	s.viaNode(t, "node-2")
	s.reach(t, lab.External1, dst, lab.TCP)
	pods, srcs := s.spread(t, lab.External1, dst, spreadDials)
	if !sameSet(pods, []string{"loc-0", "loc-1"}) || len(srcs) != 1 || !srcs[lab.ExternalIP(lab.External1, false)] {
		t.Errorf("ETP Local load balancer IP %v via node-2: answers %v, sources %v; want loc-0 and loc-1 seeing %v", dst, pods, keys(srcs), lab.ExternalIP(lab.External1, false))
	}
	s.viaNode(t, "node-1")
	s.unanswered(t, lab.External1, dst, lab.TCP, true, "ETP Local load balancer IP via node-1, which has no local endpoint")
	if err := s.l.DeleteService(ctx, "extip"); err != nil {
		t.Fatal(err)
	}
}

// loadBalancerSourceRanges admit ext-1 and drop ext-2, in both families;
// the Service's NodePort stays open to both (as upstream).
func (s *externalSuite) sourceRanges(t *testing.T) {
	ctx := ctxFor(t)
	spec := lab.ServiceFor("fw", "web", true)
	spec.Spec.Type = corev1.ServiceTypeLoadBalancer
	spec.Spec.LoadBalancerSourceRanges = []string{
		netip.PrefixFrom(lab.ExternalIP(lab.External1, false), 32).String(),
		netip.PrefixFrom(lab.ExternalIP(lab.External1, true), 128).String(),
	}
	if _, err := s.l.CreateService(ctx, spec); err != nil {
		t.Fatal(err)
	}
	svc := s.setIngress(t, "fw", extVIP(4, false), extVIP(4, true))
	if err := s.l.WaitForEndpoints(ctx, "fw", 3); err != nil {
		t.Fatal(err)
	}
	for _, v6 := range []bool{false, true} {
		dst := netip.AddrPortFrom(extVIP(4, v6), lab.SvcPort)
		s.reach(t, lab.External1, dst, lab.TCP)
		if pods, _ := s.spread(t, lab.External1, dst, 10); len(pods) == 0 {
			t.Errorf("%v from %s (inside the ranges): no answers", dst, lab.External1)
		}
		s.unanswered(t, lab.External2, dst, lab.TCP, true, "load balancer IP from ext-2, outside loadBalancerSourceRanges")
		s.unanswered(t, lab.External2, dst, lab.UDP, true, "UDP load balancer IP from ext-2, outside loadBalancerSourceRanges")
		np := netip.AddrPortFrom(nodeIP(s.l, "node-1", v6), nodePort(t, svc, "tcp"))
		if ans, err := s.l.Dial(lab.External2, np, lab.TCP); err != nil {
			t.Errorf("NodePort %v of the source-ranged Service from %s: %v, want an answer (NodePorts are not filtered)", np, lab.External2, err)
		} else if !strings.HasPrefix(ans.Pod, "web-") {
			t.Errorf("NodePort %v answered by %s", np, ans.Pod)
		}
	}
	if err := s.l.DeleteService(ctx, "fw"); err != nil {
		t.Fatal(err)
	}
}

// internalTrafficPolicy Local: a pod on a node without an endpoint gets
// no answer, a pod on a node with one reaches only it.
func (s *externalSuite) internalTrafficPolicyLocal(t *testing.T) {
	ctx := ctxFor(t)
	if _, err := s.l.CreateDeployment(ctx, "itp", 2, "node-2", "node-3"); err != nil {
		t.Fatal(err)
	}
	spec := lab.ServiceFor("itp", "itp", true)
	local := corev1.ServiceInternalTrafficPolicyLocal
	spec.Spec.InternalTrafficPolicy = &local
	svc, err := s.l.CreateService(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.l.WaitForEndpoints(ctx, "itp", 2); err != nil {
		t.Fatal(err)
	}
	for _, v6 := range []bool{false, true} {
		dst := vip(svc, v6, lab.SvcPort)
		// client-1 is on node-2 with itp-0.
		s.reach(t, "client-1", dst, lab.TCP)
		if pods, _ := s.spread(t, "client-1", dst, 20); !sameSet(pods, []string{"itp-0"}) {
			t.Errorf("ITP Local %v from client-1 on node-2: answers %v, want only the local itp-0", dst, pods)
		}
		// client-0 is on node-1, which has no itp endpoint.
		s.unanswered(t, "client-0", dst, lab.TCP, false, "ITP Local ClusterIP from node-1, which has no local endpoint")
	}
	if err := s.l.DeleteService(ctx, "itp"); err != nil {
		t.Fatal(err)
	}
}

// IPv6: NodePort and load balancer IP through every node (ETP Cluster,
// masqueraded, all endpoints), and ETP Local on IPv6.
func (s *externalSuite) ipv6(t *testing.T) {
	defer s.viaNode(t, "node-1")
	for _, n := range s.l.Nodes() {
		own, err := nodeAddrs(s.l, n.Name)
		if err != nil {
			t.Fatal(err)
		}
		s.viaNode(t, n.Name)
		for _, tg := range []struct {
			what string
			dst  netip.AddrPort
		}{
			{"IPv6 NodePort", netip.AddrPortFrom(n.IPv6, nodePort(t, s.web, "tcp"))},
			{"IPv6 load balancer IP", netip.AddrPortFrom(extVIP(1, true), lab.SvcPort)},
		} {
			s.reach(t, lab.External1, tg.dst, lab.TCP)
			pods, srcs := s.spread(t, lab.External1, tg.dst, spreadDials)
			if len(pods) != 3 {
				t.Errorf("%s %v via %s: answers %v, want web-0, web-1 and web-2", tg.what, tg.dst, n.Name, pods)
			}
			for src := range srcs {
				if !own[src] {
					t.Errorf("%s %v via %s: a backend saw source %v, want an address of %s (masquerade)", tg.what, tg.dst, n.Name, src, n.Name)
				}
			}
		}
		udp := netip.AddrPortFrom(n.IPv6, nodePort(t, s.web, "udp"))
		if ans, err := s.l.Dial(lab.External1, udp, lab.UDP); err != nil || !strings.HasPrefix(ans.Pod, "web-") {
			t.Errorf("UDP IPv6 NodePort %v: %+v, %v", udp, ans, err)
		}
	}
	client := lab.ExternalIP(lab.External1, true)
	dst := netip.AddrPortFrom(nodeIP(s.l, "node-2", true), nodePort(t, s.loc, "tcp"))
	s.reach(t, lab.External1, dst, lab.TCP)
	pods, srcs := s.spread(t, lab.External1, dst, spreadDials)
	if !sameSet(pods, []string{"loc-0", "loc-1"}) || len(srcs) != 1 || !srcs[client] {
		t.Errorf("IPv6 ETP Local NodePort %v on node-2: answers %v, sources %v; want loc-0 and loc-1 seeing %v", dst, pods, keys(srcs), client)
	}
	s.unanswered(t, lab.External1, netip.AddrPortFrom(nodeIP(s.l, "node-1", true), dst.Port()), lab.TCP, true,
		"IPv6 ETP Local NodePort on node-1, which has no local endpoint")
	s.viaNode(t, "node-2")
	lb := netip.AddrPortFrom(extVIP(2, true), lab.SvcPort)
	s.reach(t, lab.External1, lb, lab.TCP)
	pods, srcs = s.spread(t, lab.External1, lb, spreadDials)
	if !sameSet(pods, []string{"loc-0", "loc-1"}) || len(srcs) != 1 || !srcs[client] {
		t.Errorf("IPv6 ETP Local load balancer IP %v via node-2: answers %v, sources %v; want loc-0 and loc-1 seeing %v", lb, pods, keys(srcs), client)
	}
}

// healthBody is the health-check node port's JSON answer.
type healthBody struct {
	Service struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"service"`
	LocalEndpoints      int  `json:"localEndpoints"`
	ServiceProxyHealthy bool `json:"serviceProxyHealthy"`
}

// The loc Service's healthCheckNodePort: 200 with the local endpoint
// count on nodes with local endpoints, 503 on node-1; node-3 flips to
// 503 when its only endpoint goes.
func (s *externalSuite) healthCheckNodePort(t *testing.T) {
	hc := uint16(s.loc.Spec.HealthCheckNodePort)
	if hc == 0 {
		t.Fatalf("Service loc (LoadBalancer, ETP Local) has no healthCheckNodePort")
	}
	want := map[string]int{"node-1": 0, "node-2": 2, "node-3": 1}
	check := func(node string, n int) error {
		for _, v6 := range []bool{false, true} {
			addr := netip.AddrPortFrom(nodeIP(s.l, node, v6), hc)
			code, body, err := s.httpGet(lab.External1, addr)
			if err != nil {
				return fmt.Errorf("GET %v: %w", addr, err)
			}
			wantCode := http.StatusOK
			if n == 0 {
				wantCode = http.StatusServiceUnavailable
			}
			var hb healthBody
			if err := json.Unmarshal([]byte(body), &hb); err != nil {
				return fmt.Errorf("GET %v: HTTP %d, body %q: %v", addr, code, body, err)
			}
			if code != wantCode || hb.Service.Namespace != "default" || hb.Service.Name != "loc" || hb.LocalEndpoints != n || !hb.ServiceProxyHealthy {
				return fmt.Errorf("GET %v: HTTP %d %s, want %d with service default/loc, localEndpoints %d, serviceProxyHealthy true", addr, code, strings.TrimSpace(body), wantCode, n)
			}
		}
		return nil
	}
	for _, node := range []string{"node-1", "node-2", "node-3"} {
		if err := retryFor(settle, func() error { return check(node, want[node]) }); err != nil {
			t.Errorf("health check on %s: %v", node, err)
		}
	}
	// loc-2, node-3's only endpoint, goes.
	ctx := ctxFor(t)
	if err := s.l.Scale(ctx, "loc", 2); err != nil {
		t.Fatal(err)
	}
	if err := s.l.WaitForEndpoints(ctx, "loc", 2); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := retryFor(settle, func() error { return check("node-3", 0) }); err != nil {
		t.Errorf("health check on node-3 after its last endpoint went: %v", err)
	} else {
		t.Logf("node-3's health check answered 503 %s after the slices lost loc-2", time.Since(start).Round(time.Millisecond))
	}
	if err := check("node-2", 2); err != nil {
		t.Errorf("health check on node-2 (unchanged): %v", err)
	}
	s.unanswered(t, lab.External1, netip.AddrPortFrom(nodeIP(s.l, "node-3", false), nodePort(t, s.loc, "tcp")), lab.TCP, true,
		"ETP Local NodePort on node-3 after its last local endpoint went")
}

// httpGet fetches http://addr/ from a lab namespace: status and body.
func (s *externalSuite) httpGet(from string, addr netip.AddrPort) (int, string, error) {
	ns, err := s.l.NS(from)
	if err != nil {
		return 0, "", err
	}
	tr := &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
		var c net.Conn
		err := ns.Do(func() error {
			var d net.Dialer
			var err error
			c, err = d.DialContext(ctx, network, a)
			return err
		})
		return c, err
	}}
	resp, err := (&http.Client{Transport: tr, Timeout: lab.DialTimeout}).Get("http://" + addr.String() + "/")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(b), err
}

// Without 127.0.0.0/8 in --nodeport-addresses (the default, primary),
// 127.0.0.1:<nodePort> on a node is not a Service.
func (s *externalSuite) localhostNodePortOff(t *testing.T) {
	np := nodePort(t, s.web, "tcp")
	// The NodePort itself works from the node...
	s.reach(t, "node-1", netip.AddrPortFrom(nodeIP(s.l, "node-1", false), np), lab.TCP)
	// ...but not on localhost.
	dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), np)
	if ans, err := s.l.DialWithin("node-1", dst, lab.TCP, dropWait); err == nil {
		t.Errorf("%v from node-1 answered by %s without localhost NodePorts enabled", dst, ans.Pod)
	}
}

// With --nodeport-addresses=primary,127.0.0.0/8, 127.0.0.1:<nodePort>
// from the node reaches every endpoint (local and remote), and the node
// IP NodePort still works.
func (s *externalSuite) localhostNodePortOn(t *testing.T) {
	ctx := ctxFor(t)
	if _, err := s.l.CreateDeployment(ctx, "web", 3, "node-1", "node-2", "node-3"); err != nil {
		t.Fatal(err)
	}
	spec := lab.ServiceFor("web", "web", false)
	spec.Spec.Type = corev1.ServiceTypeNodePort
	svc, err := s.l.CreateService(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.l.WaitForEndpoints(ctx, "web", 3); err != nil {
		t.Fatal(err)
	}
	np := nodePort(t, svc, "tcp")
	for _, node := range []string{"node-1", "node-2"} {
		dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), np)
		s.reach(t, node, dst, lab.TCP)
		if pods, _ := s.spread(t, node, dst, spreadDials); len(pods) != 3 {
			t.Errorf("localhost NodePort %v from %s: answers %v, want web-0, web-1 and web-2", dst, node, pods)
		}
		if ans, err := s.l.Dial(node, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), nodePort(t, svc, "udp")), lab.UDP); err != nil {
			t.Errorf("UDP localhost NodePort from %s: %v", node, err)
		} else if !strings.HasPrefix(ans.Pod, "web-") {
			t.Errorf("UDP localhost NodePort answered by %s", ans.Pod)
		}
	}
	dst := netip.AddrPortFrom(nodeIP(s.l, "node-3", false), np)
	s.reach(t, lab.External1, dst, lab.TCP)
	if pods, _ := s.spread(t, lab.External1, dst, spreadDials); len(pods) != 3 {
		t.Errorf("NodePort %v from %s with localhost NodePorts on: answers %v, want all three", dst, lab.External1, pods)
	}
}

// A Service changes shape step by step; each step's old exposure stops
// (asserted) and the new one starts:
// ClusterIP -> NodePort -> other nodePort -> other port -> LoadBalancer
// with ingress IP -> ETP Local -> ClusterIP -> ExternalName.
func (s *externalSuite) serviceChanges(t *testing.T) {
	ctx := ctxFor(t)
	l := s.l
	if _, err := l.CreateDeployment(ctx, "chg", 2, "node-2", "node-3"); err != nil {
		t.Fatal(err)
	}
	svc, err := l.CreateService(ctx, lab.ServiceFor("chg", "chg", false))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.WaitForEndpoints(ctx, "chg", 2); err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr(svc.Spec.ClusterIP)
	s.reach(t, "client-0", netip.AddrPortFrom(ip, lab.SvcPort), lab.TCP)
	node1 := nodeIP(l, "node-1", false)

	// ClusterIP -> NodePort.
	svc = s.update(t, "chg", func(svc *corev1.Service) { svc.Spec.Type = corev1.ServiceTypeNodePort })
	np1 := nodePort(t, svc, "tcp")
	s.reach(t, lab.External1, netip.AddrPortFrom(node1, np1), lab.TCP)

	// Another nodePort: the old one stops.
	np2 := s.freeNodePort(t)
	svc = s.update(t, "chg", func(svc *corev1.Service) {
		for i := range svc.Spec.Ports {
			if svc.Spec.Ports[i].Name == "tcp" {
				svc.Spec.Ports[i].NodePort = int32(np2)
			}
		}
	})
	s.reach(t, lab.External1, netip.AddrPortFrom(node1, np2), lab.TCP)
	s.unanswered(t, lab.External1, netip.AddrPortFrom(node1, np1), lab.TCP, false, "the replaced nodePort")

	// Another service port: port 80 stops, 8080 starts (UDP 80 stays).
	const newPort = 8080
	svc = s.update(t, "chg", func(svc *corev1.Service) {
		for i := range svc.Spec.Ports {
			if svc.Spec.Ports[i].Name == "tcp" {
				svc.Spec.Ports[i].Port = newPort
			}
		}
	})
	s.reach(t, "client-0", netip.AddrPortFrom(ip, newPort), lab.TCP)
	s.unanswered(t, "client-0", netip.AddrPortFrom(ip, lab.SvcPort), lab.TCP, false, "the ClusterIP's old TCP port")
	if _, err := l.Dial("client-0", netip.AddrPortFrom(ip, lab.SvcPort), lab.UDP); err != nil {
		t.Errorf("UDP port 80, unchanged, after TCP moved to %d: %v", newPort, err)
	}
	s.reach(t, lab.External1, netip.AddrPortFrom(node1, np2), lab.TCP) // nodePort unchanged

	// NodePort -> LoadBalancer with an ingress IP.
	s.update(t, "chg", func(svc *corev1.Service) { svc.Spec.Type = corev1.ServiceTypeLoadBalancer })
	svc = s.setIngress(t, "chg", extVIP(5, false))
	lb := netip.AddrPortFrom(extVIP(5, false), newPort)
	s.viaNode(t, "node-1")
	s.reach(t, lab.External1, lb, lab.TCP)
	if pods, _ := s.spread(t, lab.External1, lb, 20); len(pods) != 2 {
		t.Errorf("load balancer IP %v (ETP Cluster) via node-1: answers %v, want chg-0 and chg-1", lb, pods)
	}

	// ETP Cluster -> Local: node-1 (no endpoint) stops, node-2 only chg-0
	// with the client's own address.
	svc = s.update(t, "chg", func(svc *corev1.Service) {
		svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	})
	s.unanswered(t, lab.External1, netip.AddrPortFrom(node1, np2), lab.TCP, true, "NodePort on node-1 after ETP became Local")
	s.unanswered(t, lab.External1, lb, lab.TCP, true, "load balancer IP via node-1 after ETP became Local")
	client := lab.ExternalIP(lab.External1, false)
	n2 := netip.AddrPortFrom(nodeIP(l, "node-2", false), np2)
	followed(t, "ETP Local NodePort on node-2: only chg-0, seeing the client's address", func() (bool, string) {
		pods, srcs := map[string]int{}, map[netip.Addr]bool{}
		for range 10 {
			ans, err := l.DialWithin(lab.External1, n2, lab.TCP, 500*time.Millisecond)
			if err != nil {
				return false, err.Error()
			}
			pods[ans.Pod]++
			srcs[ans.Source.Addr()] = true
		}
		return sameSet(pods, []string{"chg-0"}) && len(srcs) == 1 && srcs[client], fmt.Sprint(pods, keys(srcs))
	})

	// LoadBalancer -> ClusterIP (the load balancer controller clears the
	// status): NodePorts and the load balancer IP stop everywhere.
	svc = s.update(t, "chg", func(svc *corev1.Service) {
		svc.Spec.Type = corev1.ServiceTypeClusterIP
		svc.Spec.ExternalTrafficPolicy = ""
		svc.Spec.HealthCheckNodePort = 0
		svc.Spec.AllocateLoadBalancerNodePorts = nil
		for i := range svc.Spec.Ports {
			svc.Spec.Ports[i].NodePort = 0
		}
	})
	s.setIngress(t, "chg")
	for _, n := range l.Nodes() {
		s.unanswered(t, lab.External1, netip.AddrPortFrom(n.IPv4, np2), lab.TCP, false, "NodePort on "+n.Name+" after the Service became ClusterIP")
	}
	s.viaNode(t, "node-2")
	s.unanswered(t, lab.External1, lb, lab.TCP, false, "load balancer IP via node-2 after the Service became ClusterIP")
	s.viaNode(t, "node-1")
	s.reach(t, "client-0", netip.AddrPortFrom(ip, newPort), lab.TCP)

	// ClusterIP -> ExternalName: the ClusterIP stops, and no node's rules
	// mention the Service any more.
	s.update(t, "chg", func(svc *corev1.Service) {
		svc.Spec.Type = corev1.ServiceTypeExternalName
		svc.Spec.ExternalName = "example.com"
		svc.Spec.ClusterIP = ""
		svc.Spec.ClusterIPs = nil
		svc.Spec.IPFamilies = nil
		svc.Spec.IPFamilyPolicy = nil
		svc.Spec.InternalTrafficPolicy = nil
		svc.Spec.Selector = nil
	})
	s.unanswered(t, "client-0", netip.AddrPortFrom(ip, newPort), lab.TCP, false, "the ClusterIP after the Service became ExternalName")
	for _, n := range l.Nodes() {
		err := retryFor(settle, func() error {
			rules, err := l.NodeRules(n.Name)
			if err != nil {
				return err
			}
			for _, needle := range []string{"default/chg/", ip.String() + " "} {
				if strings.Contains(rules, needle) {
					return fmt.Errorf("ruleset still mentions %q", needle)
				}
			}
			return nil
		})
		if err != nil {
			t.Errorf("%s after Service chg became ExternalName: %v", n.Name, err)
		}
	}
}

// freeNodePort returns a port of the default NodePort range that no
// Service uses.
func (s *externalSuite) freeNodePort(t *testing.T) uint16 {
	t.Helper()
	list, err := s.l.Client().CoreV1().Services("").List(ctxFor(t), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	used := map[int32]bool{}
	for _, svc := range list.Items {
		used[svc.Spec.HealthCheckNodePort] = true
		for _, p := range svc.Spec.Ports {
			used[p.NodePort] = true
		}
	}
	for p := int32(32000); p < 32767; p++ {
		if !used[p] {
			return uint16(p)
		}
	}
	t.Fatal("no free nodePort")
	return 0
}

// sameSet reports whether the pods that answered are exactly want.
func sameSet(got map[string]int, want []string) bool {
	if len(got) != len(want) {
		return false
	}
	for _, w := range want {
		if got[w] == 0 {
			return false
		}
	}
	return true
}
