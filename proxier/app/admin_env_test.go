package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"

	"github.com/nftproxy/nftproxy/e2e/netkit"
	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/proxier/model"
	"github.com/nftproxy/nftproxy/proxier/model/modeltest"
)

// The CLI kernel tests run the nftproxy binary inside a netkit.RoutedNode
// (the same shape as nftrules' kernel tests):
//
//	client (192.168.60.2, fd60::2) ── node (192.168.60.1, fd60::1) ─┬─ pod0 (10.244.1.10, fd44::10)
//	                                                                 ├─ pod1 (10.244.1.11, fd44::11)
//	                                                                 └─ pod2 (10.244.1.12, fd44::12)
var (
	cliClusterCIDRs = []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd44::/64")}
	cliNode4        = netip.MustParseAddr("192.168.60.1")
	cliNode6        = netip.MustParseAddr("fd60::1")
	cliClient4      = netip.MustParseAddr("192.168.60.2")
	cliClient6      = netip.MustParseAddr("fd60::2")
)

func cliPod4(i int) netip.Addr { return netkit.RoutedPodAddrs(i)[0] }
func cliPod6(i int) netip.Addr { return netkit.RoutedPodAddrs(i)[1] }

type cliNode struct {
	routed       *netkit.RoutedNode
	node, client *netkit.NS
	pods         []*netkit.NS
	rec          *nft.Reconciler
}

// newCLINode builds the topology above with n pods and a reconciler
// programming the node namespace.
func newCLINode(t testing.TB, pods int) *cliNode {
	t.Helper()
	r := netkit.NewRoutedNode(t, "nftcli-", netkit.RoutedNodeAddrs{
		Node:   [2]netip.Addr{cliNode4, cliNode6},
		Client: [2]netip.Addr{cliClient4, cliClient6},
	}, pods)
	rec := nftrules.NewReconciler(nft.Options{NetNSFd: r.Node.FD()})
	t.Cleanup(func() { _ = rec.Close() })
	return &cliNode{routed: r, node: r.Node, client: r.Client, pods: r.Pods, rec: rec}
}

// program makes the node's tables match st, as the proxier would.
func (n *cliNode) program(t testing.TB, st *model.State) {
	t.Helper()
	if _, err := n.rec.Sync(context.Background(), nftrules.Build(st), true); err != nil {
		t.Fatalf("program rules: %v", err)
	}
}

// cliPort returns a service port "ns/name:port" with ready endpoints on
// the given pods (both families), listening on targetPort.
func cliPort(id uint32, name string, proto v1.Protocol, port uint16, clusterIPs string, targetPort uint16, pods ...int) *model.ServicePort {
	sp := modeltest.ServicePort(id, name, proto, port, clusterIPs)
	for _, p := range pods {
		for _, a := range []netip.Addr{cliPod4(p), cliPod6(p)} {
			ep := modeltest.ReadyAt(netip.AddrPortFrom(a, targetPort))
			ep.NodeName = "node" // the test node's pods
			sp.Endpoints = append(sp.Endpoints, ep)
		}
	}
	return sp
}

// helperEnv carries the arguments of a re-executed test binary acting as
// nftproxy (TestHelperNftproxyMain): the CLI tests run the command as a
// separate process inside a namespace without building a binary (the
// checkout may be mid-edit by others) and without a TestMain.
const helperEnv = "NFTPROXY_HELPER_ARGS"

// TestHelperNftproxyMain is not a test: it is nftproxy's main when the
// test binary is re-executed by runCLI.
func TestHelperNftproxyMain(t *testing.T) {
	raw := os.Getenv(helperEnv)
	if raw == "" {
		t.Skip("helper process of the CLI tests")
	}
	var args []string
	if err := json.Unmarshal([]byte(raw), &args); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	cmd := NewCommand()
	cmd.SetArgs(args)
	err := cmd.Execute()
	klog.Flush()
	if err != nil {
		os.Exit(1)
	}
	os.Exit(0)
}

// runCLI runs nftproxy with args inside ns and returns stdout and stderr.
func runCLI(t testing.TB, ns *netkit.NS, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	// --state-dir: never the host's /run/nftproxy (args may override it).
	args = append([]string{"--hostname-override=node", "--state-dir=" + t.TempDir()}, args...)
	raw, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns.Name, os.Args[0], "-test.run=^TestHelperNftproxyMain$")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(raw))
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// mustRunCLI is runCLI failing the test on a non-zero exit.
func mustRunCLI(t testing.TB, ns *netkit.NS, args ...string) string {
	t.Helper()
	out, errOut, err := runCLI(t, ns, args...)
	if err != nil {
		t.Fatalf("nftproxy %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}
