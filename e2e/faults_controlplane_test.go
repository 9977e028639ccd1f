package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sptr "k8s.io/utils/ptr"

	"github.com/nftproxy/nftproxy/e2e/lab"
)

// Fault suite, scenario 2 (issue 10): the control plane fails under
// nftproxy. Three kube-apiserver restarts, one etcd restart, and one
// partition of the client's node from the apiserver lasting longer than
// the watch timeout (client-go declares a silent connection dead after
// its HTTP/2 health check, 30 s + 15 s), with an apiserver restart inside
// it so that the proxy's watch position is gone when it returns. Services
// are created and deleted all along (whenever the apiserver accepts
// writes). Throughout: traffic to an unchanged Service (a TCP client and
// a persistent UDP flow) never fails, its rules never leave node-1's
// kernel, and /healthz and /livez answer 200 as upstream's do (no change
// waits unprogrammed). After each return, changes made as soon as the
// apiserver takes writes again (and, after the partition, those made
// during it) are in the kernel within 5 s of being accepted; how long the
// apiserver took to accept writes is reported.

const (
	cpConvergence = 5 * time.Second
	// watchTimeout is how long client-go keeps a silent watch connection:
	// HTTP/2 read-idle 30 s plus ping timeout 15 s.
	watchTimeout = 45 * time.Second
	longOutage   = watchTimeout + 20*time.Second
)

func TestFaultControlPlane(t *testing.T) {
	l := startLab(t, lab.Options{Mode: lab.Routed, Nodes: 2, Prefix: "nftfc-"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	if _, err := l.CreateDeployment(ctx, "client", 1, "node-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateDeployment(ctx, "web", 2, "node-2"); err != nil {
		t.Fatal(err)
	}
	stable := mustService(t, l, lab.ServiceFor("stable", "web", false))
	if err := l.WaitForEndpoints(ctx, "stable", 2); err != nil {
		t.Fatal(err)
	}
	s := &clusterIPSuite{l: l}
	s.firstAnswer(t, "client-0", vip(stable, false, lab.SvcPort), lab.TCP, 10*time.Second)
	s.firstAnswer(t, "client-0", vip(stable, false, lab.SvcPort), lab.UDP, 10*time.Second)

	tcp := tcpFlow(l, "TCP client", "client-0", vip(stable, false, lab.SvcPort), 20*time.Millisecond, 2*time.Second)
	udp := udpFlow(t, l, "UDP flow", "client-0", vip(stable, false, lab.SvcPort), 50*time.Millisecond, 2*time.Second)
	health := watchHealth(ctx, l, "node-1")
	rules := watchRules(l, "node-1", stable.Spec.ClusterIP)
	churn := churnServices(ctx, l)
	logStart := logSize(l, "node-1")
	t.Cleanup(func() {
		if t.Failed() { // how node-1's informers lived through it
			t.Logf("node-1's nftproxy on the API connection:\n%s", grepLines(logFrom(l, "node-1", logStart),
				"apiserver", "reflector", "watch", "Caches populated", "Synced rules"))
		}
	})

	var figures []string
	var webIPs []string
	for _, p := range l.PodsOf("web") {
		webIPs = append(webIPs, l.Pod(p).IPv4.String())
	}
	mark := 0
	var prevMark string
	markIPs := map[string]string{}
	// converge creates a Service and deletes the previous one as soon as
	// the apiserver takes writes, and returns how long that took and then
	// how long until node-1's kernel has both changes and the new Service
	// answers; extra adds conditions (changes made earlier).
	converge := func(what string, extra func(kernel map[string]bool) string) string {
		t.Helper()
		back := time.Now()
		mark++
		name := fmt.Sprintf("mark-%d", mark)
		// Selector-less, with a slice of our own: the kube-controller-
		// manager (whose informers back off as client-go's do) is not
		// what this measures.
		var created *corev1.Service
		within(t, time.Minute, what+": create "+name, func() (bool, string) {
			var err error
			created, err = createOrGet(ctx, l, manualService("default", name))
			return err == nil, fmt.Sprint(err)
		})
		slice := handSlice("default", name+"-a", name, discoveryv1.AddressTypeIPv4, k8sptr.To("tcp"), webIPs...)
		within(t, time.Minute, what+": create the slice of "+name, func() (bool, string) {
			_, err := l.Client().DiscoveryV1().EndpointSlices("default").Create(ctx, slice, metav1.CreateOptions{})
			return err == nil || apierrors.IsAlreadyExists(err), fmt.Sprint(err)
		})
		gone := prevMark
		if gone != "" {
			within(t, time.Minute, what+": delete "+gone, func() (bool, string) {
				err := l.DeleteService(ctx, gone)
				return err == nil || apierrors.IsNotFound(err), fmt.Sprint(err)
			})
		}
		prevMark = name
		var goneIP string
		if gone != "" {
			goneIP = markIPs[gone]
		}
		markIPs[name] = created.Spec.ClusterIP
		written := time.Now()
		within(t, 2*time.Minute, what+": changes in node-1's kernel", func() (bool, string) {
			k, err := kernelClusterIPs(l, "node-1")
			if err != nil {
				return false, err.Error()
			}
			if !k[created.Spec.ClusterIP] {
				return false, name + " not programmed"
			}
			d, err := kernelView(l, "node-1")
			if err != nil {
				return false, err.Error()
			}
			if got := endpointAddrs(frontend(d, created.Spec.ClusterIP, lab.SvcPort, "TCP")); len(got) != len(webIPs) {
				return false, fmt.Sprintf("%s has endpoints %v", name, got)
			}
			if goneIP != "" && k[goneIP] {
				return false, gone + " still programmed"
			}
			if extra != nil {
				if msg := extra(k); msg != "" {
					return false, msg
				}
			}
			_, err = l.DialWithin("client-0", vip(created, false, lab.SvcPort), lab.TCP, 300*time.Millisecond)
			return err == nil, fmt.Sprint(err)
		})
		took := time.Since(written)
		if took > cpConvergence {
			t.Errorf("%s: changes programmed %v after the apiserver took them, want within %v", what, took.Round(time.Millisecond), cpConvergence)
		}
		return fmt.Sprintf("writes accepted %v after its return, programmed %v later (node-1's informers after the return: %s)",
			written.Sub(back).Round(time.Millisecond), took.Round(time.Millisecond), informerSteps(logFrom(l, "node-1", logStart), back))
	}

	for i := 1; i <= 3; i++ {
		down, err := l.RestartAPIServer(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		took := converge(fmt.Sprintf("apiserver restart %d", i), nil)
		figures = append(figures, fmt.Sprintf("apiserver restart %d: down %v, %s", i, down.Round(time.Millisecond), took))
		t.Log(figures[len(figures)-1])
	}

	down, err := l.RestartEtcd(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	took := converge("etcd restart", nil)
	figures = append(figures, fmt.Sprintf("etcd restart: down %v, %s", down.Round(time.Millisecond), took))
	t.Log(figures[len(figures)-1])

	// The long outage: node-1 cut off while a Service it programs is
	// deleted, another created, and the apiserver restarted (its new
	// watch cache no longer holds the proxy's resource version).
	doomed := mustService(t, l, lab.ServiceFor("doomed", "web", false))
	within(t, time.Minute, "doomed programmed before the partition", func() (bool, string) {
		k, err := kernelClusterIPs(l, "node-1")
		return err == nil && k[doomed.Spec.ClusterIP], fmt.Sprint(err)
	})
	if err := l.PartitionFromAPIServer("node-1"); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	if err := l.DeleteService(ctx, "doomed"); err != nil {
		t.Fatal(err)
	}
	born := mustService(t, l, lab.ServiceFor("born", "web", false))
	if _, err := l.RestartAPIServer(ctx, nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(cut.Add(longOutage)))
	if err := l.HealPartition("node-1"); err != nil {
		t.Fatal(err)
	}
	outage := time.Since(cut)
	took = converge("partition", func(k map[string]bool) string {
		if k[doomed.Spec.ClusterIP] {
			return "doomed (deleted during the partition) still programmed"
		}
		if !k[born.Spec.ClusterIP] {
			return "born (created during the partition) not programmed"
		}
		return ""
	})
	figures = append(figures, fmt.Sprintf("partition from the apiserver: %v (with an apiserver restart inside), %s (the partition's end is the return)", outage.Round(time.Second), took))
	t.Log(figures[len(figures)-1])

	// Every Service of the API, and nothing else, is in the kernel.
	churn.lp.stop()
	within(t, cpConvergence, "node-1's kernel holds exactly the API's Services", func() (bool, string) {
		return sameServices(ctx, l, "node-1")
	})

	for _, f := range []*flow{tcp, udp} {
		st := f.stop()
		if st.Failures > 0 {
			t.Errorf("%s: %d of %d requests failed: %v", f.name, st.Failures, st.Requests, st.Errors)
		}
	}
	if st := udp.stats(); len(st.Backends) != 1 {
		t.Errorf("the UDP flow moved between backends: %v", st.Backends)
	}
	health.lp.stop()
	hs := health
	for path, codes := range hs.codes {
		for code, n := range codes {
			if code != 200 {
				t.Errorf("%s answered %d %d times (want 200 throughout: no change waited unprogrammed)", path, code, n)
			}
		}
	}
	if hs.errors > 0 {
		t.Errorf("health server did not answer %d times: %v", hs.errors, hs.firstErr)
	}
	rules.lp.stop()
	rs := rules
	if rs.missing > 0 {
		t.Errorf("stable's rules were missing from node-1's kernel in %d of %d reads: %s", rs.missing, rs.reads, rs.first)
	}
	if n := strings.Count(logFrom(l, "node-1", logStart), "Sync failed"); n > 0 {
		t.Errorf("%d failed syncs in node-1's log", n)
	}
	t.Logf("FIGURES scenario 2: %s; %d Services created and deleted meanwhile (%d writes refused while the apiserver was away); TCP %s; UDP %s; health %v; stable's rules present in %d/%d kernel reads",
		strings.Join(figures, "; "), churn.writes, churn.refused, tcp.stats(), udp.stats(), hs.codes, rs.reads-rs.missing, rs.reads)
}

// informerSteps tells from nftproxy's log when, counted from back, its
// informers were last denied access, last reached the apiserver again
// and last had their caches populated.
func informerSteps(log string, back time.Time) string {
	since, _ := time.Parse("15:04:05.000000", back.Format("15:04:05.000000"))
	last := func(what string) string {
		var at time.Time
		for _, ln := range strings.Split(log, "\n") {
			if !strings.Contains(ln, what) || len(ln) < 21 {
				continue
			}
			if t, err := time.Parse("15:04:05.000000", ln[6:21]); err == nil && t.After(since) {
				at = t
			}
		}
		if at.IsZero() {
			return "-"
		}
		return "+" + at.Sub(since).Round(10*time.Millisecond).String()
	}
	return fmt.Sprintf("denied %s, reached %s, caches populated %s", last("denies access"), last("Reached the apiserver again"), last("Caches populated"))
}

// createOrGet creates svc, or returns it if an earlier attempt whose
// answer was lost (the apiserver going away) created it.
func createOrGet(ctx context.Context, l *lab.Lab, svc *corev1.Service) (*corev1.Service, error) {
	out, err := l.CreateService(ctx, svc)
	if apierrors.IsAlreadyExists(err) {
		return l.Client().CoreV1().Services("default").Get(ctx, svc.Name, metav1.GetOptions{})
	}
	return out, err
}

// kernelClusterIPs returns the IPv4 addresses node's kernel dispatches
// (any Service port, with or without endpoints).
func kernelClusterIPs(l *lab.Lab, node string) (map[string]bool, error) {
	d, err := kernelView(l, node)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, sp := range d.Services {
		for _, fe := range sp.Frontends {
			if fe.Address != "" {
				out[fe.Address] = true
			}
		}
	}
	return out, nil
}

// sameServices compares the ClusterIPs in node's kernel with the API's.
func sameServices(ctx context.Context, l *lab.Lab, node string) (bool, string) {
	list, err := l.Client().CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return false, err.Error()
	}
	k, err := kernelClusterIPs(l, node)
	if err != nil {
		return false, err.Error()
	}
	want := map[string]bool{}
	for _, s := range list.Items {
		if s.Spec.ClusterIP != "" && s.Spec.ClusterIP != corev1.ClusterIPNone {
			want[s.Spec.ClusterIP] = true
		}
	}
	var diff []string
	for ip := range want {
		if !k[ip] {
			diff = append(diff, "missing "+ip)
		}
	}
	for ip := range k {
		if !want[ip] {
			diff = append(diff, "extra "+ip)
		}
	}
	return len(diff) == 0, strings.Join(diff, ", ")
}

// healthWatch polls a node's /healthz and /livez every 200 ms.
type healthWatch struct {
	mu       sync.Mutex
	codes    map[string]map[int]int
	errors   int
	firstErr error
	lp       *loop
}

func watchHealth(ctx context.Context, l *lab.Lab, node string) *healthWatch {
	h := &healthWatch{codes: map[string]map[int]int{"/healthz": {}, "/livez": {}}}
	h.lp = every(200*time.Millisecond, func() {
		for _, path := range []string{"/healthz", "/livez"} {
			code, _, err := l.Get(ctx, node, "http://127.0.0.1:10256"+path)
			h.mu.Lock()
			if err != nil {
				h.errors++
				if h.firstErr == nil {
					h.firstErr = err
				}
			} else {
				h.codes[path][code]++
			}
			h.mu.Unlock()
		}
	})
	return h
}

// ruleWatch reads a node's kernel every 200 ms and counts the reads in
// which a ClusterIP is not dispatched to endpoints.
type ruleWatch struct {
	reads, missing int
	first          string
	lp             *loop
}

func watchRules(l *lab.Lab, node, clusterIP string) *ruleWatch {
	r := &ruleWatch{}
	r.lp = every(200*time.Millisecond, func() {
		d, err := kernelView(l, node)
		if err != nil {
			return
		}
		r.reads++
		if fe := frontend(d, clusterIP, lab.SvcPort, "TCP"); fe == nil || len(fe.Endpoints) == 0 {
			r.missing++
			if r.first == "" {
				r.first = "first at " + time.Now().Format("15:04:05.000")
			}
		}
	})
	return r
}

// serviceChurn creates a Service every 300 ms and deletes the one made
// two steps before, whenever the apiserver accepts writes.
type serviceChurn struct {
	writes, refused int
	lp              *loop
}

func churnServices(ctx context.Context, l *lab.Lab) *serviceChurn {
	c := &serviceChurn{}
	var live []string
	n := 0
	c.lp = every(300*time.Millisecond, func() {
		name := fmt.Sprintf("churn-%d", n)
		if _, err := createOrGet(ctx, l, lab.ServiceFor(name, "web", false)); err == nil {
			c.writes++
			live = append(live, name)
			n++
		} else {
			c.refused++
		}
		if len(live) > 2 {
			if err := l.DeleteService(ctx, live[0]); err == nil || apierrors.IsNotFound(err) {
				c.writes++
				live = live[1:]
			} else {
				c.refused++
			}
		}
	})
	return c
}
