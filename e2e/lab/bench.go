package lab

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/nftproxy/nftproxy/e2e/netkit"
)

// What `make bench-compare` (e2e/benchcompare) needs from the lab.

// DialerIn returns a dial function whose sockets are created inside ns,
// for API clients of the lab that run in the host namespace.
func DialerIn(ns *netkit.NS) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return nsDialer(ns)
}

// EnsureKubeProxy builds upstream kube-proxy (KubernetesVersion, from
// e2e/k8sbin/kube-proxy) into the version cache when missing and returns
// its path. Only `make bench-compare` needs it, so EnsureControlPlane does
// not build it.
func EnsureKubeProxy(ctx context.Context, repoRoot, cacheDir string, log io.Writer) (string, error) {
	dir := versionDir(cacheDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("lab: create cache dir: %w", err)
	}
	unlock, err := lockFile(filepath.Join(dir, ".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	out := filepath.Join(dir, "kube-proxy")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	fmt.Fprintf(log, "lab: building kube-proxy %s into %s (first run only, ~2 min on 2 cores)...\n", KubernetesVersion, dir)
	start := time.Now()
	if err := goBuild(ctx, filepath.Join(repoRoot, "e2e", "k8sbin"), "./kube-proxy", out, k8sLDFlags(), true); err != nil {
		return "", err
	}
	fmt.Fprintf(log, "lab: built kube-proxy in %s\n", time.Since(start).Round(time.Second))
	return out, nil
}
