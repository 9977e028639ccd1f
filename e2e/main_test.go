// Package e2e runs nftproxy on a real multi-node lab (see e2e/lab): a real
// kube-apiserver and EndpointSlice controller, nodes and pods as network
// namespaces, and the real nftproxy binary on every node.
//
// Prerequisites are checked up front and a missing one FAILS the run with
// a clear message instead of skipping: root, `ip` and `nft`, and Go with
// access to the module proxy for the first build of the control plane
// (~6 min on 2 cores; cached afterwards under ~/.cache/nftproxy-lab).
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/nftproxy/nftproxy/e2e/lab"
)

func TestMain(m *testing.M) {
	if err := prerequisites(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: prerequisite missing: %v\n", err)
		os.Exit(1)
	}
	// Build the control plane once before any test starts its clock, so
	// the first cold build shows its progress lines and no test times out
	// waiting for it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	root, err := lab.FindRepoRoot()
	if err == nil {
		var cache string
		if cache, err = lab.DefaultCacheDir(); err == nil {
			_, err = lab.EnsureControlPlane(ctx, root, cache, os.Stderr)
		}
	}
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: building the control plane: %v\n", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func prerequisites() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("the e2e lab needs root (network namespaces, nftables); run as root, e.g. sudo make test")
	}
	for _, bin := range []string{"ip", "nft", "go"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s not found in PATH: %w", bin, err)
		}
	}
	return nil
}

// modes are the cross-node networks every cross-node suite runs on.
var modes = []lab.Mode{lab.Routed, lab.VXLAN}

// startLab starts a lab for t (stopped in t's cleanup; on failure every
// node's ruleset and nftproxy log tail are logged first).
func startLab(t *testing.T, opts lab.Options) *lab.Lab {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	opts.Log = testLog{t}
	// Several developers (or CI jobs) may run the suite at once.
	opts.PerProcess = true
	l, err := lab.Start(ctx, opts)
	if err != nil {
		t.Fatalf("start %s lab: %v", opts.Mode, err)
	}
	t.Cleanup(func() {
		if err := l.Stop(); err != nil {
			t.Errorf("stop lab: %v", err)
		}
	})
	l.DumpOnFailure(t)
	return l
}

// testLog sends lab progress lines to the test log.
type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Logf("%s", p)
	return len(p), nil
}

// retryFor retries fn every 20 ms until it succeeds or timeout passes,
// returning the last error.
func retryFor(timeout time.Duration, fn func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}
