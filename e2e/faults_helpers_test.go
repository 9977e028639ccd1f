package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	k8sptr "k8s.io/utils/ptr"

	"github.com/nftproxy/nftproxy/e2e/lab"
	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/dump"
	"github.com/nftproxy/nftproxy/nftrules/nft"
)

// Shared tools of the fault suite (faults_*_test.go): continuous clients
// that count every failed request, a view of a node's kernel rules, and
// readers of nftproxy's log and metrics.

// flowStats is what a continuous client saw.
type flowStats struct {
	Requests, Failures int
	Backends           map[string]int // answering pod -> answers
	Last               string         // the pod that answered last
	Errors             []string       // the first few failures, with their start times
	FailedAt           []time.Time    // when each failed request started
}

func (s flowStats) String() string {
	return fmt.Sprintf("%d requests, %d failed, answered by %v", s.Requests, s.Failures, s.Backends)
}

// loop runs a function over and over in the background until stopped.
type loop struct {
	quit, done chan struct{}
	once       sync.Once
}

// every calls fn, then again period after each call returns, until stop.
func every(period time.Duration, fn func()) *loop {
	lp := &loop{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(lp.done)
		for {
			fn()
			select {
			case <-lp.quit:
				return
			case <-time.After(period):
			}
		}
	}()
	return lp
}

// stop ends the loop and waits for the call in progress; idempotent.
func (lp *loop) stop() {
	lp.once.Do(func() { close(lp.quit) })
	<-lp.done
}

// flow is a client running in the background until stop.
type flow struct {
	name string
	mu   sync.Mutex
	st   flowStats
	lp   *loop
}

func newFlow(name string) *flow {
	return &flow{name: name, st: flowStats{Backends: map[string]int{}}}
}

// record counts a request that started at start.
func (f *flow) record(start time.Time, pod string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st.Requests++
	if err != nil {
		f.st.Failures++
		f.st.FailedAt = append(f.st.FailedAt, start)
		if len(f.st.Errors) < 10 {
			f.st.Errors = append(f.st.Errors, "started "+start.Format("15:04:05.000")+": "+err.Error())
		}
		return
	}
	f.st.Backends[pod]++
	f.st.Last = pod
}

// stats returns a copy of what the flow saw so far.
func (f *flow) stats() flowStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.st
	st.Backends = map[string]int{}
	for k, v := range f.st.Backends {
		st.Backends[k] = v
	}
	st.Errors = append([]string(nil), f.st.Errors...)
	st.FailedAt = append([]time.Time(nil), f.st.FailedAt...)
	return st
}

// stop ends the flow and returns its figures.
func (f *flow) stop() flowStats {
	f.lp.stop()
	return f.stats()
}

// tcpFlow opens a new TCP connection to dst from `from` every period
// (one request each) until stopped; a request fails when it gets no
// answer within timeout.
func tcpFlow(l *lab.Lab, name, from string, dst netip.AddrPort, period, timeout time.Duration) *flow {
	f := newFlow(name)
	f.lp = every(period, func() {
		start := time.Now()
		ans, err := l.DialWithin(from, dst, lab.TCP, timeout)
		f.record(start, ans.Pod, err)
	})
	return f
}

// udpFlow is one persistent UDP flow: a single socket (one source port,
// so one conntrack entry) in `from` sending a request to dst every
// period and waiting up to timeout for each answer.
func udpFlow(t *testing.T, l *lab.Lab, name, from string, dst netip.AddrPort, period, timeout time.Duration) *flow {
	t.Helper()
	ns, err := l.NS(from)
	if err != nil {
		t.Fatal(err)
	}
	var conn net.Conn
	if err := ns.Do(func() error {
		var err error
		conn, err = net.Dial("udp", dst.String())
		return err
	}); err != nil {
		t.Fatalf("UDP socket in %s: %v", from, err)
	}
	t.Cleanup(func() { conn.Close() })
	f := newFlow(name)
	buf := make([]byte, 2048)
	f.lp = every(period, func() {
		start := time.Now()
		pod, err := udpRequest(conn, buf, timeout)
		f.record(start, pod, err)
	})
	return f
}

// udpRequest sends one datagram on conn and reads the answer ("<pod>
// <source>"); a late answer to an earlier request is skipped.
func udpRequest(conn net.Conn, buf []byte, timeout time.Duration) (string, error) {
	if _, err := conn.Write([]byte("who")); err != nil {
		return "", err
	}
	_ = conn.SetReadDeadline(time.Now().Add(timeout))
	n, err := conn.Read(buf)
	if err != nil {
		return "", err
	}
	f := strings.Fields(string(buf[:n]))
	if len(f) == 0 {
		return "", fmt.Errorf("empty UDP answer")
	}
	return f[0], nil
}

// kernelView reads node's nftproxy tables from the kernel (as --dump
// does, without the API). A read racing a commit is retried.
func kernelView(l *lab.Lab, node string) (*dump.Dump, error) {
	ns, err := l.NS(node)
	if err != nil {
		return nil, err
	}
	rec := nftrules.NewReconciler(nft.Options{NetNSFd: ns.FD()})
	defer rec.Close()
	var last error
	for range 5 {
		live, err := rec.ReadLive()
		if err == nil {
			return dump.FromRuleset(live, nil), nil
		}
		last = err
		time.Sleep(10 * time.Millisecond)
	}
	return nil, fmt.Errorf("reading the rules of %s: %w", node, last)
}

// frontend finds the frontend of address:port/proto (proto "TCP", "UDP")
// in a kernel view, or nil.
func frontend(d *dump.Dump, addr string, port uint16, proto string) *dump.Frontend {
	for i := range d.Services {
		sp := &d.Services[i]
		if !strings.EqualFold(sp.Protocol, proto) {
			continue
		}
		for j := range sp.Frontends {
			fe := &sp.Frontends[j]
			if fe.Address == addr && fe.Port == port {
				return fe
			}
		}
	}
	return nil
}

// endpointAddrs lists a frontend's endpoint addresses, sorted.
func endpointAddrs(fe *dump.Frontend) []string {
	if fe == nil {
		return nil
	}
	var out []string
	for _, ep := range fe.Endpoints {
		out = append(out, ep.Address)
	}
	sort.Strings(out)
	return out
}

// logFrom returns node's nftproxy log from byte offset on.
func logFrom(l *lab.Lab, node string, offset int64) string {
	b, err := os.ReadFile(l.ProxyLogPath(node))
	if err != nil || int64(len(b)) < offset {
		return ""
	}
	return string(b[offset:])
}

// grepLines keeps the lines of log that contain any of words.
func grepLines(log string, words ...string) string {
	var out []string
	for _, ln := range strings.Split(log, "\n") {
		for _, w := range words {
			if strings.Contains(ln, w) {
				out = append(out, ln)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// logSize is the current length of node's nftproxy log.
func logSize(l *lab.Lab, node string) int64 {
	st, err := os.Stat(l.ProxyLogPath(node))
	if err != nil {
		return 0
	}
	return st.Size()
}

// metric returns the value of one sample of node's /metrics (name with
// labels exactly as exposed, e.g. `kubeproxy_proxy_healthz_total{code="200"}`).
func metric(ctx context.Context, l *lab.Lab, node, sample string) (float64, error) {
	code, body, err := l.Get(ctx, node, "http://127.0.0.1:10249/metrics")
	if err != nil {
		return 0, err
	}
	if code != 200 {
		return 0, fmt.Errorf("/metrics of %s: %d", node, code)
	}
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`)
	m := re.FindStringSubmatch(body)
	if m == nil {
		return 0, fmt.Errorf("/metrics of %s has no %s", node, sample)
	}
	var v float64
	_, err = fmt.Sscan(m[1], &v)
	return v, err
}

// peakRSS is the peak resident memory (VmHWM) of a process, in MiB.
func peakRSS(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	m := regexp.MustCompile(`(?m)^VmHWM:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
	}
	var kb float64
	_, err = fmt.Sscan(string(m[1]), &kb)
	return kb / 1024, err
}

// within polls cond every 20 ms until it holds and returns how long that
// took, or fails the test after limit.
func within(t *testing.T, limit time.Duration, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ok, detail := cond()
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v (%s)", what, limit, detail)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// manualService is a Service without selector (endpoints come from
// hand-written slices) with one TCP port "tcp" 80 -> 8080.
func manualService(ns, name string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
			{Name: "tcp", Protocol: corev1.ProtocolTCP, Port: lab.SvcPort, TargetPort: intstr.FromInt32(lab.PodPort)}}},
	}
}

// handSlice is an EndpointSlice of Service svc with one port (name
// portName, nil for none) on 8080/TCP and ready endpoints at addrs.
func handSlice(ns, name, svc string, at discoveryv1.AddressType, portName *string, addrs ...string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{
			discoveryv1.LabelManagedBy: "faults.nftproxy.test"}},
		AddressType: at,
		Ports:       []discoveryv1.EndpointPort{{Name: portName, Port: k8sptr.To[int32](lab.PodPort), Protocol: k8sptr.To(corev1.ProtocolTCP)}},
	}
	if svc != "" {
		s.Labels[discoveryv1.LabelServiceName] = svc
	}
	for _, a := range addrs {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{a},
			Conditions: discoveryv1.EndpointConditions{Ready: k8sptr.To(true)}})
	}
	return s
}

// pods is a deployment a fault scenario runs: n pods placed round-robin
// on nodes.
type pods struct {
	name  string
	n     int
	nodes []string
}

// deploy creates the deployments, failing the test on error.
func deploy(t *testing.T, ctx context.Context, l *lab.Lab, ds ...pods) {
	t.Helper()
	for _, d := range ds {
		if _, err := l.CreateDeployment(ctx, d.name, d.n, d.nodes...); err != nil {
			t.Fatal(err)
		}
	}
}
