package nft_test

import (
	"bytes"
	"math"
	"net/netip"
	"testing"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/internal/fixture"
	"github.com/nftproxy/nftproxy/nftrules/nft"
)

// TestElementMessagesFitNetlinkAttributes queues the cold start of the
// worst case (longest names, IPv6, verdict maps to long chains, an affinity
// Service with 2,000 endpoints) and decodes what google/nftables would
// send: no element list may overflow netlink's 16-bit attribute length, and
// the elements across messages must be exactly the transaction's.
func TestElementMessagesFitNetlinkAttributes(t *testing.T) {
	pods4 := []netip.Addr{netip.MustParseAddr("10.244.1.10"), netip.MustParseAddr("10.244.1.11"), netip.MustParseAddr("10.244.1.12")}
	pods6 := []netip.Addr{netip.MustParseAddr("fd44::10"), netip.MustParseAddr("fd44::11"), netip.MustParseAddr("fd44::12")}
	st := fixture.MaxNamesState(2000, 2000, pods4, pods6)
	st.NodeName, st.NodePortIPs = "node", []netip.Addr{netip.MustParseAddr("192.168.50.1"), netip.MustParseAddr("fd50::1")}
	tx := nft.Diff(nil, nftrules.Build(st))

	type setKey struct {
		f    nft.Family
		name string
	}
	want := map[setKey][]nft.Element{}
	sets := map[setKey]*nft.Set{}
	for _, op := range tx.Ops {
		if op.Kind == nft.OpAddElements {
			k := setKey{op.Family, op.Set.Name}
			want[k] = append(want[k], op.ElementList()...)
			sets[k] = op.Set
		}
	}
	got := map[setKey][]nft.Element{}
	perMessage := map[setKey][]int{}
	listBytes := map[setKey]int{} // largest element list attribute

	for i, m := range nft.QueueForTest(t, tx) {
		if len(m.Data) > math.MaxUint16 {
			t.Errorf("message %d (type %d): payload of %d bytes", i, m.Header.Type&0xff, len(m.Data))
		}
		if m.Header.Type&0xff != unix.NFT_MSG_NEWSETELEM {
			continue
		}
		f := nft.IPv4
		if m.Data[0] == unix.NFPROTO_IPV6 {
			f = nft.IPv6
		}
		name, declared, actual := nft.ElemListAttr(t, m.Data)
		k := setKey{f, name}
		if declared != actual || actual > math.MaxUint16 {
			t.Errorf("%s %s: element list attribute of %d bytes declares %d", f, name, actual, declared)
			continue
		}
		var nes []nftables.SetElement
		if err := nft.EachElement(m.Data[4:], func(key, val []byte) error {
			nes = append(nes, nftables.SetElement{Key: bytes.Clone(key), Val: bytes.Clone(val)})
			return nil
		}); err != nil {
			t.Fatalf("%s %s: %v", f, name, err)
		}
		for _, ne := range nes {
			e, err := nft.ElementFromNL(sets[k], ne)
			if err != nil {
				t.Fatalf("%s %s: %v", f, name, err)
			}
			got[k] = append(got[k], e)
		}
		perMessage[k] = append(perMessage[k], len(nes))
		if actual > listBytes[k] {
			listBytes[k] = actual
		}
	}
	for k, w := range want {
		g := got[k]
		if len(g) != len(w) {
			t.Errorf("%s %s: %d elements queued, want %d", k.f, k.name, len(g), len(w))
			continue
		}
		for i := range w {
			if !g[i].Equal(w[i]) {
				t.Errorf("%s %s: element %d is %s : %s, want %s : %s", k.f, k.name, i, g[i].KeyString(), g[i].ValueString(), w[i].KeyString(), w[i].ValueString())
				break
			}
		}
	}
	for _, k := range []setKey{{nft.IPv6, nftrules.SetServiceIPs}, {nft.IPv4, nftrules.SetServiceIPs}, {nft.IPv6, nftrules.SetServiceNodePorts}, {nft.IPv6, nftrules.EndpointChainsMapName(2001)}, {nft.IPv6, nftrules.EndpointMapName(nft.TCP, 1)}} {
		n := perMessage[k][0]
		t.Logf("%s %s: %d elements in messages of %v; first message: %d bytes per element, list attribute %d bytes (largest of the set)",
			k.f, k.name, len(got[k]), perMessage[k], (listBytes[k]-nft.NlaHeaderLen)/max(n, 1), listBytes[k])
	}
}
