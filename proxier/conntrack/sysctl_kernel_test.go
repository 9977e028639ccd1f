package conntrack_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nftproxy/nftproxy/e2e/netkit"
	"github.com/nftproxy/nftproxy/proxier/conntrack"
)

// The conntrack timeouts are per network namespace: kube-proxy's defaults
// applied in a node's namespace change that namespace only. The module's
// hashsize is global, so this test gives it a file of its own instead of
// /sys; nf_conntrack_max is global and read-only outside the initial
// namespace, so Apply may not write it here: it is only raised, and the
// host's value already exceeds kube-proxy's 131072 on the machines these
// tests run on (checked below).
func TestKernelSysctlsInANodeNamespace(t *testing.T) {
	netkit.RequireRoot(t)
	const netfilter = "/proc/sys/net/netfilter/"
	host := func(name string) int {
		t.Helper()
		b, err := os.ReadFile(netfilter + name)
		if err != nil {
			t.Fatal(err)
		}
		v, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	hostMax := host("nf_conntrack_max")
	if hostMax < 131072 {
		t.Fatalf("host nf_conntrack_max %d is below kube-proxy's minimum: this test would need to raise it", hostMax)
	}
	hostBefore := map[string]int{}
	for _, name := range []string{"nf_conntrack_tcp_timeout_close_wait", "nf_conntrack_tcp_timeout_established", "nf_conntrack_max"} {
		hostBefore[name] = host(name)
	}
	fakeSys := t.TempDir()
	hashsize := filepath.Join(fakeSys, "module/nf_conntrack/parameters/hashsize")
	if err := os.MkdirAll(filepath.Dir(hashsize), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hashsize, []byte("65536"), 0o644); err != nil { // above 131072/4: nothing to do
		t.Fatal(err)
	}
	roots := conntrack.SysctlRoots{ProcSys: "/proc/sys", Sys: fakeSys, NumCPU: func() int { return 2 }}

	_ = netkit.CleanupPrefix("nftk-sysctl-")
	node, err := netkit.New("nftk-sysctl-node")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = node.Delete() })

	var first, second []conntrack.SysctlChange
	var closeWait, established int
	var tooBig error
	err = node.Do(func() error {
		var err error
		if first, err = conntrack.KubeProxyDefaults().Apply(roots); err != nil {
			return err
		}
		b, err := os.ReadFile(netfilter + "nf_conntrack_tcp_timeout_close_wait")
		if err != nil {
			return err
		}
		closeWait, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		if b, err = os.ReadFile(netfilter + "nf_conntrack_tcp_timeout_established"); err != nil {
			return err
		}
		established, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		if second, err = conntrack.KubeProxyDefaults().Apply(roots); err != nil {
			return err
		}
		// A max above the global one cannot be set from here (kube-proxy
		// fails the same way; its users set maxPerCore 0 in such setups).
		_, tooBig = conntrack.Sysctls{MaxPerCore: int32(hostMax/2 + 1)}.Apply(roots)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if closeWait != 3600 || established != 86400 {
		t.Errorf("in the namespace: close_wait %d established %d, want 3600 and 86400", closeWait, established)
	}
	if len(first) != 2 {
		t.Errorf("first Apply changed %+v, want the two TCP timeouts", first)
	}
	if len(second) != 0 {
		t.Errorf("second Apply changed %+v, want nothing", second)
	}
	if !errors.Is(tooBig, conntrack.ErrReadOnly) || !strings.Contains(tooBig.Error(), "nf_conntrack_max") {
		t.Errorf("raising nf_conntrack_max in a namespace: err = %v, want ErrReadOnly naming it", tooBig)
	}
	for name, v := range hostBefore {
		if got := host(name); got != v {
			t.Errorf("host %s changed from %d to %d", name, v, got)
		}
	}
	if b, _ := os.ReadFile(hashsize); strings.TrimSpace(string(b)) != "65536" {
		t.Errorf("hashsize written: %q", b)
	}
}
