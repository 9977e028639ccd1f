package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftproxy/nftproxy/e2e/lab"
)

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
	svc = updateService(t, s.l, "chg", func(svc *corev1.Service) { svc.Spec.Type = corev1.ServiceTypeNodePort })
	np1 := nodePort(t, svc, "tcp")
	s.reach(t, lab.External1, netip.AddrPortFrom(node1, np1), lab.TCP)

	// Another nodePort: the old one stops.
	np2 := s.freeNodePort(t)
	svc = updateService(t, s.l, "chg", func(svc *corev1.Service) {
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
	svc = updateService(t, s.l, "chg", func(svc *corev1.Service) {
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
	updateService(t, s.l, "chg", func(svc *corev1.Service) { svc.Spec.Type = corev1.ServiceTypeLoadBalancer })
	svc = s.setIngress(t, "chg", extVIP(5, false))
	lb := netip.AddrPortFrom(extVIP(5, false), newPort)
	s.viaNode(t, "node-1")
	s.reach(t, lab.External1, lb, lab.TCP)
	if pods, _ := s.spread(t, lab.External1, lb, 20); len(pods) != 2 {
		t.Errorf("load balancer IP %v (ETP Cluster) via node-1: answers %v, want chg-0 and chg-1", lb, pods)
	}

	// ETP Cluster -> Local: node-1 (no endpoint) stops, node-2 only chg-0
	// with the client's own address.
	svc = updateService(t, s.l, "chg", func(svc *corev1.Service) {
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
	svc = updateService(t, s.l, "chg", func(svc *corev1.Service) {
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
	updateService(t, s.l, "chg", func(svc *corev1.Service) {
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
