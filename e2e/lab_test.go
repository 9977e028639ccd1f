package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nftproxy/nftproxy/e2e/lab"
)

// TestLab checks the lab itself, without nftproxy, on both cross-node
// modes: pods reach each other across nodes in both families, the
// control plane builds EndpointSlices from the lab's pods, a packet to a
// ClusterIP that nothing handles dies inside the lab, and Stop leaves no
// namespace behind. Running both modes in sequence also proves that
// several labs work one after another in one test process.
func TestLab(t *testing.T) {
	for _, mode := range modes {
		// startLab makes per-process labs with the default prefix.
		prefix := fmt.Sprintf("nftlab-%d-", os.Getpid())
		t.Run(string(mode), func(t *testing.T) { testLabMode(t, mode) })
		// The subtest's cleanups (lab.Stop) have run by now.
		if left, _ := filepath.Glob("/run/netns/" + prefix + "*"); len(left) > 0 {
			t.Errorf("%s lab left namespaces behind: %v", mode, left)
		}
		if _, err := os.Stat(lab.WorkDir(prefix)); err == nil {
			t.Errorf("%s lab left its work dir %s", mode, lab.WorkDir(prefix))
		}
	}
}

func testLabMode(t *testing.T, mode lab.Mode) {
	l := startLab(t, lab.Options{Mode: mode, Nodes: 2, NoProxy: true})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := l.CreateDeployment(ctx, "web", 2); err != nil {
		t.Fatal(err)
	}
	a, b := l.Pod("web-0"), l.Pod("web-1")
	if a.Node.Name == b.Node.Name {
		t.Fatalf("round-robin placement put both pods on %s", a.Node.Name)
	}
	for _, v6 := range []bool{false, true} {
		dst := netip.AddrPortFrom(b.IP(v6), lab.PodPort)
		ans, err := l.Dial(a.Name, dst, lab.TCP)
		if err != nil {
			t.Fatalf("pod %s on %s -> pod %s on %s (%v): %v", a.Name, a.Node.Name, b.Name, b.Node.Name, dst, err)
		}
		if ans.Pod != b.Name || ans.Source.Addr() != a.IP(v6) {
			t.Errorf("pod-to-pod %v: answer %+v, want %s seeing %v", dst, ans, b.Name, a.IP(v6))
		}
		if ans, err := l.Dial(a.Name, dst, lab.UDP); err != nil || ans.Pod != b.Name {
			t.Errorf("UDP pod-to-pod %v: %+v, %v", dst, ans, err)
		}
	}
	// An external client reaches a node on the underlay.
	ext := netip.AddrPortFrom(a.Node.IPv4, 22)
	if _, err := l.DialWithin(lab.External1, ext, lab.TCP, time.Second); err != nil && !lab.IsRefused(err) {
		t.Errorf("external client -> node %v: want refused (nothing listens), got %v", ext, err)
	}

	svc, err := l.CreateService(ctx, lab.ServiceFor("web", "web", true))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.WaitForEndpoints(ctx, "web", 2); err != nil {
		t.Fatal(err)
	}
	// No proxy runs: the ClusterIP packet must die inside the lab.
	vip := netip.AddrPortFrom(netip.MustParseAddr(svc.Spec.ClusterIPs[0]), lab.SvcPort)
	if ans, err := l.DialWithin(a.Name, vip, lab.TCP, 500*time.Millisecond); err == nil {
		t.Errorf("ClusterIP %v answered by %s without any proxy", vip, ans.Pod)
	}

	// Readiness flips and terminating pods reach the slices.
	if err := l.SetReady(ctx, "web-1", false); err != nil {
		t.Fatal(err)
	}
	if err := l.WaitForEndpoints(ctx, "web", 1); err != nil {
		t.Fatal(err)
	}
	if err := l.SetReady(ctx, "web-1", true); err != nil {
		t.Fatal(err)
	}
	if err := l.WaitForEndpoints(ctx, "web", 2); err != nil {
		t.Fatal(err)
	}
	if err := l.DeletePod(ctx, "web-1", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := l.WaitForEndpoints(ctx, "web", 1); err != nil {
		t.Fatal(err)
	}
	if err := l.ForceDeletePod(ctx, "web-1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Scale(ctx, "web", 3); err != nil {
		t.Fatal(err)
	}
	if err := l.WaitForEndpoints(ctx, "web", 3); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(l.PodsOf("web"), ","); got != "web-0,web-2,web-3" {
		t.Errorf("pods after scale: %s", got)
	}
}
