package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nftproxy/nftproxy/e2e/lab"
	corev1 "k8s.io/api/core/v1"
)

// followWithin is how fast nftproxy must follow an EndpointSlice or
// Service change on the data path (measured from the moment the
// control plane shows the change).
const followWithin = time.Second

// TestClusterIP runs the ClusterIP suite on a 3-node lab in each
// cross-node mode. A client pod on node-1 talks to backends on node-2
// and node-3.
func TestClusterIP(t *testing.T) {
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			l := startLab(t, lab.Options{Mode: mode, Nodes: 3})
			s := &clusterIPSuite{l: l}
			s.setup(t)
			t.Run("CrossNodeRoundRobin", s.crossNodeRoundRobin)
			t.Run("DualStack", s.dualStack)
			t.Run("SourcePreservedFromPod", s.sourcePreservedFromPod)
			t.Run("MasqueradedFromNode", s.masqueradedFromNode)
			t.Run("NoEndpointsRefused", s.noEndpointsRefused)
			t.Run("Hairpin", s.hairpin)
			t.Run("ScaleUpDown", s.scaleUpDown)
			t.Run("ServiceDeleted", s.serviceDeleted)
		})
	}
}

type clusterIPSuite struct {
	l   *lab.Lab
	web *corev1.Service // dual-stack, backends web-0 (node-2), web-1 (node-3)
}

const client = "client-0" // the client pod, on node-1

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func (s *clusterIPSuite) setup(t *testing.T) {
	ctx := ctxFor(t)
	if _, err := s.l.CreateDeployment(ctx, "client", 1, "node-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.l.CreateDeployment(ctx, "web", 2, "node-2", "node-3"); err != nil {
		t.Fatal(err)
	}
	var err error
	if s.web, err = s.l.CreateService(ctx, lab.ServiceFor("web", "web", true)); err != nil {
		t.Fatal(err)
	}
	if err := s.l.WaitForEndpoints(ctx, "web", 2); err != nil {
		t.Fatal(err)
	}
}

// vip is the Service's ClusterIP of a family, on port.
func vip(svc *corev1.Service, v6 bool, port int) netip.AddrPort {
	for _, ip := range svc.Spec.ClusterIPs {
		a := netip.MustParseAddr(ip)
		if a.Is6() == v6 {
			return netip.AddrPortFrom(a, uint16(port))
		}
	}
	panic(fmt.Sprintf("service %s has no %v ClusterIP", svc.Name, v6))
}

// firstAnswer waits (up to timeout) until dst answers from from, so the
// first check of a case does not race nftproxy's sync.
func (s *clusterIPSuite) firstAnswer(t *testing.T, from string, dst netip.AddrPort, proto lab.Proto, timeout time.Duration) lab.Answer {
	t.Helper()
	var ans lab.Answer
	err := retryFor(timeout, func() error {
		var err error
		ans, err = s.l.DialWithin(from, dst, proto, 300*time.Millisecond)
		return err
	})
	if err != nil {
		t.Fatalf("%s %s -> %v: no answer within %s: %v", proto, from, dst, timeout, err)
	}
	return ans
}

// answered dials n times and counts who answered.
func (s *clusterIPSuite) answered(t *testing.T, from string, dst netip.AddrPort, proto lab.Proto, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		ans, err := s.l.Dial(from, dst, proto)
		if err != nil {
			t.Fatalf("%s %s -> %v: %v", proto, from, dst, err)
		}
		got[ans.Pod]++
	}
	return got
}

func (s *clusterIPSuite) crossNodeRoundRobin(t *testing.T) {
	for _, proto := range []lab.Proto{lab.TCP, lab.UDP, lab.HTTP} {
		port := lab.SvcPort
		if proto == lab.HTTP {
			port = lab.SvcHTTPPort
		}
		dst := vip(s.web, false, port)
		s.firstAnswer(t, client, dst, proto, 5*time.Second)
		// 40 random picks miss one of 2 backends with probability 2^-39.
		got := s.answered(t, client, dst, proto, 40)
		if len(got) != 2 || got["web-0"] == 0 || got["web-1"] == 0 {
			t.Errorf("%s to %v from node-1: answers %v, want both web-0 (node-2) and web-1 (node-3)", proto, dst, got)
		}
	}
}

func (s *clusterIPSuite) dualStack(t *testing.T) {
	if len(s.web.Spec.ClusterIPs) != 2 {
		t.Fatalf("web has ClusterIPs %v, want one per family", s.web.Spec.ClusterIPs)
	}
	dst := vip(s.web, true, lab.SvcPort)
	s.firstAnswer(t, client, dst, lab.TCP, 5*time.Second)
	got := s.answered(t, client, dst, lab.TCP, 40)
	if got["web-0"] == 0 || got["web-1"] == 0 {
		t.Errorf("IPv6 ClusterIP %v: answers %v, want web-0 and web-1", dst, got)
	}
	if ans, err := s.l.Dial(client, vip(s.web, true, lab.SvcPort), lab.UDP); err != nil || !strings.HasPrefix(ans.Pod, "web-") {
		t.Errorf("UDP over IPv6 ClusterIP: %+v, %v", ans, err)
	}
}

// A pod's traffic to a ClusterIP keeps its source (it is inside the
// cluster CIDR), in both families.
func (s *clusterIPSuite) sourcePreservedFromPod(t *testing.T) {
	c := s.l.Pod(client)
	for _, v6 := range []bool{false, true} {
		dst := vip(s.web, v6, lab.SvcPort)
		ans := s.firstAnswer(t, client, dst, lab.TCP, 5*time.Second)
		if ans.Source.Addr() != c.IP(v6) {
			t.Errorf("%v from pod %s: backend %s saw source %v, want the pod's own %v (no masquerade)", dst, client, ans.Pod, ans.Source, c.IP(v6))
		}
	}
}

// Traffic from a node's host network has a source outside the cluster
// CIDR: it is masqueraded to an address of that node.
func (s *clusterIPSuite) masqueradedFromNode(t *testing.T) {
	n := s.l.Node("node-1")
	own, err := nodeAddrs(s.l, "node-1")
	if err != nil {
		t.Fatal(err)
	}
	for _, v6 := range []bool{false, true} {
		dst := vip(s.web, v6, lab.SvcPort)
		for range 6 {
			ans := s.firstAnswer(t, n.Name, dst, lab.TCP, 5*time.Second)
			if !own[ans.Source.Addr()] {
				t.Errorf("%v from node-1's host network: %s saw source %v, want one of node-1's addresses %v", dst, ans.Pod, ans.Source, keys(own))
			}
		}
	}
}

func (s *clusterIPSuite) noEndpointsRefused(t *testing.T) {
	ctx := ctxFor(t)
	svc, err := s.l.CreateService(ctx, lab.ServiceFor("empty", "nothing-has-this-label", true))
	if err != nil {
		t.Fatal(err)
	}
	for _, v6 := range []bool{false, true} {
		for _, proto := range []lab.Proto{lab.TCP, lab.UDP} {
			dst := vip(svc, v6, lab.SvcPort)
			// Wait until nftproxy has programmed the Service...
			err := retryFor(5*time.Second, func() error {
				_, err := s.l.DialWithin(client, dst, proto, 300*time.Millisecond)
				if lab.IsRefused(err) {
					return nil
				}
				return fmt.Errorf("want refused, got %v", err)
			})
			if err != nil {
				t.Errorf("%s %v without endpoints: %v", proto, dst, err)
				continue
			}
			// ...then a refusal must be immediate, not a timeout.
			start := time.Now()
			_, err = s.l.Dial(client, dst, proto)
			if took := time.Since(start); !lab.IsRefused(err) || took > 200*time.Millisecond {
				t.Errorf("%s %v without endpoints: %v after %s, want refused at once", proto, dst, err, took)
			}
		}
	}
	if err := s.l.DeleteService(ctx, "empty"); err != nil {
		t.Fatal(err)
	}
}

// A pod reaching itself through its Service is answered by itself and
// masqueraded (else it would answer itself directly and drop the reply).
func (s *clusterIPSuite) hairpin(t *testing.T) {
	ctx := ctxFor(t)
	if _, err := s.l.CreateDeployment(ctx, "loop", 1, "node-1"); err != nil {
		t.Fatal(err)
	}
	svc, err := s.l.CreateService(ctx, lab.ServiceFor("loop", "loop", true))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.l.WaitForEndpoints(ctx, "loop", 1); err != nil {
		t.Fatal(err)
	}
	p := s.l.Pod("loop-0")
	for _, v6 := range []bool{false, true} {
		dst := vip(svc, v6, lab.SvcPort)
		ans := s.firstAnswer(t, p.Name, dst, lab.TCP, 5*time.Second)
		if ans.Pod != p.Name {
			t.Errorf("hairpin %v from %s answered by %s", dst, p.Name, ans.Pod)
		}
		if ans.Source.Addr() == p.IP(v6) {
			t.Errorf("hairpin %v: %s saw its own address %v as source, want masquerade", dst, p.Name, ans.Source)
		}
	}
	_ = s.l.DeleteService(ctx, "loop")
	_ = s.l.Scale(ctx, "loop", 0)
}

func (s *clusterIPSuite) scaleUpDown(t *testing.T) {
	ctx := ctxFor(t)
	if _, err := s.l.CreateDeployment(ctx, "scale", 1, "node-2", "node-3"); err != nil {
		t.Fatal(err)
	}
	svc, err := s.l.CreateService(ctx, lab.ServiceFor("scale", "scale", true))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.l.WaitForEndpoints(ctx, "scale", 1); err != nil {
		t.Fatal(err)
	}
	dst := vip(svc, false, lab.SvcPort)
	s.firstAnswer(t, client, dst, lab.TCP, 5*time.Second)

	for _, replicas := range []int{4, 1} {
		if err := s.l.Scale(ctx, "scale", replicas); err != nil {
			t.Fatal(err)
		}
		if err := s.l.WaitForEndpoints(ctx, "scale", replicas); err != nil {
			t.Fatal(err)
		}
		want := s.l.PodsOf("scale")
		took, seen, err := s.untilExactly(dst, want, 3*time.Second)
		if err != nil {
			t.Fatalf("scale to %d: traffic never matched pods %v: %v (answers seen: %v)", replicas, want, err, seen)
		}
		t.Logf("scale to %d: data path matched pods %v %s after the slices did (answers: %v)", replicas, want, took, seen)
		if took > followWithin {
			t.Errorf("scale to %d: data path followed after %s, want within %s", replicas, took, followWithin)
		}
	}
	_ = s.l.DeleteService(ctx, "scale")
	_ = s.l.Scale(ctx, "scale", 0)
}

// untilExactly dials dst until the answers match want exactly: every
// pod of want answered and nothing else did (no other pod, no failed
// dial) for at least 30 dials in a row. It returns when that clean run
// had first covered every pod of want: the moment the data path had
// followed.
func (s *clusterIPSuite) untilExactly(dst netip.AddrPort, want []string, timeout time.Duration) (time.Duration, map[string]int, error) {
	start := time.Now()
	wantSet := map[string]bool{}
	for _, w := range want {
		wantSet[w] = true
	}
	seen := map[string]int{}
	run := map[string]bool{}
	var covered time.Duration
	runLen := 0
	for time.Since(start) < timeout {
		ans, err := s.l.DialWithin(client, dst, lab.TCP, 200*time.Millisecond)
		if err != nil {
			seen["error"]++
		} else {
			seen[ans.Pod]++
		}
		if err != nil || !wantSet[ans.Pod] {
			run, runLen, covered = map[string]bool{}, 0, 0
			continue
		}
		run[ans.Pod] = true
		runLen++
		if len(run) == len(wantSet) && covered == 0 {
			covered = time.Since(start)
		}
		if runLen >= 30 && len(run) == len(wantSet) {
			return covered, seen, nil
		}
	}
	return 0, seen, fmt.Errorf("timeout after %s", timeout)
}

func (s *clusterIPSuite) serviceDeleted(t *testing.T) {
	ctx := ctxFor(t)
	svc, err := s.l.CreateService(ctx, lab.ServiceFor("doomed", "web", true))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.l.WaitForEndpoints(ctx, "doomed", 2); err != nil {
		t.Fatal(err)
	}
	dsts := []netip.AddrPort{vip(svc, false, lab.SvcPort), vip(svc, true, lab.SvcPort)}
	for _, d := range dsts {
		s.firstAnswer(t, client, d, lab.TCP, 5*time.Second)
	}
	if err := s.l.DeleteService(ctx, "doomed"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for _, d := range dsts {
		err := retryFor(3*time.Second, func() error {
			ans, err := s.l.DialWithin(client, d, lab.TCP, 200*time.Millisecond)
			if err == nil {
				return fmt.Errorf("still answered by %s", ans.Pod)
			}
			return nil // refused or dropped: both are fine for an unallocated IP
		})
		if err != nil {
			t.Errorf("deleted Service %v: %v", d, err)
		}
	}
	if took := time.Since(start); took > followWithin {
		t.Errorf("deleted Service still reachable for %s, want within %s", took, followWithin)
	}
	for _, n := range s.l.Nodes() {
		err := retryFor(3*time.Second, func() error {
			rules, err := s.l.NodeRules(n.Name)
			if err != nil {
				return err
			}
			for _, needle := range append([]string{"default/doomed"}, svc.Spec.ClusterIPs...) {
				if strings.Contains(rules, needle) {
					return fmt.Errorf("ruleset still mentions %q", needle)
				}
			}
			return nil
		})
		if err != nil {
			t.Errorf("%s after deleting Service doomed: %v", n.Name, err)
		}
	}
}

func keys[V any](m map[netip.Addr]V) []string {
	var out []string
	for k := range m {
		out = append(out, k.String())
	}
	sort.Strings(out)
	return out
}
