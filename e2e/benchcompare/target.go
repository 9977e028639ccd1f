package main

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/nftproxy/nftproxy/e2e/lab"
)

// connIndex is the Service the real connections go to: outside the load
// (svc-00000 … svc-49999), so the load's Services stay as loaded and the
// changes of the lone and burst measurements never touch it.
const connIndex = 65000

// connTarget is a Service with one real endpoint on the proxy's node: one
// of two listener pods (the lab's test server, which answers every
// connection with its pod name), and a client pod on the same node. The
// endpoint changes of the connection measurement switch the Service from
// one listener to the other, so the first connection the new one answers
// marks when the change reached the data plane.
type connTarget struct {
	client    *lab.Pod
	listeners [2]*lab.Pod
	current   int // index of the listener that is the endpoint now
	clusterIP netip.Addr
}

// newConnTarget starts the three pods and creates the Service (through
// etcd like the load, then its slice through the API).
func newConnTarget(ctx context.Context, l *lab.Lab, ld *loader) (*connTarget, error) {
	t := &connTarget{}
	var err error
	if t.client, err = l.RunPod(ctx, "bench-client", proxyNode, map[string]string{"app": "bench-client"}); err != nil {
		return nil, err
	}
	for i, name := range []string{"bench-a", "bench-b"} {
		if t.listeners[i], err = l.RunPod(ctx, name, proxyNode, map[string]string{"app": name}); err != nil {
			return nil, err
		}
	}
	if t.clusterIP, err = ld.put(ctx, connIndex); err != nil {
		return nil, fmt.Errorf("connection target Service: %w", err)
	}
	ld.extra++
	if _, err := ld.setEndpoints(ctx, connIndex, t.endpoint(0)); err != nil {
		return nil, err
	}
	return t, nil
}

// endpoint is the slice content that makes listener i the only endpoint.
func (t *connTarget) endpoint(i int) []slicePoint {
	return []slicePoint{{t.listeners[i].IPv4, proxyNode}}
}

// service is the ClusterIP address and port the client connects to.
func (t *connTarget) service() netip.AddrPort { return netip.AddrPortFrom(t.clusterIP, servicePort) }

// direct is the current endpoint's own address (no Service in between).
func (t *connTarget) direct() netip.AddrPort {
	return netip.AddrPortFrom(t.listeners[t.current].IPv4, lab.PodPort)
}
