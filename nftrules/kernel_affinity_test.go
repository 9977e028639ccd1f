package nftrules_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/nftproxy/nftproxy/e2e/netkit"
	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// dialFrom connects from src (an address of ns) to dst and returns the
// backend's name.
func dialFrom(t *testing.T, ns *netkit.NS, src netip.Addr, dst netip.AddrPort) string {
	t.Helper()
	var reply string
	err := ns.Do(func() error {
		d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
		c, err := d.Dial("tcp", dst.String())
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 128)
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		reply = strings.Fields(string(buf[:n]))[0]
		return nil
	})
	if err != nil {
		t.Fatalf("dial %s from %s: %v", dst, src, err)
	}
	return reply
}

// addClientAddrs adds n addresses from first on to the client's eth0 (in
// the client's /24 or /64) and returns them.
func addClientAddrs(t *testing.T, tn *testNode, first netip.Addr, n int) []netip.Addr {
	t.Helper()
	bits := 24
	if first.Is6() {
		bits = 64
	}
	var out []netip.Addr
	for a := first; len(out) < n; a = a.Next() {
		if err := tn.client.AddAddr("eth0", netip.PrefixFrom(a, bits)); err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

func TestKernelSessionAffinity(t *testing.T) {
	tn := newTestNode(t, 3)
	tn.routed.ServeEcho(8080)
	// Ten client addresses outside the cluster.
	clients := addClientAddrs(t, tn, netip.MustParseAddr("192.168.50.100"), 10)
	vip := netip.MustParseAddrPort("10.96.0.30:80")
	service := func(affinity bool, timeout int32, pods ...int) *model.State {
		sp := svc(1, "sticky", v1.ProtocolTCP, 80, []string{"10.96.0.30"}, 8080, pods...)
		sp.SessionAffinityClientIP, sp.AffinityTimeoutSeconds = affinity, timeout
		return &model.State{NodeName: "node", ClusterCIDRs: clusterCIDRs, Services: []*model.ServicePort{sp}}
	}
	rec := newReconciler(t, tn.node)
	b := nftrules.NewBuilder()
	sync := func(st *model.State) {
		t.Helper()
		if _, err := rec.Sync(context.Background(), b.Build(st), false); err != nil {
			t.Fatal(err)
		}
	}
	spread := func(src netip.Addr, n int) map[string]int {
		seen := map[string]int{}
		for i := 0; i < n; i++ {
			seen[dialFrom(t, tn.client, src, vip)]++
		}
		return seen
	}

	sync(service(true, 60, 0, 1, 2))
	t.Run("one client keeps its endpoint for 20 connections", func(t *testing.T) {
		if seen := spread(clients[0], 20); len(seen) != 1 {
			t.Errorf("client reached %v, want one endpoint", seen)
		}
	})
	t.Run("different clients spread over several endpoints", func(t *testing.T) {
		all := map[string]bool{}
		for _, c := range clients {
			seen := spread(c, 3)
			if len(seen) != 1 {
				t.Errorf("client %s reached %v, want one endpoint", c, seen)
			}
			for k := range seen {
				all[k] = true
			}
		}
		if len(all) < 2 {
			t.Errorf("ten clients all reached %v", all)
		}
	})
	t.Run("when its endpoint goes, the client moves to a live one and sticks again", func(t *testing.T) {
		first := dialFrom(t, tn.client, clients[1], vip)
		var rest []int
		for i := 0; i < 3; i++ {
			if fmt.Sprintf("pod%d", i) != first {
				rest = append(rest, i)
			}
		}
		sync(service(true, 60, rest...))
		seen := spread(clients[1], 10)
		if len(seen) != 1 || seen[first] != 0 {
			t.Errorf("after %s left, the client reached %v", first, seen)
		}
		sync(service(true, 60, 0, 1, 2))
	})
	t.Run("after the timeout a new choice is made", func(t *testing.T) {
		sync(service(true, 1, 0, 1, 2))
		changed := false
		prev := dialFrom(t, tn.client, clients[2], vip)
		for trial := 0; trial < 8 && !changed; trial++ {
			if again := dialFrom(t, tn.client, clients[2], vip); again != prev {
				t.Fatalf("within the timeout the client moved from %s to %s", prev, again)
			}
			time.Sleep(1500 * time.Millisecond) // idle past the 1 s timeout
			next := dialFrom(t, tn.client, clients[2], vip)
			changed = next != prev
			prev = next
		}
		if !changed {
			t.Error("eight expiries in a row kept the same endpoint (chance 1 in 6561)")
		}
	})
	t.Run("affinity off spreads one client again, on sticks again", func(t *testing.T) {
		sync(service(false, 0, 0, 1, 2))
		if seen := spread(clients[3], 30); len(seen) != 3 {
			t.Errorf("without affinity one client reached %v, want all three", seen)
		}
		sync(service(true, 60, 0, 1, 2))
		if seen := spread(clients[3], 10); len(seen) != 1 {
			t.Errorf("with affinity back the client reached %v", seen)
		}
	})
	t.Run("full resync leaves affinity state alone", func(t *testing.T) {
		before := dialFrom(t, tn.client, clients[4], vip)
		res, err := rec.Sync(context.Background(), b.Build(service(true, 60, 0, 1, 2)), true)
		if err != nil {
			t.Fatal(err)
		}
		if res.Objects != 0 {
			t.Errorf("full resync touched %d objects", res.Objects)
		}
		if seen := spread(clients[4], 5); len(seen) != 1 || seen[before] == 0 {
			t.Errorf("after a full resync the client reached %v, want %s", seen, before)
		}
	})
	listing := tn.node.NftList(t, "ruleset")
	for _, want := range []string{"flags dynamic,timeout", "update @aff-", "numgen random mod 3 offset 16384 vmap @endpoint-chains-0", "typeof numgen random mod 1 : verdict"} {
		if !strings.Contains(listing, want) {
			t.Errorf("nft listing lacks %q:\n%s", want, listing)
		}
	}
}
