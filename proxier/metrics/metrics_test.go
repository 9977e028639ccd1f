package metrics_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	"github.com/nftproxy/nftproxy/informers"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/nftrules/nft/nftfake"
	"github.com/nftproxy/nftproxy/proxier"
	"github.com/nftproxy/nftproxy/proxier/metrics"
	pmodel "github.com/nftproxy/nftproxy/proxier/model"
)

const node = "node-a"

func localService(name string) (*v1.Service, *discovery.EndpointSlice) {
	svc := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
		Spec: v1.ServiceSpec{
			Type: v1.ServiceTypeClusterIP, ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"},
			InternalTrafficPolicy: ptr.To(v1.ServiceInternalTrafficPolicyLocal),
			Ports:                 []v1.ServicePort{{Name: "http", Port: 80, Protocol: v1.ProtocolTCP}},
		},
	}
	// Its only endpoint runs on another node: no local endpoint.
	eps := &discovery.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: name + "-1", Labels: map[string]string{discovery.LabelServiceName: name}},
		AddressType: discovery.AddressTypeIPv4,
		Endpoints: []discovery.Endpoint{{Addresses: []string{"10.244.1.5"}, NodeName: ptr.To("node-b"),
			Conditions: discovery.EndpointConditions{Ready: ptr.To(true)}}},
		Ports: []discovery.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(v1.ProtocolTCP)}},
	}
	return svc, eps
}

// TestScrapeAfterSyncs drives a real Proxier (fake clientset, real
// informers, the fake kernel of nftfake failing the second sync) and scrapes /metrics.
func TestScrapeAfterSyncs(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, eps := localService("web")
	client := fake.NewClientset(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, svc, eps)
	tracker := informers.NewTracker(clock.RealClock{})
	inf, err := informers.New(client, informers.Config{NodeName: node}, tracker)
	if err != nil {
		t.Fatal(err)
	}
	inf.Start(ctx)
	defer inf.Shutdown()
	if err := inf.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}

	m := metrics.New(tracker)
	var mu sync.Mutex
	var infos []proxier.SyncInfo
	rec := nftfake.New()
	rec.BeforeSync = func(context.Context) error {
		time.Sleep(2 * time.Millisecond) // so that durations are observably non-zero
		return nil
	}
	p, err := proxier.New(proxier.Config{
		NodeName: node, SyncPeriod: time.Hour,
		OnSync: func(i proxier.SyncInfo) {
			m.ObserveSync(i)
			mu.Lock()
			infos = append(infos, i)
			mu.Unlock()
		},
	}, inf, tracker, rec)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()

	nSyncs := func() int { mu.Lock(); defer mu.Unlock(); return len(infos) }
	waitFor(t, "the initial full sync", func() bool { return nSyncs() >= 1 })
	// A change: a partial sync, which fails, then a full retry (after the
	// runner's 1 s backoff) that succeeds.
	rec.FailNext(errors.New("injected failure"))
	svc2, eps2 := localService("api")
	svc2.Spec.ClusterIP, svc2.Spec.ClusterIPs = "10.96.0.11", []string{"10.96.0.11"}
	if _, err := client.CoreV1().Services("ns").Create(ctx, svc2, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.DiscoveryV1().EndpointSlices("ns").Create(ctx, eps2, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a failed partial sync and a successful full retry", func() bool { return nSyncs() >= 3 })
	// One more partial sync that succeeds.
	if err := client.CoreV1().Services("ns").Delete(ctx, "api", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a partial sync", func() bool { return nSyncs() >= 4 })

	mu.Lock()
	var full, partial, failed int
	for _, i := range infos {
		if i.Full {
			full++
		} else {
			partial++
		}
		if i.Err != nil {
			failed++
		}
	}
	n := len(infos)
	mu.Unlock()
	if failed != 1 {
		t.Fatalf("syncs %d, failed %d; want exactly one failure", n, failed)
	}

	fams := scrape(t, m)
	if got := histCount(t, fams, "kubeproxy_sync_proxy_rules_duration_seconds"); got != uint64(n) {
		t.Errorf("sync duration count %d, want %d", got, n)
	}
	if got := histCount(t, fams, "kubeproxy_sync_full_proxy_rules_duration_seconds"); got != uint64(full) {
		t.Errorf("full sync duration count %d, want %d", got, full)
	}
	if got := histCount(t, fams, "kubeproxy_sync_partial_proxy_rules_duration_seconds"); got != uint64(partial) {
		t.Errorf("partial sync duration count %d, want %d", got, partial)
	}
	if sum := fams["kubeproxy_sync_proxy_rules_duration_seconds"].Metric[0].GetHistogram().GetSampleSum(); sum < float64(n)*0.002 {
		t.Errorf("sync durations sum to %gs, want >= %gs (each sync sleeps 2 ms)", sum, float64(n)*0.002)
	}
	if got := value(t, fams, "kubeproxy_sync_proxy_rules_nftables_sync_failures_total", nil); got != 1 {
		t.Errorf("sync failures %g, want 1", got)
	}
	if got := histCount(t, fams, "kubeproxy_network_programming_duration_seconds"); got < 2 {
		t.Errorf("network programming observations %d, want >= 2 (add, delete)", got)
	}
	if got := histCount(t, fams, "nftproxy_sync_transaction_objects"); got != uint64(n-failed) {
		t.Errorf("objects observations %d, want %d", got, n-failed)
	}
	if got := value(t, fams, "kubeproxy_sync_proxy_rules_last_timestamp_seconds", nil); time.Since(time.Unix(int64(got), 0)) > time.Minute {
		t.Errorf("last sync timestamp %g is not recent", got)
	}
	if got := value(t, fams, "kubeproxy_sync_proxy_rules_service_changes_total", nil); got < 3 {
		t.Errorf("service changes total %g, want >= 3 (web, api added, api deleted)", got)
	}
	if got := value(t, fams, "kubeproxy_sync_proxy_rules_endpoint_changes_total", nil); got < 2 {
		t.Errorf("endpoint changes total %g, want >= 2", got)
	}
	if got := value(t, fams, "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds", nil); got == 0 {
		t.Error("last queued timestamp not set")
	}
	if got := value(t, fams, "kubeproxy_sync_proxy_rules_no_local_endpoints_total", map[string]string{"traffic_policy": "internal"}); got != 1 {
		t.Errorf("no local endpoints (internal) %g, want 1 (web)", got)
	}
	if got := value(t, fams, "nftproxy_conntrack_entries_deleted_total", nil); got != 0 {
		t.Errorf("conntrack deleted %g, want 0 (no cleaner configured)", got)
	}
	for _, name := range []string{"kubeproxy_sync_proxy_rules_service_changes_pending", "kubeproxy_sync_proxy_rules_endpoint_changes_pending", "go_goroutines"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("metric %s missing", name)
		}
	}
}

// TestObserveSync feeds SyncInfos directly: conntrack deletions, endpoints
// over the per-port limit and the external no-local-endpoints count
// (externally reachable ports only).
func TestObserveSync(t *testing.T) {
	m := metrics.New(nil)
	local := pmodel.Endpoint{Addr: netip.MustParseAddr("10.244.0.5"), Port: 80, NodeName: node, Ready: true}
	remote := pmodel.Endpoint{Addr: netip.MustParseAddr("10.244.1.5"), Port: 80, NodeName: "node-b", Ready: true}
	terminatingLocal := local
	terminatingLocal.Ready, terminatingLocal.Serving, terminatingLocal.Terminating = false, true, true
	st := &pmodel.State{NodeName: node, Services: []*pmodel.ServicePort{
		{ExternalPolicyLocal: true, NodePort: 30080, Endpoints: []pmodel.Endpoint{remote}},                                      // counts
		{ExternalPolicyLocal: true, Endpoints: []pmodel.Endpoint{remote}},                                                       // ClusterIP only: no
		{ExternalPolicyLocal: true, NodePort: 30081, Endpoints: []pmodel.Endpoint{local}},                                       // has local: no
		{ExternalPolicyLocal: true, InternalPolicyLocal: true, NodePort: 30082, Endpoints: []pmodel.Endpoint{terminatingLocal}}, // fallback: no
		{InternalPolicyLocal: true, ExternalPolicyLocal: true, ExternalIPs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}},     // both
	}}
	m.ObserveSync(proxier.SyncInfo{State: st, Start: time.Now(), Duration: time.Millisecond, EndpointsOverLimit: 616})
	m.ObserveSync(proxier.SyncInfo{Start: time.Now(), Err: errors.New("x")})
	m.ConntrackDeleted(5) // the conntrack cleaner reports on its own
	m.ConntrackDeleted(0)
	fams := scrape(t, m)
	if got := value(t, fams, "nftproxy_conntrack_entries_deleted_total", nil); got != 5 {
		t.Errorf("conntrack deleted %g, want 5", got)
	}
	if got := value(t, fams, "kubeproxy_sync_proxy_rules_no_local_endpoints_total", map[string]string{"traffic_policy": "external"}); got != 2 {
		t.Errorf("no local endpoints (external) %g, want 2", got)
	}
	if got := value(t, fams, "kubeproxy_sync_proxy_rules_no_local_endpoints_total", map[string]string{"traffic_policy": "internal"}); got != 1 {
		t.Errorf("no local endpoints (internal) %g, want 1", got)
	}
	if got := value(t, fams, "nftproxy_service_ports", nil); got != 5 {
		t.Errorf("service ports %g, want 5", got)
	}
	if got := value(t, fams, "nftproxy_endpoints_over_limit", nil); got != 616 {
		t.Errorf("endpoints over limit %g, want 616", got)
	}
	if _, ok := fams["kubeproxy_sync_proxy_rules_service_changes_total"]; ok {
		t.Error("change metrics registered without a change source")
	}
}

// TestObserveRepairs: a sync that repairs foreign changes counts them,
// and how long they waited; a failed one does not.
func TestObserveRepairs(t *testing.T) {
	m := metrics.New(nil)
	start := time.Now()
	m.ObserveSync(proxier.SyncInfo{Full: true, Start: start, Duration: 10 * time.Millisecond,
		ForeignChanges: 3, ForeignSince: start.Add(-90 * time.Millisecond)})
	m.ObserveSync(proxier.SyncInfo{Full: true, Start: start, Err: errors.New("x"), ForeignChanges: 2, ForeignSince: start})
	m.ObserveSync(proxier.SyncInfo{Full: true, Start: start}) // a periodic full sync repairs nothing
	fams := scrape(t, m)
	if got := value(t, fams, "nftproxy_repairs_total", nil); got != 1 {
		t.Errorf("repairs %g, want 1", got)
	}
	if got := value(t, fams, "nftproxy_foreign_changes_total", nil); got != 3 {
		t.Errorf("foreign changes %g, want 3", got)
	}
	h := fams["nftproxy_repair_delay_seconds"].Metric[0].GetHistogram()
	if h.GetSampleCount() != 1 || math.Abs(h.GetSampleSum()-0.1) > 1e-6 {
		t.Errorf("repair delay: %d samples summing to %gs, want one of 0.1s", h.GetSampleCount(), h.GetSampleSum())
	}
}

// Checks of the kernel are counted by result, "unchecked" included (a
// check that could not compare part of the kernel is not counted as a
// success), and the lock holds of those that re-read objects are timed.
func TestObserveChecks(t *testing.T) {
	m := metrics.New(nil)
	m.ObserveCheck(nft.VerifyResult{Outcome: nft.VerifySame}, nil)
	m.ObserveCheck(nft.VerifyResult{Outcome: nft.VerifySame, Confirmed: 12, Held: 3 * time.Millisecond}, nil)
	m.ObserveCheck(nft.VerifyResult{Outcome: nft.VerifyUnchecked, Step: "tables"}, nil)
	m.ObserveCheck(nft.VerifyResult{Outcome: nft.VerifyDiffers, Step: "tables"}, nil)
	m.ObserveCheck(nft.VerifyResult{}, errors.New("netlink"))
	fams := scrape(t, m)
	for result, want := range map[string]float64{"same": 2, "unchecked": 1, "differs": 1, "error": 1} {
		if got := value(t, fams, "nftproxy_kernel_checks_total", map[string]string{"result": result}); got != want {
			t.Errorf("checks with result %s: %g, want %g", result, got, want)
		}
	}
	h := fams["nftproxy_kernel_check_lock_hold_seconds"].Metric[0].GetHistogram()
	if h.GetSampleCount() != 1 || math.Abs(h.GetSampleSum()-0.003) > 1e-9 {
		t.Errorf("lock holds: %d samples summing to %gs, want one of 0.003s", h.GetSampleCount(), h.GetSampleSum())
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 5*time.Millisecond, 15*time.Second, true,
		func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// scrape GETs /metrics over HTTP and parses the text exposition.
func scrape(t *testing.T, m *metrics.Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v\n%s", err, body)
	}
	return fams
}

func histCount(t *testing.T, fams map[string]*dto.MetricFamily, name string) uint64 {
	t.Helper()
	f, ok := fams[name]
	if !ok || f.GetType() != dto.MetricType_HISTOGRAM || len(f.Metric) != 1 {
		t.Fatalf("histogram %s missing or malformed: %v", name, f)
	}
	return f.Metric[0].GetHistogram().GetSampleCount()
}

// value returns the value of the gauge or counter with the given labels.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("metric %s missing", name)
	}
	for _, mt := range f.Metric {
		if matches(mt, labels) {
			switch {
			case mt.Gauge != nil:
				return mt.Gauge.GetValue()
			case mt.Counter != nil:
				return mt.Counter.GetValue()
			case mt.Untyped != nil:
				return mt.Untyped.GetValue()
			}
		}
	}
	t.Fatalf("metric %s%v not found", name, labels)
	return 0
}

func matches(m *dto.Metric, labels map[string]string) bool {
	n := 0
	for _, l := range m.Label {
		if v, ok := labels[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(labels)
}

// TestNoLocalEndpointsFollowsTheDelta: a State whose Delta names the
// Services changed since the State counted last updates their share of
// the no-local-endpoints count only; the others' shares stand.
func TestNoLocalEndpointsFollowsTheDelta(t *testing.T) {
	m := metrics.New(nil)
	local := pmodel.Endpoint{Addr: netip.MustParseAddr("10.244.0.5"), Port: 80, NodeName: node, Ready: true}
	remote := pmodel.Endpoint{Addr: netip.MustParseAddr("10.244.1.5"), Port: 80, NodeName: "node-b", Ready: true}
	port := func(name string, ep pmodel.Endpoint) *pmodel.ServicePort {
		sp := &pmodel.ServicePort{InternalPolicyLocal: true, Endpoints: []pmodel.Endpoint{ep}}
		sp.Name.Namespace, sp.Name.Name = "ns", name
		return sp
	}
	a, b := port("a", remote), port("b", remote)
	internal := func(st *pmodel.State) float64 {
		t.Helper()
		m.ObserveSync(proxier.SyncInfo{State: st, Start: time.Now(), Duration: time.Millisecond})
		return value(t, scrape(t, m), "kubeproxy_sync_proxy_rules_no_local_endpoints_total", map[string]string{"traffic_policy": "internal"})
	}
	if got := internal(&pmodel.State{NodeName: node, Gen: 1, Services: []*pmodel.ServicePort{a, b}}); got != 2 {
		t.Fatalf("a and b without local endpoints: %g, want 2", got)
	}
	changed := func(since uint64, names ...string) *pmodel.Delta {
		d := &pmodel.Delta{Since: since}
		for _, n := range names {
			d.Changed = append(d.Changed, types.NamespacedName{Namespace: "ns", Name: n})
		}
		return d
	}
	a2 := port("a", local)
	if got := internal(&pmodel.State{NodeName: node, Gen: 2, Delta: changed(1, "a"), Services: []*pmodel.ServicePort{a2, b}}); got != 1 {
		t.Fatalf("a got a local endpoint: %g, want 1 (b)", got)
	}
	if got := internal(&pmodel.State{NodeName: node, Gen: 3, Delta: changed(2, "b"), Services: []*pmodel.ServicePort{a2}}); got != 0 {
		t.Fatalf("b removed: %g, want 0", got)
	}
	// A Delta from a State not counted last: everything is counted.
	if got := internal(&pmodel.State{NodeName: node, Gen: 9, Delta: changed(7), Services: []*pmodel.ServicePort{a, b}}); got != 2 {
		t.Fatalf("after a gap: %g, want 2", got)
	}
}
