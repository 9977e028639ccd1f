package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/nftproxy/nftproxy/e2e/lab"
)

// The API contents: Services svc-00000… in namespace bench, one TCP port
// each (80 -> 8080), IPv4 only, without selector, each with one
// hand-written EndpointSlice of M ready endpoints on another node. The
// slices are labelled as managed by us, so the EndpointSlice controllers
// leave them alone.
const (
	benchNamespace = "bench"
	servicePort    = 80
	endpointPort   = 8080
	managedBy      = "bench-compare.nftproxy.io"
	// otherNode runs the loaded endpoints; the proxies run on proxyNode.
	otherNode = "node-2"
	proxyNode = "node-1"
)

func serviceName(i int) string { return fmt.Sprintf("svc-%05d", i) }
func sliceName(i int) string   { return serviceName(i) + "-bench" }

// endpointAddr is the address of endpoint j of Service i: unique, outside
// every lab range (10.128.0.0/12 up to 1.6M endpoints).
func endpointAddr(i, j, m int) netip.Addr {
	k := i*m + j
	return netip.AddrFrom4([4]byte{10, byte(128 + k>>16), byte(k >> 8), byte(k)})
}

// endpointAddr6 is the IPv6 address of endpoint j of Service i in the
// dual-stack variant: fd00:128::/96.
func endpointAddr6(i, j, m int) netip.Addr {
	k := i*m + j
	return netip.AddrFrom16([16]byte{0xfd, 0, 1, 0x28, 10: 0, 12: byte(k >> 24), 13: byte(k >> 16), 14: byte(k >> 8), 15: byte(k)})
}

// clusterIP6Of is Service i's IPv6 ClusterIP in the dual-stack variant:
// fd96::16 onwards, inside the lab's fd96::/112.
func clusterIP6Of(i int) netip.Addr {
	k := i + 16
	return netip.AddrFrom16([16]byte{0xfd, 0x96, 14: byte(k >> 8), 15: byte(k)})
}

// changedAddr is the address the c-th endpoint change introduces:
// 10.250.0.0/16 and up, never used by the initial load.
func changedAddr(c int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(250 + c>>16), byte(c >> 8), byte(c)})
}

// loader creates the API contents and remembers the ClusterIPs.
type loader struct {
	client    kubernetes.Interface
	etcd      *lab.EtcdWriter
	m         int // endpoints per Service
	clusterIP []netip.Addr
	workers   int
	// extra Services outside [0, N) (the connection target) that the
	// apiserver lists besides the load.
	extra int
	// dualStack: every Service also has an IPv6 ClusterIP and an IPv6
	// slice; the changes and the data plane stay in IPv4.
	dualStack bool
	log       func(format string, args ...any)
}

// ensure creates Services [len(l.clusterIP), n) and their slices.
func (l *loader) ensure(ctx context.Context, n int) error {
	if len(l.clusterIP) >= n {
		return nil
	}
	if _, err := l.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNamespace}},
		metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("namespace: %w", err)
	}
	from := len(l.clusterIP)
	ips := make([]netip.Addr, n)
	copy(ips, l.clusterIP)
	start := time.Now()
	var next, done atomic.Int64
	next.Store(int64(from))
	var wg sync.WaitGroup
	errc := make(chan error, l.workers)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopProgress := make(chan struct{})
	go func() {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-t.C:
				d := done.Load()
				l.log("  loading: %d/%d Services with slices (%.0f/s)", int64(from)+d, n, float64(d)/time.Since(start).Seconds())
			}
		}
	}()
	for w := 0; w < l.workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				ip, err := l.put(ctx, i)
				if err != nil {
					errc <- err
					cancel()
					return
				}
				ips[i] = ip
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	close(stopProgress)
	select {
	case err := <-errc:
		return err
	default:
	}
	l.clusterIP = ips
	l.log("  wrote %d Services × %d endpoints to etcd in %s; waiting for the apiserver to list them", n-from, l.m, time.Since(start).Round(time.Second))
	if err := l.waitListed(ctx, n); err != nil {
		return err
	}
	l.log("  loaded %d Services × %d endpoints in %s", n-from, l.m, time.Since(start).Round(time.Second))
	return nil
}

// families is how many slices (address families) each Service has.
func (l *loader) families() int {
	if l.dualStack {
		return 2
	}
	return 1
}

// changeEndpoint replaces the first endpoint of Service i by addr, on the
// proxy's node (kube-proxy lists local endpoints in its hairpin set, which
// is where the probe looks). It returns when the API server accepted the
// update, and the time just before the update was sent.
func (l *loader) changeEndpoint(ctx context.Context, i int, addr netip.Addr) (sent time.Time, err error) {
	eps := []slicePoint{{addr, proxyNode}}
	for j := 1; j < l.m; j++ {
		eps = append(eps, slicePoint{endpointAddr(i, j, l.m), otherNode})
	}
	return l.setEndpoints(ctx, i, eps)
}

// slicePoint is one ready endpoint of a patched slice.
type slicePoint struct {
	addr netip.Addr
	node string
}

// setEndpoints replaces the endpoints of Service i's slice with one JSON
// merge patch (one round trip, no read first), stamping the trigger-time
// annotation with the time the patch is sent, as the EndpointSlice
// controller stamps the time of the change that triggered it.
func (l *loader) setEndpoints(ctx context.Context, i int, eps []slicePoint) (sent time.Time, err error) {
	var list []discovery.Endpoint
	for _, e := range eps {
		list = append(list, discovery.Endpoint{Addresses: []string{e.addr.String()}, NodeName: ptr.To(e.node),
			Conditions: discovery.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)}})
	}
	sent = time.Now()
	patch, err := json.Marshal(map[string]any{
		"metadata":  map[string]any{"annotations": map[string]string{corev1.EndpointsLastChangeTriggerTime: sent.UTC().Format(time.RFC3339Nano)}},
		"endpoints": list,
	})
	if err != nil {
		return time.Time{}, err
	}
	if _, err := l.client.DiscoveryV1().EndpointSlices(benchNamespace).Patch(ctx, sliceName(i), types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return time.Time{}, fmt.Errorf("patch slice %s: %w", sliceName(i), err)
	}
	return sent, nil
}
