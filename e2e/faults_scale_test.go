package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	k8sptr "k8s.io/utils/ptr"

	"github.com/nftproxy/nftproxy/e2e/lab"
)

// Fault suite, scenario 6 (issue 10): scale. Services × 10 endpoints
// (hand-written EndpointSlices, no pods, written straight to etcd: see
// lab.EtcdWriter) are loaded while node-1 has no nftproxy and no rules; then nftproxy starts cold and programs them, and 100 endpoint
// changes per second follow. No sync may fail (no failed batch, no
// message-size error); the figures are the load time, the cold start
// (informer sync, first sync, start to programmed), the syncs under
// churn, the network programming latency and the peak RSS of nftproxy.
// One Service in every sampleEvery has the lab's real pods as endpoints
// and is dialled. node-2's nftproxy is stopped: the machine has 2 cores.
//
// By default 2,000 Services and 10 s of churn (part of make test);
// NFTPROXY_FAULT_SCALE=1 runs the 50,000 Services and a minute.

const (
	scaleNS          = "scale"
	scaleEndpoints   = 10
	scaleChangesPerS = 100
)

func TestFaultScale(t *testing.T) {
	services, churnFor, sampleEvery, settleLimit := 2000, 10*time.Second, 100, 30*time.Second
	if os.Getenv("NFTPROXY_FAULT_SCALE") == "1" {
		// Generous: the periodic check no longer holds changes back (they
		// settled 1.2 s after the churn on 2026-12-01), but the machine is
		// shared and a settle time is a figure here, not the property.
		services, churnFor, sampleEvery, settleLimit = 50000, time.Minute, 1000, 10*time.Minute
	}
	// The sync pacing users get (by cost), not the lab's fixed 250 ms:
	// the figures are the users' ones.
	l := startLab(t, lab.Options{Mode: lab.Routed, Nodes: 2, Prefix: "nftfs-", DefaultPacing: true})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Minute)
	defer cancel()
	deploy(t, ctx, l, pods{"client", 1, []string{"node-1"}}, pods{"web", scaleEndpoints, []string{"node-1"}})
	var podIPs []string
	for _, p := range l.PodsOf("web") {
		podIPs = append(podIPs, l.Pod(p).IPv4.String())
	}
	for _, n := range []string{"node-1", "node-2"} {
		if err := l.StopProxy(n); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := nodeStdout(l, "node-1", l.ProxyBinary(), "--cleanup"); err != nil {
		t.Fatalf("nftproxy --cleanup on node-1: %v\n%s", err, out)
	}

	// Load the API.
	client, err := l.ClientWithQPS(5000, 5000)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: scaleNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cp, err := l.NS("cp")
	if err != nil {
		t.Fatal(err)
	}
	sc := &scaleRun{client: client, etcd: lab.NewEtcdWriter(cp), podIPs: podIPs, sampleEvery: sampleEvery, n: services, ips: make([]string, services+1)}
	loadStart := time.Now()
	if err := sc.load(ctx, services); err != nil {
		t.Fatal(err)
	}
	written := time.Since(loadStart)
	listed := within(t, 10*time.Minute, "the apiserver lists every Service and slice written to etcd", func() (bool, string) {
		return sc.listed(ctx, services)
	})
	loadTime := time.Since(loadStart)
	t.Logf("wrote %d Services, IPAddresses and EndpointSlices (%d endpoints) to etcd in %v, listed by the apiserver %v later",
		services, services*scaleEndpoints, written.Round(time.Second), listed.Round(time.Second))

	// Cold start.
	logStart := logSize(l, "node-1")
	started := time.Now()
	if err := l.StartProxyWith(ctx, "node-1", 30*time.Minute); err != nil {
		t.Fatal(err)
	}
	var first syncLine
	within(t, 30*time.Minute, "node-1's first full sync", func() (bool, string) {
		for _, s := range syncLines(logFrom(l, "node-1", logStart)) {
			if s.full && s.ports >= services {
				first = s
				return true, ""
			}
		}
		return false, "not yet"
	})
	coldStart := time.Since(started)
	log := logFrom(l, "node-1", logStart)
	informersSynced := klogTime(log, "Informers synced").Sub(klogTime(log, "Starting nftproxy"))
	d, err := kernelView(l, "node-1")
	if err != nil {
		t.Fatal(err)
	}
	programmed := 0
	for _, sp := range d.Services {
		for _, fe := range sp.Frontends {
			if fe.Kind == "clusterIP" && len(fe.Endpoints) == scaleEndpoints {
				programmed++
			}
		}
	}
	if programmed < services {
		t.Errorf("%d of %d Services are programmed with %d endpoints after the first sync", programmed, services, scaleEndpoints)
	}
	sampled := sc.dialSamples(t, l)
	rssCold, _ := peakRSS(l.ProxyPID("node-1"))
	t.Logf("cold start: informers synced %v after start, first full sync took %v (%d service ports, %d objects, %d messages), programmed %v after start; %d sampled Services answered; peak RSS %.0f MiB",
		informersSynced.Round(time.Millisecond), first.duration.Round(time.Millisecond), first.ports, first.objects, first.messages, coldStart.Round(time.Millisecond), sampled, rssCold)

	// Endpoint churn, then a Service written after it: once it answers,
	// every change before it has been programmed (one informer delivers
	// the slices in order, a sync takes every change recorded).
	churnLog := logSize(l, "node-1")
	health := watchHealth(ctx, l, "node-1")
	ch := sc.churn(ctx, churnFor)
	if err := sc.put(ctx, sc.n); err != nil {
		t.Fatal(err)
	}
	marker := netip.AddrPortFrom(netip.MustParseAddr(sc.ips[sc.n]), lab.SvcPort)
	within(t, settleLimit, "a Service written after the churn answers on node-1", func() (bool, string) {
		_, err := l.DialWithin("client-0", marker, lab.TCP, 300*time.Millisecond)
		return err == nil, fmt.Sprint(err)
	})
	settled := time.Since(ch.end)
	health.lp.stop()
	d, err = kernelView(l, "node-1")
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range ch.last {
		if got := endpointAddrs(frontend(d, sc.ips[i], lab.SvcPort, "TCP")); !slices.Equal(got, want) {
			t.Errorf("s-%d: %v in the kernel after the churn, want %v", i, got, want)
		}
	}
	var partial, full []time.Duration
	for _, s := range syncLines(logFrom(l, "node-1", churnLog)) {
		if s.full {
			full = append(full, s.duration)
		} else {
			partial = append(partial, s.duration)
		}
	}
	checks := checkLines(logFrom(l, "node-1", churnLog))
	rss, _ := peakRSS(l.ProxyPID("node-1"))
	latency := histogramQuantiles(ctx, l, "node-1", "kubeproxy_network_programming_duration_seconds", 0.5, 0.99)
	t.Logf("churn: %d endpoint changes in %v (%.0f/s, %d refused by the apiserver); %d syncs: partial %s, full %s; periodic checks %s (%d found a difference, %d left a step unchecked; %d objects re-read under the lock, syncs held at most %v); all programmed %v after the churn ended; network programming latency p50 %s p99 %s (whole run); /healthz and /livez meanwhile %v; peak RSS %.0f MiB",
		ch.done, churnFor, float64(ch.done)/churnFor.Seconds(), ch.failed, len(partial)+len(full), durStats(partial), durStats(full), durStats(checks.took), checks.differed, checks.leftOver, checks.confirmed, checks.longestHold, settled.Round(time.Millisecond), latency[0], latency[1], health.codes, rss)
	if ch.failed > ch.done/100 {
		t.Errorf("the apiserver refused %d of %d changes: the churn did not happen", ch.failed, ch.done+ch.failed)
	}

	// Nothing failed.
	all := logFrom(l, "node-1", logStart)
	for _, bad := range []string{"Sync failed", "message too long", "EMSGSIZE", "ERANGE", "numerical result out of range"} {
		if n := strings.Count(all, bad); n > 0 {
			t.Errorf("%q %d times in node-1's log", bad, n)
		}
	}
	if v, err := metric(ctx, l, "node-1", "kubeproxy_sync_proxy_rules_nftables_sync_failures_total"); err != nil || v != 0 {
		t.Errorf("failed transactions: %v (%v), want 0", v, err)
	}
	t.Logf("FIGURES scenario 6 (%d Services × %d endpoints): API load %v; cold start %v (informers %v, first sync %v, %d objects in %d messages); churn %d changes/s for %v: %d syncs, partial %s, full %s, checks %s (%d unchecked, syncs held at most %v), settled %v after the last change; programming latency p50 %s p99 %s; health %v; peak RSS %.0f MiB; failed syncs 0",
		services, scaleEndpoints, loadTime.Round(time.Second), coldStart.Round(time.Millisecond), informersSynced.Round(time.Millisecond), first.duration.Round(time.Millisecond), first.objects, first.messages,
		scaleChangesPerS, churnFor, len(partial)+len(full), durStats(partial), durStats(full), durStats(checks.took), checks.leftOver, checks.longestHold, settled.Round(time.Millisecond), latency[0], latency[1], health.codes, max(rss, rssCold))
}

// scaleRun holds the loaded Services.
type scaleRun struct {
	client      kubernetes.Interface
	etcd        *lab.EtcdWriter
	podIPs      []string
	sampleEvery int
	n           int      // Services loaded; s-<n> is the marker
	ips         []string // ClusterIP of s-<i>
}

// addrs are the endpoint addresses of s-<i>: the lab's pods for sampled
// Services and the marker, else addresses of 100.64.0.0/10 that exist nowhere (one per
// endpoint, as in a cluster with that many pods).
func (sc *scaleRun) addrs(i int) []string {
	if i%sc.sampleEvery == 0 || i == sc.n {
		return sc.podIPs
	}
	out := make([]string, scaleEndpoints)
	for j := range out {
		n := i*scaleEndpoints + j
		out[j] = netip.AddrFrom4([4]byte{100, 64 + byte(n>>16), byte(n >> 8), byte(n)}).String()
	}
	return out
}

// endpoints of s-<i>, all ready but those in notReady.
func (sc *scaleRun) endpoints(i int, notReady map[int]bool) []discoveryv1.Endpoint {
	var out []discoveryv1.Endpoint
	for j, a := range sc.addrs(i) {
		out = append(out, discoveryv1.Endpoint{Addresses: []string{a},
			Conditions: discoveryv1.EndpointConditions{Ready: k8sptr.To(!notReady[j])}})
	}
	return out
}

// load writes s-0 … s-<n-1>, their IPAddresses and one slice each to
// etcd, 32 at a time (see lab.EtcdWriter: the apiserver's ClusterIP
// allocation would take hours for 50,000 Services).
func (sc *scaleRun) load(ctx context.Context, n int) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := sc.put(ctx, i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// put writes Service s-<i> (ClusterIP 10.96.0.16 + i, as the apiserver
// would have stored it), its IPAddress and its slice.
func (sc *scaleRun) put(ctx context.Context, i int) error {
	name := fmt.Sprintf("s-%d", i)
	ip := netip.AddrFrom4([4]byte{10, 96, byte((i + 16) >> 8), byte(i + 16)})
	sc.ips[i] = ip.String()
	now := metav1.Now()
	uid := func(kind int) types.UID { return types.UID(fmt.Sprintf("%08x-5ca1-4000-8000-%012x", i, kind)) }
	svc := manualService(scaleNS, name)
	svc.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Service"}
	svc.UID, svc.CreationTimestamp = uid(1), now
	svc.Spec.Type = corev1.ServiceTypeClusterIP
	svc.Spec.ClusterIP, svc.Spec.ClusterIPs = ip.String(), []string{ip.String()}
	svc.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
	svc.Spec.IPFamilyPolicy = k8sptr.To(corev1.IPFamilyPolicySingleStack)
	svc.Spec.SessionAffinity = corev1.ServiceAffinityNone
	svc.Spec.InternalTrafficPolicy = k8sptr.To(corev1.ServiceInternalTrafficPolicyCluster)
	ipa := &networkingv1.IPAddress{
		TypeMeta: metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "IPAddress"},
		ObjectMeta: metav1.ObjectMeta{Name: ip.String(), UID: uid(2), CreationTimestamp: now, Labels: map[string]string{
			networkingv1.LabelIPAddressFamily: string(corev1.IPv4Protocol), networkingv1.LabelManagedBy: "ipallocator.k8s.io"}},
		Spec: networkingv1.IPAddressSpec{ParentRef: &networkingv1.ParentReference{Resource: "services", Namespace: scaleNS, Name: name}},
	}
	sl := handSlice(scaleNS, name+"-a", name, discoveryv1.AddressTypeIPv4, k8sptr.To("tcp"))
	sl.TypeMeta = metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"}
	sl.UID, sl.CreationTimestamp = uid(3), now
	sl.Endpoints = sc.endpoints(i, nil)
	for key, obj := range map[string]any{
		"/registry/ipaddresses/" + ip.String():                ipa,
		"/registry/services/specs/" + scaleNS + "/" + name:    svc,
		"/registry/endpointslices/" + scaleNS + "/" + sl.Name: sl,
	} {
		if err := sc.etcd.Put(ctx, key, obj); err != nil {
			return err
		}
	}
	return nil
}

// listed reports whether the apiserver lists n Services and n slices in
// the scale namespace.
func (sc *scaleRun) listed(ctx context.Context, n int) (bool, string) {
	one := metav1.ListOptions{Limit: 1}
	svcs, err := sc.client.CoreV1().Services(scaleNS).List(ctx, one)
	if err != nil {
		return false, err.Error()
	}
	slices, err := sc.client.DiscoveryV1().EndpointSlices(scaleNS).List(ctx, one)
	if err != nil {
		return false, err.Error()
	}
	count := func(items int, remaining *int64) int {
		if remaining != nil {
			return items + int(*remaining)
		}
		return items
	}
	s, e := count(len(svcs.Items), svcs.RemainingItemCount), count(len(slices.Items), slices.RemainingItemCount)
	return s >= n && e >= n, fmt.Sprintf("%d Services, %d slices", s, e)
}

// dialSamples dials every sampled Service once from client-0.
func (sc *scaleRun) dialSamples(t *testing.T, l *lab.Lab) int {
	t.Helper()
	n := 0
	for i := 0; i < sc.n; i += sc.sampleEvery {
		dst := netip.AddrPortFrom(netip.MustParseAddr(sc.ips[i]), lab.SvcPort)
		if a, err := l.Dial("client-0", dst, lab.TCP); err != nil || !strings.HasPrefix(a.Pod, "web-") {
			t.Errorf("sampled Service s-%d (%v): %q, %v", i, dst, a.Pod, err)
			continue
		}
		n++
	}
	return n
}

// churnResult is what churn did; last holds the ready endpoints each
// changed Service was left with.
type churnResult struct {
	done, failed int
	end          time.Time
	last         map[int][]string
}

// churn changes scaleChangesPerS endpoint conditions per second for d:
// each change marks a different, random endpoint of a non-sampled Service
// not ready (the others ready), as a merge patch of its slice.
func (sc *scaleRun) churn(ctx context.Context, d time.Duration) churnResult {
	type change struct{ svc, ep int }
	work := make(chan change, scaleChangesPerS)
	var mu sync.Mutex
	res := churnResult{last: map[int][]string{}}
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for c := range work {
				eps := sc.endpoints(c.svc, map[int]bool{c.ep: true})
				patch, _ := json.Marshal(map[string]any{"endpoints": eps})
				_, err := sc.client.DiscoveryV1().EndpointSlices(scaleNS).Patch(ctx, fmt.Sprintf("s-%d-a", c.svc), types.MergePatchType, patch, metav1.PatchOptions{})
				mu.Lock()
				if err != nil {
					res.failed++
				} else {
					res.done++
					var ready []string
					for j, a := range sc.addrs(c.svc) {
						if j != c.ep {
							ready = append(ready, a)
						}
					}
					slices.Sort(ready)
					res.last[c.svc] = ready
				}
				mu.Unlock()
			}
		})
	}
	tick := time.NewTicker(time.Second / scaleChangesPerS)
	stop := time.After(d)
	used := map[int]bool{}
loop:
	for {
		select {
		case <-stop:
			break loop
		case <-tick.C:
			i := rand.IntN(sc.n)
			for i%sc.sampleEvery == 0 || used[i] {
				i = rand.IntN(sc.n)
			}
			used[i] = true // one change per Service: its last state is known
			work <- change{i, rand.IntN(scaleEndpoints)}
		}
	}
	tick.Stop()
	close(work)
	wg.Wait()
	res.end = time.Now()
	// Keep only a sample of the changed Services for the final check.
	for i := range res.last {
		if len(res.last) <= 20 {
			break
		}
		delete(res.last, i)
	}
	return res
}

// syncLine is one "Synced rules" line of nftproxy's log (-v=2).
type syncLine struct {
	full                     bool
	ports, objects, messages int
	duration                 time.Duration
}

var syncRE = regexp.MustCompile(`"Synced rules" full=(true|false) servicePorts=(\d+) servicesConverted=\d+ objects=(\d+) messages=(\d+) duration="([^"]+)"`)

func syncLines(log string) []syncLine {
	var out []syncLine
	for _, m := range syncRE.FindAllStringSubmatch(log, -1) {
		s := syncLine{full: m[1] == "true"}
		s.ports, _ = strconv.Atoi(m[2])
		s.objects, _ = strconv.Atoi(m[3])
		s.messages, _ = strconv.Atoi(m[4])
		s.duration, _ = time.ParseDuration(m[5])
		out = append(out, s)
	}
	return out
}

var checkRE = regexp.MustCompile(`"Checked the rules in the kernel" result="(same|differs|unchecked)" step="[^"]*" confirmedUnderLock=(\d+) longestLockHold="([^"]+)" duration="([^"]+)"`)

// checkStats are the periodic checks of the kernel (runner.verify, -v=2).
type checkStats struct {
	took               []time.Duration
	differed, leftOver int // found a difference; left a step unchecked
	confirmed          int // objects re-read under the lock, in all checks
	longestHold        time.Duration
}

// checkLines reads the checks' log lines.
func checkLines(log string) checkStats {
	var cs checkStats
	for _, m := range checkRE.FindAllStringSubmatch(log, -1) {
		d, _ := time.ParseDuration(m[4])
		cs.took = append(cs.took, d)
		switch m[1] {
		case "differs":
			cs.differed++
		case "unchecked":
			cs.leftOver++
		}
		n, _ := strconv.Atoi(m[2])
		cs.confirmed += n
		h, _ := time.ParseDuration(m[3])
		cs.longestHold = max(cs.longestHold, h)
	}
	return cs
}

// klogTime is the time of day of the first log line containing what
// (klog's "I1130 15:04:05.000000" header), as an offset from midnight.
func klogTime(log, what string) time.Time {
	for _, ln := range strings.Split(log, "\n") {
		if strings.Contains(ln, what) && len(ln) > 21 {
			t, err := time.Parse("15:04:05.000000", ln[6:21])
			if err == nil {
				return t
			}
		}
	}
	return time.Time{}
}

// histogramQuantiles estimates quantiles of a Prometheus histogram of
// node's /metrics as the upper bound of the bucket holding them.
func histogramQuantiles(ctx context.Context, l *lab.Lab, node, name string, qs ...float64) []string {
	out := make([]string, len(qs))
	for i := range out {
		out[i] = "?"
	}
	_, body, err := l.Get(ctx, node, "http://127.0.0.1:10249/metrics")
	if err != nil {
		return out
	}
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `_bucket\{le="([^"]+)"\} (\S+)$`)
	type bucket struct {
		le    string
		count float64
	}
	var bs []bucket
	for _, m := range re.FindAllStringSubmatch(body, -1) {
		c, _ := strconv.ParseFloat(m[2], 64)
		bs = append(bs, bucket{m[1], c})
	}
	if len(bs) == 0 || bs[len(bs)-1].count == 0 {
		return out
	}
	total := bs[len(bs)-1].count
	for i, q := range qs {
		for _, b := range bs {
			if b.count >= q*total {
				out[i] = "≤ " + b.le + " s"
				break
			}
		}
	}
	return out
}
