package proxier

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftproxy/nftproxy/nftrules/nft/nftfake"
)

// TestProxierKeepsNodeAddressesWhenNodeIsMissing: a Node deleted while the
// proxy runs keeps its last known addresses and zone, so NodePorts on the
// primary addresses stay served; before, the NodePort addresses emptied.
func TestProxierKeepsNodeAddressesWhenNodeIsMissing(t *testing.T) {
	e := newEnvWith(t, 0, nftfake.New(), func(c *Config) { c.NodePortAddresses = NodePortAddresses{Primary: true} })
	ctx := context.Background()
	e.p.loadAll()
	if err := e.p.sync(ctx, true); err != nil {
		t.Fatal(err)
	}
	want := []netip.Addr{netip.MustParseAddr("192.168.0.10")}
	if got := e.lastSync().State.NodePortIPs; !slices.Equal(got, want) {
		t.Fatalf("NodePortIPs = %v, want %v", got, want)
	}
	if err := e.client.CoreV1().Nodes().Delete(ctx, testNode, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually("Node gone from the cache", func() bool { n, err := e.p.src.Node(); return err == nil && n == nil })
	e.p.refreshNode() // what a sync does when the Node changed
	e.p.refreshNodePortIPs()
	st := e.p.state()
	if !slices.Equal(st.NodePortIPs, want) || !slices.Equal(st.NodeIPs, want) || st.NodeZone != "zone-a" {
		t.Errorf("after the Node was deleted: NodePortIPs %v, NodeIPs %v, zone %q; want %v, %v, zone-a", st.NodePortIPs, st.NodeIPs, st.NodeZone, want, want)
	}
}
