package netkit

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const testPrefix = "nktest-"

var nsSeq atomic.Int64

// TestMain removes leftovers of a crashed earlier run before any test
// creates namespaces, and skips everything loudly when not root.
func TestMain(m *testing.M) {
	if os.Geteuid() == 0 {
		if err := CleanupPrefix(testPrefix); err != nil {
			fmt.Fprintf(os.Stderr, "cleanup of leftover %s namespaces: %v\n", testPrefix, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	if os.Geteuid() == 0 {
		if err := CleanupPrefix(testPrefix); err != nil {
			fmt.Fprintf(os.Stderr, "final cleanup: %v\n", err)
		}
	}
	os.Exit(code)
}

// newNS creates a uniquely named test namespace removed at test end.
func newNS(t *testing.T, role string) *NS {
	t.Helper()
	name := fmt.Sprintf("%s%d-%d-%s", testPrefix, os.Getpid(), nsSeq.Add(1), role)
	n, err := New(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Delete(); err != nil {
			t.Errorf("delete %s: %v", name, err)
		}
	})
	return n
}

var (
	aV4 = netip.MustParsePrefix("10.77.0.1/24")
	bV4 = netip.MustParsePrefix("10.77.0.2/24")
	aV6 = netip.MustParsePrefix("fd77::1/64")
	bV6 = netip.MustParsePrefix("fd77::2/64")
)

// pair returns two namespaces joined by a veth, both with v4 and v6
// addresses.
func pair(t *testing.T) (a, b *NS) {
	t.Helper()
	a, b = newNS(t, "a"), newNS(t, "b")
	if err := Veth(a, "eth0", b, "eth0"); err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct {
		n *NS
		p netip.Prefix
	}{{a, aV4}, {a, aV6}, {b, bV4}, {b, bV6}} {
		if err := x.n.AddAddr("eth0", x.p); err != nil {
			t.Fatal(err)
		}
	}
	return a, b
}

func TestTCPUDPRoundTrip(t *testing.T) {
	RequireRoot(t)
	t.Parallel()
	a, b := pair(t)
	for _, tc := range []struct {
		name     string
		src, dst netip.Addr
	}{
		{"v4", aV4.Addr(), bV4.Addr()},
		{"v6", aV6.Addr(), bV6.Addr()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reply := func(r netip.AddrPort) string { return "hello " + r.Addr().String() }
			srvAddr := netip.AddrPortFrom(tc.dst, 8080)
			tcp, err := b.ServeTCP(srvAddr, reply)
			if err != nil {
				t.Fatal(err)
			}
			defer tcp.Close()
			udp, err := b.ServeUDP(srvAddr, reply)
			if err != nil {
				t.Fatal(err)
			}
			defer udp.Close()

			want := "hello " + tc.src.String()
			got, err := a.DialTCP(srvAddr, 3*time.Second)
			if err != nil || got != want {
				t.Errorf("DialTCP = %q, %v; want %q", got, err, want)
			}
			got, err = a.DialUDP(srvAddr, "ping", 3*time.Second)
			if err != nil || got != want {
				t.Errorf("DialUDP = %q, %v; want %q", got, err, want)
			}
		})
	}
}

func TestRefused(t *testing.T) {
	RequireRoot(t)
	t.Parallel()
	a, _ := pair(t)
	for _, dst := range []netip.Addr{bV4.Addr(), bV6.Addr()} {
		ap := netip.AddrPortFrom(dst, 9) // nobody listens
		_, err := a.DialTCP(ap, 2*time.Second)
		if !errors.Is(err, syscall.ECONNREFUSED) || !IsRefused(err) || IsTimeout(err) {
			t.Errorf("DialTCP %s: err = %v; want ECONNREFUSED", ap, err)
		}
		_, err = a.DialUDP(ap, "x", 2*time.Second)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("DialUDP %s: err = %v; want ECONNREFUSED", ap, err)
		}
	}
}

func TestTimeout(t *testing.T) {
	RequireRoot(t)
	t.Parallel()
	a, b := pair(t)
	if out, err := b.Exec("nft", "add table inet t; add chain inet t in { type filter hook input priority 0; policy drop; }"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	ap := netip.AddrPortFrom(bV4.Addr(), 80)
	_, err := a.DialTCP(ap, 300*time.Millisecond)
	if !IsTimeout(err) || IsRefused(err) {
		t.Errorf("DialTCP to dropping host: err = %v; want timeout", err)
	}
	_, err = a.DialUDP(ap, "x", 300*time.Millisecond)
	if !IsTimeout(err) || IsRefused(err) {
		t.Errorf("DialUDP to dropping host: err = %v; want timeout", err)
	}
}

func TestSCTPInitCaptured(t *testing.T) {
	RequireRoot(t)
	t.Parallel()
	a, b := pair(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := b.CaptureSCTP(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ src, dst netip.Addr }{
		{aV4.Addr(), bV4.Addr()},
		{aV6.Addr(), bV6.Addr()},
	} {
		dst := netip.AddrPortFrom(tc.dst, 3868)
		if err := a.SendSCTPInit(tc.src, 40000, dst); err != nil {
			t.Fatal(err)
		}
		want := SCTPPacket{Src: tc.src, Dst: tc.dst, SrcPort: 40000, DstPort: 3868, ChunkType: 1}
		select {
		case got := <-ch:
			if got != want {
				t.Errorf("captured %+v; want %+v", got, want)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("no SCTP packet captured for %s", dst)
		}
	}
	cancel()
	for range ch { // channel must be closed after cancel
	}
}

// TestSCTPChecksum checks the CRC32c primitive and the INIT layout.
func TestSCTPChecksum(t *testing.T) {
	// RFC 3720 B.4 / well-known CRC32c check value.
	if got := crc32.Checksum([]byte("123456789"), castagnoli); got != 0xe3069283 {
		t.Fatalf("crc32c check value = %#x", got)
	}
	p := SCTPInit(1, 2)
	if len(p) != 32 || p[12] != 1 || p[4]|p[5]|p[6]|p[7] != 0 {
		t.Fatalf("bad INIT packet % x", p)
	}
	// Recomputing over the packet with the field zeroed gives the stored value.
	q := append([]byte(nil), p...)
	setSCTPChecksum(q)
	if string(p) != string(q) {
		t.Fatalf("checksum not stable")
	}
}

// TestSCTPChecksumConntrack proves the CRC32c is what the kernel expects:
// conntrack (nf_conntrack_checksum=1) marks an SCTP packet with a bad
// checksum invalid and a good INIT new.
func TestSCTPChecksumConntrack(t *testing.T) {
	RequireRoot(t)
	t.Parallel()
	a, b := pair(t)
	if out, err := b.Exec("nft", "add table inet t; add chain inet t pre { type filter hook prerouting priority 0; }; "+
		"add rule inet t pre meta l4proto sctp ct state invalid counter; "+
		"add rule inet t pre meta l4proto sctp ct state new counter"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, dst := range []netip.Addr{bV4.Addr(), bV6.Addr()} {
		bad := SCTPInit(5000, 6000)
		bad[8] ^= 0xff
		if err := a.SendSCTP(netip.Addr{}, dst, bad); err != nil {
			t.Fatal(err)
		}
		if err := a.SendSCTPInit(netip.Addr{}, 5001, netip.AddrPortFrom(dst, 6000)); err != nil {
			t.Fatal(err)
		}
	}
	// The packets may wait in the neighbour queue: poll the counters.
	want := []string{"ct state invalid counter packets 2 ", "ct state new counter packets 2 "}
	var out []byte
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var err error
		if out, err = b.Exec("nft", "list chain inet t pre"); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(out), want[0]) && strings.Contains(string(out), want[1]) {
			return
		}
	}
	t.Errorf("conntrack counters: want %q in\n%s", want, out)
}

func TestStartStop(t *testing.T) {
	RequireRoot(t)
	t.Parallel()
	n := newNS(t, "proc")
	log := filepath.Join(t.TempDir(), "sleep.log")
	p, err := n.Start(log, "sleep", "1000")
	if err != nil {
		t.Fatal(err)
	}
	// The PID is the sleep itself, in our namespace.
	comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p.PID))
	if strings.TrimSpace(string(comm)) != "sleep" {
		t.Errorf("PID %d is %q, want sleep", p.PID, comm)
	}
	want, _ := nsInode(filepath.Join(netnsDir, n.Name))
	if got, err := nsInode(fmt.Sprintf("/proc/%d/ns/net", p.PID)); err != nil || got != want {
		t.Errorf("process netns = %v, %v; want %v", got, err, want)
	}
	if p.Exited() {
		t.Fatal("exited early")
	}
	if err := p.Stop(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	if !p.Exited() || p.ExitState() == nil {
		t.Fatal("not exited after Stop")
	}
	if st := p.ExitState().Sys().(syscall.WaitStatus); !st.Signaled() || st.Signal() != syscall.SIGTERM {
		t.Errorf("exit status %v; want killed by SIGTERM", p.ExitState())
	}
	// Log file and daemon output.
	p2, err := n.Start(log, "sh", "-c", "echo hi from $(ip -o link show lo | cut -d: -f2)")
	if err != nil {
		t.Fatal(err)
	}
	if err := p2.Wait(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(log); !strings.Contains(string(b), "hi from lo") {
		t.Errorf("log = %q", b)
	}
}

func TestCleanupPrefix(t *testing.T) {
	RequireRoot(t)
	t.Parallel()
	// A private prefix so parallel tests' namespaces are not touched.
	prefix := fmt.Sprintf("%scleanup-%d-", testPrefix, os.Getpid())
	var procs []*Proc
	for i := range 2 {
		n, err := New(fmt.Sprintf("%s%d", prefix, i))
		if err != nil {
			t.Fatal(err)
		}
		p, err := n.Start(os.DevNull, "sleep", "1000")
		if err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p)
		// Simulate a crashed run: drop our handle without Delete.
	}
	if err := CleanupPrefix(prefix); err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		select {
		case <-p.Done():
		case <-time.After(5 * time.Second):
			t.Errorf("process %d still running after CleanupPrefix", p.PID)
		}
	}
	entries, _ := os.ReadDir(netnsDir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			t.Errorf("namespace %s left over", e.Name())
		}
	}
	if err := CleanupPrefix(""); err == nil {
		t.Error("CleanupPrefix(\"\") must be refused")
	}
}

func TestNewRefusesExisting(t *testing.T) {
	RequireRoot(t)
	t.Parallel()
	n := newNS(t, "dup")
	if _, err := New(n.Name); err == nil {
		t.Fatal("New of an existing namespace succeeded")
	}
	// Defaults applied by New.
	out, err := n.Exec("cat", "/proc/sys/net/ipv4/icmp_ratelimit", "/proc/sys/net/ipv6/conf/default/accept_dad")
	if err != nil || strings.Fields(string(out))[0] != "0" || strings.Fields(string(out))[1] != "0" {
		t.Errorf("sysctls = %q, %v", out, err)
	}
}

func TestBridgeRoutesForwarding(t *testing.T) {
	RequireRoot(t)
	t.Parallel()
	// client -- router -- (bridge br0) -- server, routed v4 and v6.
	client, router, server := newNS(t, "cli"), newNS(t, "rtr"), newNS(t, "srv")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(Veth(client, "eth0", router, "c0"))
	must(router.Bridge("br0"))
	must(Veth(server, "eth0", router, "s0"))
	must(router.SetMaster("s0", "br0"))
	must(router.SetHairpin("s0", true))
	must(router.EnableForwarding())
	must(client.AddAddr("eth0", netip.MustParsePrefix("10.1.0.2/24")))
	must(router.AddAddr("c0", netip.MustParsePrefix("10.1.0.1/24")))
	must(router.AddAddr("br0", netip.MustParsePrefix("10.2.0.1/24")))
	must(server.AddAddr("eth0", netip.MustParsePrefix("10.2.0.2/24")))
	must(client.AddAddr("eth0", netip.MustParsePrefix("fd01::2/64")))
	must(router.AddAddr("c0", netip.MustParsePrefix("fd01::1/64")))
	must(router.AddAddr("br0", netip.MustParsePrefix("fd02::1/64")))
	must(server.AddAddr("eth0", netip.MustParsePrefix("fd02::2/64")))
	must(client.AddDefaultRoute(netip.MustParseAddr("10.1.0.1")))
	must(client.AddDefaultRoute(netip.MustParseAddr("fd01::1")))
	must(server.AddRoute(netip.MustParsePrefix("10.1.0.0/24"), netip.MustParseAddr("10.2.0.1")))
	must(server.AddRoute(netip.MustParsePrefix("fd01::/64"), netip.MustParseAddr("fd02::1")))
	must(router.AddDeviceRoute(netip.MustParsePrefix("10.9.0.0/24"), "br0"))

	for _, dst := range []string{"10.2.0.2", "fd02::2"} {
		ap := netip.AddrPortFrom(netip.MustParseAddr(dst), 80)
		c, err := server.ServeTCP(ap, func(r netip.AddrPort) string { return r.Addr().String() })
		must(err)
		defer c.Close()
		got, err := client.DialTCP(ap, 3*time.Second)
		if err != nil || (got != "10.1.0.2" && got != "fd01::2") {
			t.Errorf("DialTCP %s = %q, %v", ap, got, err)
		}
	}
}
