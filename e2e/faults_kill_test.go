package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftproxy/nftproxy/e2e/lab"
)

// Fault suite, scenario 1 (issue 10): the nftproxy of the client's node is
// killed with SIGKILL ten times, at a random moment up to 300 ms after a
// Service was created (named to sort first, so the restarted proxy numbers
// every service port differently), and stays down for a second. While it
// is down the previous round's Service is deleted and the only ready
// endpoint of another Service replaced. Throughout, a TCP client opens a connection
// every 20 ms, a persistent UDP flow sends a request every 50 ms and a
// client of a ClientIP-affinity Service connects every 50 ms: not one
// request may fail, the UDP flow and the affinity client must stay on
// their backend, and each restarted proxy must have the changes in the
// kernel, and reachable, within 2 s of its start.

const (
	killRounds      = 10
	killConvergence = 2 * time.Second
	killDownTime    = time.Second
)

func TestFaultProxyKill(t *testing.T) {
	l := startLab(t, lab.Options{Mode: lab.Routed, Nodes: 3, Prefix: "nftfk-"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	deploy(t, ctx, l, pods{"client", 1, []string{"node-1"}}, pods{"affclient", 1, []string{"node-1"}},
		pods{"web", 2, []string{"node-2", "node-3"}}, pods{"sticky", 3, []string{"node-2", "node-3"}},
		pods{"churn", 2, []string{"node-2", "node-3"}})
	web := mustService(t, l, lab.ServiceFor("web", "web", false))
	spec := lab.ServiceFor("sticky", "sticky", false)
	spec.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	sticky := mustService(t, l, spec)
	churn := mustService(t, l, lab.ServiceFor("churn", "churn", false))
	if err := l.SetReady(ctx, "churn-1", false); err != nil {
		t.Fatal(err)
	}
	for svc, n := range map[string]int{"web": 2, "sticky": 3, "churn": 1} {
		if err := l.WaitForEndpoints(ctx, svc, n); err != nil {
			t.Fatal(err)
		}
	}
	s := &clusterIPSuite{l: l}
	for _, svc := range []*corev1.Service{web, sticky, churn} {
		s.firstAnswer(t, "client-0", vip(svc, false, lab.SvcPort), lab.TCP, 10*time.Second)
	}
	s.firstAnswer(t, "client-0", vip(web, false, lab.SvcPort), lab.UDP, 10*time.Second)

	tcp := tcpFlow(l, "TCP client", "client-0", vip(web, false, lab.SvcPort), 20*time.Millisecond, 2*time.Second)
	udp := udpFlow(t, l, "UDP flow", "client-0", vip(web, false, lab.SvcPort), 50*time.Millisecond, 2*time.Second)
	aff := tcpFlow(l, "affinity client", "affclient-0", vip(sticky, false, lab.SvcPort), 50*time.Millisecond, 2*time.Second)
	flows := []*flow{tcp, udp, aff}
	defer func() {
		for _, f := range flows {
			f.stop()
		}
	}()

	logStart := logSize(l, "node-1")
	var prev *corev1.Service
	var kernelTimes, reachTimes, downTimes []time.Duration
	for round := 1; round <= killRounds; round++ {
		// The kill lands at a different moment of each round: up to
		// 300 ms after a change, so sometimes in the middle of its sync.
		added := mustService(t, l, lab.ServiceFor(fmt.Sprintf("a-new-%d", round), "web", false))
		time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		killed := time.Now()
		if err := l.KillProxy("node-1"); err != nil {
			t.Fatal(err)
		}
		// More changes while the proxy is down, each awaited in the API.
		if prev != nil {
			if err := l.DeleteService(ctx, prev.Name); err != nil {
				t.Fatal(err)
			}
		}
		ready, unready := fmt.Sprintf("churn-%d", round%2), fmt.Sprintf("churn-%d", (round+1)%2)
		if err := l.SetReady(ctx, ready, true); err != nil {
			t.Fatal(err)
		}
		if err := l.SetReady(ctx, unready, false); err != nil {
			t.Fatal(err)
		}
		readyIP := l.Pod(ready).IPv4.String()
		if err := waitReadyAddrs(ctx, l, "churn", []string{readyIP}); err != nil {
			t.Fatal(err)
		}
		if err := l.WaitForEndpoints(ctx, added.Name, 2); err != nil {
			t.Fatal(err)
		}

		// Down for a while, as a pod restart takes, with traffic flowing
		// on the rules left in the kernel.
		time.Sleep(time.Until(killed.Add(killDownTime)))
		restarted := time.Now()
		downTimes = append(downTimes, restarted.Sub(killed))
		if err := l.StartProxy(ctx, "node-1"); err != nil {
			t.Fatal(err)
		}
		addedIP := added.Spec.ClusterIP
		within(t, 30*time.Second, fmt.Sprintf("round %d: the changes made while nftproxy was down in node-1's kernel", round), func() (bool, string) {
			d, err := kernelView(l, "node-1")
			if err != nil {
				return false, err.Error()
			}
			if got := endpointAddrs(frontend(d, addedIP, lab.SvcPort, "TCP")); len(got) != 2 {
				return false, fmt.Sprintf("new Service %s has endpoints %v", addedIP, got)
			}
			if prev != nil && frontend(d, prev.Spec.ClusterIP, lab.SvcPort, "TCP") != nil {
				return false, fmt.Sprintf("deleted Service %s still programmed", prev.Spec.ClusterIP)
			}
			if got := endpointAddrs(frontend(d, churn.Spec.ClusterIP, lab.SvcPort, "TCP")); !slices.Equal(got, []string{readyIP}) {
				return false, fmt.Sprintf("churn endpoints %v, want [%s]", got, readyIP)
			}
			return true, ""
		})
		kernel := time.Since(restarted)
		within(t, 10*time.Second, fmt.Sprintf("round %d: the new Service and the new endpoint answer", round), func() (bool, string) {
			if _, err := l.DialWithin("client-0", vip(added, false, lab.SvcPort), lab.TCP, 300*time.Millisecond); err != nil {
				return false, err.Error()
			}
			a, err := l.DialWithin("client-0", vip(churn, false, lab.SvcPort), lab.TCP, 300*time.Millisecond)
			if err != nil || a.Pod != ready {
				return false, fmt.Sprintf("churn answered by %q (%v), want %s", a.Pod, err, ready)
			}
			return true, ""
		})
		reach := time.Since(restarted)
		// The replaced endpoint is gone from the data path, not just
		// from the kernel view.
		for range 10 {
			if a, err := l.Dial("client-0", vip(churn, false, lab.SvcPort), lab.TCP); err != nil || a.Pod != ready {
				t.Errorf("round %d: churn answered by %q (%v) after convergence, want only %s", round, a.Pod, err, ready)
			}
		}
		kernelTimes, reachTimes = append(kernelTimes, kernel), append(reachTimes, reach)
		t.Logf("round %d: down %v; restart -> changes in the kernel %v, -> reachable %v; %s: %s",
			round, restarted.Sub(killed).Round(time.Millisecond), kernel.Round(time.Millisecond), reach.Round(time.Millisecond), tcp.name, tcp.stats())
		if reach > killConvergence || kernel > killConvergence {
			t.Errorf("round %d: converged %v after the restart (kernel %v), want within %v", round, reach, kernel, killConvergence)
		}
		prev = added
	}

	for _, f := range flows {
		st := f.stop()
		t.Logf("%s: %s", f.name, st)
		if st.Failures > 0 {
			t.Errorf("%s: %d of %d requests failed: %v", f.name, st.Failures, st.Requests, st.Errors)
		}
	}
	if st := udp.stats(); len(st.Backends) != 1 {
		t.Errorf("the UDP flow moved between backends: %v", st.Backends)
	}
	if st := aff.stats(); len(st.Backends) != 1 {
		t.Errorf("the affinity client was not kept on one endpoint: %v", st.Backends)
	}
	log := logFrom(l, "node-1", logStart)
	if n := strings.Count(log, "Sync failed"); n > 0 {
		t.Errorf("%d failed syncs in node-1's log", n)
	}
	t.Logf("FIGURES scenario 1 (%d × kill -9): restart -> kernel %s; restart -> reachable %s; down %s; TCP %s; UDP %s; affinity %s",
		killRounds, durStats(kernelTimes), durStats(reachTimes), durStats(downTimes), tcp.stats(), udp.stats(), aff.stats())
}

// mustService creates svc, failing the test on error.
func mustService(t *testing.T, l *lab.Lab, svc *corev1.Service) *corev1.Service {
	t.Helper()
	out, err := l.CreateService(ctxFor(t), svc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitReadyAddrs waits until the slices of Service default/<svc> list
// exactly want (IPv4 addresses) as ready.
func waitReadyAddrs(ctx context.Context, l *lab.Lab, svc string, want []string) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := readyAddrs(ctx, l, svc)
		if err == nil && slices.Equal(got, want) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ready endpoints of %s: %v (%v), want %v", svc, got, err, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// readyAddrs lists the ready IPv4 endpoint addresses of a Service's
// slices, sorted.
func readyAddrs(ctx context.Context, l *lab.Lab, svc string) ([]string, error) {
	list, err := l.Client().DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range list.Items {
		if s.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && *ep.Conditions.Ready && len(ep.Addresses) > 0 {
				out = append(out, ep.Addresses[0])
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// durStats summarises durations: min / median / max.
func durStats(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return fmt.Sprintf("min %v / median %v / max %v (n=%d)", r(s[0]), r(s[len(s)/2]), r(s[len(s)-1]), len(s))
}
