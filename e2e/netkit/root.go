package netkit

import (
	"fmt"
	"os"
	"testing"
)

// Environment variables read by RequireRoot.
const (
	// EnvRequireRoot=1 turns a kernel test's root skip into a failure;
	// CI=true does the same.
	EnvRequireRoot = "NFTPROXY_REQUIRE_ROOT"
	// EnvKernelTestLog names a file to which every kernel test appends
	// "ran NAME" or "skipped NAME", so that `make test` can say how many
	// ran.
	EnvKernelTestLog = "NFTPROXY_KERNEL_TEST_LOG"
)

// RequireRoot is the first call of every test or benchmark that needs the
// kernel (network namespaces, nftables, conntrack). Without root it skips
// the test, except under CI=true or NFTPROXY_REQUIRE_ROOT=1, where it fails
// it: a kernel test that could not run must never read as a pass.
func RequireRoot(t testing.TB) {
	t.Helper()
	if euid() == 0 {
		logKernelTest("ran", t.Name())
		return
	}
	const why = "needs root (network namespaces, nftables, conntrack)"
	if os.Getenv("CI") == "true" || os.Getenv(EnvRequireRoot) == "1" {
		logKernelTest("failed", t.Name())
		t.Fatalf("kernel test %s but runs as uid %d; CI=true or %s=1 forbids skipping it", why, euid(), EnvRequireRoot)
		return
	}
	logKernelTest("skipped", t.Name())
	t.Skipf("SKIPPED: kernel test %s; CI runs it as root", why)
}

// euid is os.Geteuid, replaced in tests.
var euid = os.Geteuid

func logKernelTest(outcome, name string) {
	path := os.Getenv(EnvKernelTestLog)
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %s\n", outcome, name)
}
