package nftrules_test

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/internal/fixture"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// requireSameElements fails the test unless every set and map of want is in
// have with exactly want's elements (keys and values); it returns how many
// sets and elements it compared.
func requireSameElements(t *testing.T, have, want *nft.Ruleset) (sets, elements int) {
	t.Helper()
	for _, f := range want.SortedFamilies() {
		wt, ht := want.Tables[f], have.Tables[f]
		if ht == nil {
			t.Fatalf("table %s %s missing", f, wt.Name)
		}
		for _, ws := range wt.SortedSets() {
			hs := ht.Sets.Get(ws.Name)
			if hs == nil {
				t.Errorf("%s set %s missing", f, ws.Name)
				continue
			}
			sets++
			elements += ws.Len()
			if hs.Len() != ws.Len() {
				t.Errorf("%s set %s holds %d elements, want %d", f, ws.Name, hs.Len(), ws.Len())
			}
			missing := 0
			for key, we := range ws.Elements() {
				if he, ok := hs.Lookup(key); !ok || !he.Equal(we) {
					if missing++; missing <= 3 {
						t.Errorf("%s set %s: element %s : %s missing or different (kernel: %s)", f, ws.Name, key, we.ValueString(), he.ValueString())
					}
				}
			}
			if missing > 3 {
				t.Errorf("%s set %s: %d elements missing or different in all", f, ws.Name, missing)
			}
		}
	}
	return sets, elements
}

// TestKernelColdStartLongestNames is issue 10's worst case for netlink
// message sizes: a cold start with 2,000 dual-stack Services whose
// namespace, name and port name have the longest legal length (so every
// verdict-map element carries the longest chain name we make), each with a
// NodePort, plus one ClientIP-affinity Service with 2,000 endpoints per
// family. After ONE sync every element must be in the kernel, nft must
// list the ruleset, and real connections reach samples of the Services and
// of the affinity Service's endpoints (all 2,000 listen: pod i%3, port
// AffinityPortBase+i).
func TestKernelColdStartLongestNames(t *testing.T) {
	const services, affinityEndpoints = 2000, 2000
	start := time.Now()
	tn := newTestNode(t, 3)
	var pods4, pods6 []netip.Addr
	for i := range tn.pods {
		pods4, pods6 = append(pods4, podAddr4(i)), append(pods6, podAddr6(i))
	}
	st := fixture.MaxNamesState(services, affinityEndpoints, pods4, pods6)
	st.NodeName, st.ClusterCIDRs, st.NodePortIPs = "node", clusterCIDRs, []netip.Addr{nodeAddr4, nodeAddr6}
	tn.routed.ServeEcho(8080)
	for i := 0; i < affinityEndpoints; i++ {
		reply := func(remote netip.AddrPort) string { return fmt.Sprintf("ep%d %s", i, remote.Addr()) }
		for _, a := range []netip.Addr{podAddr4(i % 3), podAddr6(i % 3)} {
			c, err := tn.pods[i%3].ServeTCP(netip.AddrPortFrom(a, uint16(fixture.AffinityPortBase+i)), reply)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
		}
	}
	t.Logf("topology and %d listeners: %v", 2*affinityEndpoints+12, time.Since(start).Round(time.Millisecond))

	desired := nftrules.Build(st)
	rec := newReconciler(t, tn.node)
	syncStart := time.Now()
	res, err := rec.Sync(context.Background(), desired, true)
	if err != nil {
		t.Fatalf("cold sync: %v", err)
	}
	t.Logf("cold sync: %d objects in %d netlink messages, %v", res.Objects, res.Messages, time.Since(syncStart).Round(time.Millisecond))

	readStart := time.Now()
	live, err := rec.ReadLive()
	if err != nil {
		t.Fatal(err)
	}
	sets, elements := requireSameElements(t, live, desired)
	t.Logf("kernel holds all %d elements of %d sets and maps (read back in %v)", elements, sets, time.Since(readStart).Round(time.Millisecond))
	if tx := nft.Diff(live, desired); !tx.Empty() {
		t.Errorf("kernel differs from the desired ruleset: %d ops, first %s %s", len(tx.Ops), tx.Ops[0].Kind, tx.Ops[0].Family)
	}
	listStart := time.Now()
	listing := tn.node.NftList(t, "ruleset")
	t.Logf("nft list ruleset: %d bytes in %v", len(listing), time.Since(listStart).Round(time.Millisecond))
	var aff *model.ServicePort
	var plain []*model.ServicePort // the long-named Services without affinity
	for _, sp := range st.Services {
		if sp.SessionAffinityClientIP {
			aff = sp
		} else {
			plain = append(plain, sp)
		}
	}
	for _, want := range []string{nftrules.ServiceChainName(plain[0].Name), nftrules.ServiceChainName(aff.Name),
		"numgen random mod 2000 offset", "vmap @" + nftrules.EndpointChainsMapName(aff.ID)} {
		if !strings.Contains(listing, want) {
			t.Errorf("nft list ruleset lacks %q", want)
		}
	}

	t.Run("long-named Services answer on ClusterIPs and NodePorts", func(t *testing.T) {
		for _, i := range []int{0, 777, services - 1} {
			sp := plain[i]
			var want []string
			for _, ep := range sp.Endpoints {
				for p := range tn.pods {
					if ep.Addr == podAddr4(p) {
						want = append(want, fmt.Sprintf("pod%d", p))
					}
				}
			}
			dsts := []netip.AddrPort{netip.AddrPortFrom(nodeAddr4, sp.NodePort), netip.AddrPortFrom(nodeAddr6, sp.NodePort)}
			for _, ip := range sp.ClusterIPs {
				dsts = append(dsts, netip.AddrPortFrom(ip, sp.Port))
			}
			for _, dst := range dsts {
				backends, _ := who(t, tn.client, "tcp", dst, len(want))
				got := make([]string, 0, len(backends))
				for b := range backends {
					got = append(got, b)
				}
				sort.Strings(got)
				if strings.Join(got, ",") != strings.Join(want, ",") {
					t.Errorf("%s (%s): reached %v, want %v", dst, sp.Name, got, want)
				}
			}
		}
	})

	t.Run("affinity Service: clients reach endpoints throughout the 2,000 and stick", func(t *testing.T) {
		seen := map[string]bool{}
		for _, vip := range aff.ClusterIPs {
			first := netip.MustParseAddr("192.168.50.200")
			if vip.Is6() {
				first = netip.MustParseAddr("fd50::200")
			}
			for _, src := range addClientAddrs(t, tn, first, 8) {
				dst := netip.AddrPortFrom(vip, aff.Port)
				first := dialFrom(t, tn.client, src, dst)
				if again := dialFrom(t, tn.client, src, dst); again != first {
					t.Errorf("client %s reached %s, then %s", src, first, again)
				}
				seen[first] = true
			}
		}
		if len(seen) < 8 {
			t.Errorf("16 clients reached only %v", seen)
		}
		t.Logf("16 clients reached %d endpoints: %v", len(seen), seen)
	})
	t.Logf("total: %v", time.Since(start).Round(time.Millisecond))
}
