package proxier

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/nftproxy/nftproxy/nftrules/nft/nftfake"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// TestProxierReportsEndpointsOverLimit: endpoints beyond the per-port limit
// of the ruleset (16,384 per service port and family) are not programmed;
// that is reported once per change (log line and Event through OnReject)
// and counted in SyncInfo (the metric), not dropped silently.
func TestProxierReportsEndpointsOverLimit(t *testing.T) {
	rec := nftfake.New()
	e := newEnv(t, 0, rec)
	e.create(service("big", "10.96.0.1"))
	for s := range 17 { // 17 slices of 1,000: 17,000 endpoints, 616 too many
		addrs := make([]string, 1000)
		for i := range addrs {
			n := s*1000 + i
			addrs[i] = fmt.Sprintf("10.244.%d.%d", n>>8, n&0xff)
		}
		e.create(slice(fmt.Sprintf("big-%d", s), "big", addrs...))
	}
	e.recorded(1, 1)
	// The change is recorded at the first slice's event: wait for the
	// informer's cache to hold all 17 before converting.
	e.eventually("17 slices in the cache", func() bool {
		slices, err := e.p.src.EndpointSlices(types.NamespacedName{Namespace: "ns", Name: "big"})
		return err == nil && len(slices) == 17
	})
	ctx := context.Background()
	e.p.loadAll()
	tooMany := func() []model.Rejection {
		e.mu.Lock()
		defer e.mu.Unlock()
		var out []model.Rejection
		for _, r := range e.rejected {
			if r.Reason == "TooManyEndpoints" {
				out = append(out, r)
			}
		}
		return out
	}
	if err := e.p.sync(ctx, true); err != nil {
		t.Fatal(err)
	}
	if got := e.lastSync().EndpointsOverLimit; got != 616 {
		t.Errorf("EndpointsOverLimit = %d, want 616", got)
	}
	rs := tooMany()
	if len(rs) != 1 || rs[0].Kind != "Service" || rs[0].Name != "big" || !rs[0].Invalid || !strings.Contains(rs[0].Message, "616 IPv4 endpoint(s) not programmed") {
		t.Fatalf("rejections = %+v, want one TooManyEndpoints for ns/big naming 616 IPv4 endpoints", rs)
	}

	// Unchanged: counted again, not reported again.
	if err := e.p.sync(ctx, true); err != nil {
		t.Fatal(err)
	}
	if got, n := e.lastSync().EndpointsOverLimit, len(tooMany()); got != 616 || n != 1 {
		t.Errorf("second sync: EndpointsOverLimit %d, %d reports; want 616, 1", got, n)
	}

	// Another Service changes: big's finding stands (only the changed
	// Service is looked at), neither lost nor reported again.
	e.create(service("small", "10.96.0.2"))
	e.recorded(1, 0)
	if err := e.p.sync(ctx, false); err != nil {
		t.Fatal(err)
	}
	if got, n := e.lastSync().EndpointsOverLimit, len(tooMany()); got != 616 || n != 1 {
		t.Errorf("after another Service changed: EndpointsOverLimit %d, %d reports; want 616, 1", got, n)
	}

	// Back under the limit.
	if err := e.client.DiscoveryV1().EndpointSlices("ns").Delete(ctx, "big-16", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.recorded(0, 1)
	if err := e.p.sync(ctx, false); err != nil {
		t.Fatal(err)
	}
	if st := e.lastSync(); st.EndpointsOverLimit != 0 || len(slices.Collect(st.State.All())[0].Endpoints) != 16000 {
		t.Errorf("after removing a slice: EndpointsOverLimit %d, %d endpoints; want 0, 16000", st.EndpointsOverLimit, len(slices.Collect(st.State.All())[0].Endpoints))
	}
}
