package e2e

import (
	"fmt"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftproxy/nftproxy/e2e/lab"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// nodeAddrs lists every address configured in a node's namespace (what a
// masqueraded packet from that node may carry as source).
func nodeAddrs(l *lab.Lab, node string) (map[netip.Addr]bool, error) {
	ns, err := l.NS(node)
	if err != nil {
		return nil, err
	}
	h, err := netlink.NewHandleAt(netns.NsHandle(ns.FD()))
	if err != nil {
		return nil, fmt.Errorf("netlink in %s: %w", node, err)
	}
	defer h.Close()
	addrs, err := h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("addresses of %s: %w", node, err)
	}
	out := map[netip.Addr]bool{}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			out[ip.Unmap()] = true
		}
	}
	return out, nil
}

// updateService reads Service default/<name>, applies change and writes it
// back, failing the test on error.
func updateService(t *testing.T, l *lab.Lab, name string, change func(*corev1.Service)) *corev1.Service {
	t.Helper()
	ctx := ctxFor(t)
	svcs := l.Client().CoreV1().Services("default")
	cur, err := svcs.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	change(cur)
	out, err := svcs.Update(ctx, cur, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("update Service %s: %v", name, err)
	}
	return out
}
