package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sptr "k8s.io/utils/ptr"

	"github.com/nftproxy/nftproxy/e2e/lab"
)

// Fault suite, scenario 5 (issue 10): the hostile and malformed input
// catalogue (faults_hostile_cases_test.go) is fed to nftproxy while a TCP
// client talks to an unrelated Service. node-1's nftproxy reads the API
// through the lab's API rewriter, which changes the objects marked with
// patchAnnotation into what the apiserver would refuse to store; the other
// nodes read the API directly. Once a Service and a slice created after
// everything else are programmed on node-1 (so every earlier object has
// been processed), each entry must have its log line on node-1 and its
// Warning Event in the API (malformed input), or be handled as designed
// (valid input), and node-1's kernel must hold what the valid parts ask
// for. No sync may fail on any node and no request of the client may
// fail. Then node-3's Node loses its addresses, keeps one family, and is
// deleted while its nftproxy runs: ClusterIP traffic from node-3 goes on.

func TestFaultHostileInput(t *testing.T) {
	l := startLab(t, lab.Options{Mode: lab.Routed, Nodes: 3, Prefix: "nftfh-"})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	deploy(t, ctx, l, pods{"client", 1, []string{"node-1"}}, pods{"client3", 1, []string{"node-3"}},
		pods{"web", 2, []string{"node-2", "node-3"}}, pods{"evil", 1, []string{"node-2"}})
	rw, err := l.StartAPIRewriter(6444, applyPatchAnnotation)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rw.Close() })
	if err := l.StopProxy("node-1"); err != nil {
		t.Fatal(err)
	}
	if err := l.StartProxyWith(ctx, "node-1", 20*time.Second, "--kubeconfig="+rw.Kubeconfig); err != nil {
		t.Fatal(err)
	}

	r := &hostileRun{l: l, svcs: map[string]*corev1.Service{}}
	good := r.create(t, ctx, lab.ServiceFor("good", "web", false))
	r.create(t, ctx, lab.ServiceFor("victim", "web", false))
	np := lab.ServiceFor("np", "web", false)
	np.Spec.Type = corev1.ServiceTypeNodePort
	r.nodePort = nodePort(t, r.create(t, ctx, np), "tcp")
	if err := l.WaitForEndpoints(ctx, "good", 2); err != nil {
		t.Fatal(err)
	}
	s := &clusterIPSuite{l: l}
	s.firstAnswer(t, "client-0", vip(good, false, lab.SvcPort), lab.TCP, 10*time.Second)
	tcp := tcpFlow(l, "TCP client", "client-0", vip(good, false, lab.SvcPort), 20*time.Millisecond, 2*time.Second)
	defer tcp.stop()
	logStart := map[string]int64{}
	for _, n := range l.Nodes() {
		logStart[n.Name] = logSize(l, n.Name)
	}

	cases := hostileCatalogue(r)
	if _, err := l.Client().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: longNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if c.svc != nil {
			r.create(t, ctx, c.svc)
		}
	}
	for _, c := range cases {
		for _, sl := range c.slices {
			if _, err := l.Client().DiscoveryV1().EndpointSlices(sl.Namespace).Create(ctx, sl, metav1.CreateOptions{}); err != nil {
				t.Fatalf("%s: slice %s: %v", c.entry, sl.Name, err)
			}
		}
	}
	// Created last: once node-1 programs it, every object above has been
	// through its informers (each delivers in resourceVersion order).
	r.create(t, ctx, manualService("default", "zz-marker"))
	marker := handSlice("default", "zz-marker-a", "zz-marker", "IPv4", k8sptr.To("tcp"), l.Pod("web-0").IPv4.String())
	if _, err := l.Client().DiscoveryV1().EndpointSlices("default").Create(ctx, marker, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	processed := within(t, 30*time.Second, "node-1 programs the marker created after the catalogue", func() (bool, string) {
		d, err := kernelView(l, "node-1")
		if err != nil {
			return false, err.Error()
		}
		msg := wantEndpoints("default", "zz-marker", "web-0")(r, d)
		return msg == "", msg
	})
	t.Logf("catalogue of %d entries processed by node-1 within %v", len(cases), processed.Round(time.Millisecond))

	// The kernel: what the valid parts ask for, nothing of the rest.
	d, err := kernelView(l, "node-1")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if c.check != nil {
			if msg := c.check(r, d); msg != "" {
				t.Errorf("%s: %s", c.entry, msg)
			}
		}
	}
	r.ghostCreated = true
	r.create(t, ctx, manualService("default", "ghost"))
	within(t, 10*time.Second, "the slice created before its Service is used once the Service exists", func() (bool, string) {
		d, err := kernelView(l, "node-1")
		if err != nil {
			return false, err.Error()
		}
		msg := wantEndpoints("default", "ghost", "web-0")(r, d)
		return msg == "", msg
	})

	// Log lines and Warning Events of the malformed entries.
	var missing []string
	within(t, 30*time.Second, "every malformed entry logged and reported as an Event", func() (bool, string) {
		missing = missing[:0]
		log := logFrom(l, "node-1", logStart["node-1"])
		for _, c := range cases {
			if c.logs != "" && !strings.Contains(log, c.logs) {
				missing = append(missing, fmt.Sprintf("%s: no log line with %s", c.entry, c.logs))
			}
			if c.reason == "" {
				continue
			}
			ns := "default"
			if c.svc != nil {
				ns = c.svc.Namespace
			}
			if !logged(log, ns, c.eventObj, c.reason) {
				missing = append(missing, fmt.Sprintf("%s: no log line %s for %s/%s", c.entry, c.reason, ns, c.eventObj))
			}
			if ok, err := r.hasEvent(ctx, ns, c.eventKind, c.eventObj, c.reason); !ok {
				missing = append(missing, fmt.Sprintf("%s: no Warning Event %s on %s %s/%s (%v)", c.entry, c.reason, c.eventKind, ns, c.eventObj, err))
			}
		}
		return len(missing) == 0, strings.Join(missing, "\n")
	})

	// Every other Service keeps working, and nothing failed anywhere.
	if got := r.onlyWeb(good.Spec.ClusterIP); got != "" {
		t.Errorf("good: %s", got)
	}
	for _, n := range l.Nodes() {
		if failed := strings.Count(logFrom(l, n.Name, logStart[n.Name]), "Sync failed"); failed > 0 {
			t.Errorf("%d failed syncs in %s's log", failed, n.Name)
		}
		if v, err := metric(ctx, l, n.Name, "kubeproxy_sync_proxy_rules_nftables_sync_failures_total"); err != nil || v != 0 {
			t.Errorf("%s: failed transactions %v (%v), want 0", n.Name, v, err)
		}
	}

	nodeFigures := r.nodeChanges(t, ctx, good)
	st := tcp.stop()
	if st.Failures > 0 {
		t.Errorf("TCP client to good: %d of %d requests failed: %v", st.Failures, st.Requests, st.Errors)
	}
	malformed := 0
	for _, c := range cases {
		outcome := "valid: handled as designed, no Warning"
		switch {
		case c.reason != "":
			malformed++
			outcome = fmt.Sprintf("log line and Warning Event %s on %s %s", c.reason, c.eventKind, c.eventObj)
		case c.logs != "":
			outcome = "ignored with a log line, no Event"
		}
		t.Logf("  %-70s %s", c.entry, outcome)
	}
	t.Logf("FIGURES scenario 5: %d catalogue entries (%d malformed, each logged and with a Warning Event; %d valid by design), processed within %v; %s; TCP client to an unrelated Service: %s",
		len(cases), malformed, len(cases)-malformed, processed.Round(time.Millisecond), nodeFigures, st)
}

// hostileRun is the state TestFaultHostileInput shares with its cases.
type hostileRun struct {
	l            *lab.Lab
	svcs         map[string]*corev1.Service // "ns/name" -> as created
	nodePort     uint16                     // of Service np, port tcp
	ghostCreated bool
}

// create creates svc (and its load-balancer status, if set) and records it.
func (r *hostileRun) create(t *testing.T, ctx context.Context, svc *corev1.Service) *corev1.Service {
	t.Helper()
	status := svc.Status
	out, err := r.l.CreateService(ctx, svc)
	if err != nil {
		t.Fatal(err)
	}
	if len(status.LoadBalancer.Ingress) > 0 {
		out.Status = status
		if out, err = r.l.Client().CoreV1().Services(out.Namespace).UpdateStatus(ctx, out, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("status of %s: %v", svc.Name, err)
		}
	}
	r.svcs[out.Namespace+"/"+out.Name] = out
	return out
}

func (r *hostileRun) clusterIP(ns, name string) string {
	if s := r.svcs[ns+"/"+name]; s != nil {
		return s.Spec.ClusterIP
	}
	return "(no Service " + ns + "/" + name + ")"
}

// onlyWeb dials addr:80 from client-0 twenty times: every answer must
// come from a web pod.
func (r *hostileRun) onlyWeb(addr string) string { return r.onlyWebAt(addr, lab.SvcPort) }

func (r *hostileRun) onlyWebAt(addr string, port uint16) string {
	dst := netip.AddrPortFrom(netip.MustParseAddr(addr), port)
	for range 20 {
		a, err := r.l.Dial("client-0", dst, lab.TCP)
		if err != nil {
			return fmt.Sprintf("%v: %v", dst, err)
		}
		if !strings.HasPrefix(a.Pod, "web-") {
			return fmt.Sprintf("%v answered by %s, want only web pods", dst, a.Pod)
		}
	}
	return ""
}

// hasEvent reports whether a Warning Event with reason is recorded on the
// object.
func (r *hostileRun) hasEvent(ctx context.Context, ns, kind, name, reason string) (bool, error) {
	list, err := r.l.Client().CoreV1().Events(ns).List(ctx, metav1.ListOptions{
		FieldSelector: "involvedObject.name=" + name + ",involvedObject.kind=" + kind + ",reason=" + reason})
	if err != nil {
		return false, err
	}
	for _, e := range list.Items {
		if e.Type == corev1.EventTypeWarning {
			return true, nil
		}
	}
	return false, fmt.Errorf("%d events", len(list.Items))
}

// logged reports whether the log has nftproxy's line for a rejection.
func logged(log, ns, name, reason string) bool {
	re := regexp.MustCompile(`(?m)^.*object="` + regexp.QuoteMeta(ns+"/"+name) + `".*reason="` + regexp.QuoteMeta(reason) + `".*$`)
	return re.MatchString(log)
}

// applyPatchAnnotation is the API rewriter's function: an object carrying
// patchAnnotation gets that JSON merge patch applied ("CLUSTERIP" in it
// stands for the object's own spec.clusterIP).
func applyPatchAnnotation(obj map[string]any) {
	meta, _ := obj["metadata"].(map[string]any)
	ann, _ := meta["annotations"].(map[string]any)
	p, ok := ann[patchAnnotation].(string)
	if !ok {
		return
	}
	if spec, ok := obj["spec"].(map[string]any); ok {
		if ip, ok := spec["clusterIP"].(string); ok {
			p = strings.ReplaceAll(p, "CLUSTERIP", ip)
		}
	}
	var patch map[string]any
	if err := json.Unmarshal([]byte(p), &patch); err != nil {
		panic(fmt.Sprintf("bad patch %q: %v", p, err))
	}
	mergePatch(obj, patch)
}

// mergePatch applies an RFC 7386 merge patch to dst.
func mergePatch(dst, patch map[string]any) {
	for k, v := range patch {
		if v == nil {
			delete(dst, k)
			continue
		}
		if pm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				mergePatch(dm, pm)
				continue
			}
		}
		dst[k] = v
	}
}

// nodeChanges takes node-3's Node through the catalogue's Node entries
// (no addresses, one family, deleted) while its nftproxy runs: each must
// be logged, and a pod on node-3 must keep reaching good's ClusterIP.
func (r *hostileRun) nodeChanges(t *testing.T, ctx context.Context, good *corev1.Service) string {
	t.Helper()
	nodes := r.l.Client().CoreV1().Nodes()
	orig, err := nodes.Get(ctx, "node-3", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var figures []string
	step := func(what, logLine string, change func() error) {
		t.Helper()
		from := logSize(r.l, "node-3")
		start := time.Now()
		if err := change(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		var line string
		within(t, 10*time.Second, what+": logged by node-3's nftproxy", func() (bool, string) {
			for _, ln := range strings.Split(logFrom(r.l, "node-3", from), "\n") {
				if strings.Contains(ln, logLine) {
					line = ln
					return true, ""
				}
			}
			return false, "no line with " + logLine
		})
		if msg := r.reachFrom("client3-0", good); msg != "" {
			t.Errorf("%s: %s", what, msg)
		}
		figures = append(figures, fmt.Sprintf("%s: logged after %v", what, time.Since(start).Round(time.Millisecond)))
		t.Logf("%s: %s", what, line[strings.Index(line, "]")+1:])
	}
	setAddrs := func(addrs ...corev1.NodeAddress) func() error {
		return func() error {
			n, err := nodes.Get(ctx, "node-3", metav1.GetOptions{})
			if err != nil {
				return err
			}
			n.Status.Addresses = addrs
			_, err = nodes.UpdateStatus(ctx, n, metav1.UpdateOptions{})
			return err
		}
	}
	step("Node without addresses", `"Node changed" node="node-3"`, setAddrs())
	v4 := corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: r.l.Node("node-3").IPv4.String()}
	step("Node with only an IPv4 address", `"Node changed" node="node-3"`, setAddrs(v4))
	step("Node deleted while nftproxy runs", `"Node object not found`, func() error {
		return nodes.Delete(ctx, "node-3", metav1.DeleteOptions{})
	})
	step("Node registered again", `"Node changed" node="node-3"`, func() error {
		return r.l.RegisterNode(ctx, "node-3")
	})
	if got, err := nodes.Get(ctx, "node-3", metav1.GetOptions{}); err != nil || len(got.Status.Addresses) != len(orig.Status.Addresses) {
		t.Errorf("node-3 not restored: %v", err)
	}
	return strings.Join(figures, "; ")
}

// reachFrom checks that svc's ClusterIP answers from a pod within 5 s.
func (r *hostileRun) reachFrom(pod string, svc *corev1.Service) string {
	err := retryFor(5*time.Second, func() error {
		_, err := r.l.DialWithin(pod, vip(svc, false, lab.SvcPort), lab.TCP, 500*time.Millisecond)
		return err
	})
	if err != nil {
		return fmt.Sprintf("%s cannot reach %s: %v", pod, svc.Name, err)
	}
	return ""
}
