package main

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// changeEndpoint replaces the first endpoint of Service i by addr, on the
// proxy's node (kube-proxy lists local endpoints in its hairpin set, which
// is where the probe looks), stamping the trigger-time annotation as the
// EndpointSlice controller does. It returns when the API server accepted
// the update, and the time just before the update was sent.
func (l *loader) changeEndpoint(ctx context.Context, i int, addr netip.Addr) (sent time.Time, err error) {
	s, err := l.client.DiscoveryV1().EndpointSlices(benchNamespace).Get(ctx, sliceName(i), metav1.GetOptions{})
	if err != nil {
		return time.Time{}, fmt.Errorf("get slice %s: %w", sliceName(i), err)
	}
	s.Endpoints[0].Addresses = []string{addr.String()}
	s.Endpoints[0].NodeName = ptr.To(proxyNode)
	sent = time.Now()
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	s.Annotations[corev1.EndpointsLastChangeTriggerTime] = sent.UTC().Format(time.RFC3339Nano)
	if _, err := l.client.DiscoveryV1().EndpointSlices(benchNamespace).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		return time.Time{}, fmt.Errorf("update slice %s: %w", sliceName(i), err)
	}
	return sent, nil
}
