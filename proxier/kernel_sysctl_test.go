package proxier

import (
	"os"
	"strings"
	"testing"
	"time"

	"k8s.io/utils/clock"

	"github.com/nftproxy/nftproxy/e2e/netkit"
	"github.com/nftproxy/nftproxy/informers"
	"github.com/nftproxy/nftproxy/nftrules/nft/nftfake"
	"github.com/nftproxy/nftproxy/proxier/conntrack"
)

// New sets the conntrack parameters in the namespace it is created in, as
// kube-proxy does before it creates its proxier (the upstream e2e test
// "KubeProxy should set TCP CLOSE_WAIT timeout" reads the result).
func TestKernelNewSetsConntrackSysctls(t *testing.T) {
	node := netkit.NewTestNS(t, "nftk-pxsysctl-node")
	const path = "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_close_wait"
	hostBefore, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	err = node.Do(func() error {
		// MaxPerCore 0: nf_conntrack_max and the global hashsize stay as they are.
		_, err := New(Config{NodeName: "n", SyncPeriod: time.Second,
			ConntrackSysctls: &conntrack.Sysctls{TCPCloseWaitTimeout: 90 * time.Minute}},
			&fakeSource{}, informers.NewTracker(clock.RealClock{}), nftfake.New())
		if err != nil {
			return err
		}
		got, err = os.ReadFile(path)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(got)) != "5400" {
		t.Errorf("close_wait timeout in the node's namespace = %q, want 5400", got)
	}
	if hostAfter, _ := os.ReadFile(path); string(hostAfter) != string(hostBefore) {
		t.Errorf("host close_wait timeout changed from %q to %q", hostBefore, hostAfter)
	}
}
