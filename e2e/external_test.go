package e2e

import (
	"fmt"
	"net"
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

// spreadMasqueraded checks that dst, reached from External1 through node,
// answers from all three web pods, each seeing an address of node (own).
func (s *externalSuite) spreadMasqueraded(t *testing.T, what string, dst netip.AddrPort, node string, own map[netip.Addr]bool) {
	t.Helper()
	s.reach(t, lab.External1, dst, lab.TCP)
	pods, srcs := s.spread(t, lab.External1, dst, spreadDials)
	if len(pods) != 3 {
		t.Errorf("%s %v via %s: answers %v, want web-0, web-1 and web-2", what, dst, node, pods)
	}
	for src := range srcs {
		if !own[src] {
			t.Errorf("%s %v via %s: a backend saw source %v, want an address of %s (masquerade)", what, dst, node, src, node)
		}
	}
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
			s.spreadMasqueraded(t, tg.what, tg.dst, n.Name, own)
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
			s.spreadMasqueraded(t, tg.what, tg.dst, n.Name, own)
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
