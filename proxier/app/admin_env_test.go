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
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/nftproxy/nftproxy/e2e/netkit"
	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// The CLI kernel tests run the nftproxy binary inside network namespaces
// that form a small node (the same shape as nftrules' kernel tests):
//
//	client (192.168.60.2, fd60::2) ── node (192.168.60.1, fd60::1) ─┬─ pod0 (10.244.1.10, fd44::10)
//	                                                                 ├─ pod1 (10.244.1.11, fd44::11)
//	                                                                 └─ pod2 (10.244.1.12, fd44::12)
//
// The client is outside the cluster CIDRs 10.244.0.0/16 and fd44::/64.
var (
	cliClusterCIDRs = []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd44::/64")}
	cliNode4        = netip.MustParseAddr("192.168.60.1")
	cliNode6        = netip.MustParseAddr("fd60::1")
	cliClient4      = netip.MustParseAddr("192.168.60.2")
	cliClient6      = netip.MustParseAddr("fd60::2")
	cliPodGW4       = netip.MustParseAddr("10.244.1.1")
	cliPodGW6       = netip.MustParseAddr("fd44::1")
)

func cliPod4(i int) netip.Addr { return netip.MustParseAddr(fmt.Sprintf("10.244.1.%d", 10+i)) }
func cliPod6(i int) netip.Addr { return netip.MustParseAddr(fmt.Sprintf("fd44::%d", 10+i)) }

type cliNode struct {
	node, client *netkit.NS
	pods         []*netkit.NS
	rec          *nft.Reconciler
}

// newNamespace creates a namespace removed when the test ends.
func newNamespace(t testing.TB, role string) *netkit.NS {
	t.Helper()
	id := strings.NewReplacer("/", "-", "_", "").Replace(t.Name())
	if len(id) > 10 {
		id = id[len(id)-10:]
	}
	name := "nftcli-" + id + "-" + role
	_ = netkit.CleanupPrefix(name)
	ns, err := netkit.New(name)
	if err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	if os.Getenv("KEEP") == "" {
		t.Cleanup(func() { _ = ns.Delete() })
	}
	return ns
}

// newCLINode builds the topology above with n pods and a reconciler
// programming the node namespace.
func newCLINode(t testing.TB, pods int) *cliNode {
	t.Helper()
	netkit.RequireRoot(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	n := &cliNode{node: newNamespace(t, "node"), client: newNamespace(t, "client")}
	must(n.node.EnableForwarding())
	must(netkit.Link(n.node, "eth0", []netip.Prefix{netip.PrefixFrom(cliNode4, 24), netip.PrefixFrom(cliNode6, 64)},
		n.client, "eth0", []netip.Prefix{netip.PrefixFrom(cliClient4, 24), netip.PrefixFrom(cliClient6, 64)}))
	must(n.client.AddDefaultRoute(cliNode4))
	must(n.client.AddDefaultRoute(cliNode6))
	must(n.node.AddDefaultRoute(cliClient4))
	must(n.node.AddDefaultRoute(cliClient6))
	for i := 0; i < pods; i++ {
		pod := newNamespace(t, fmt.Sprintf("pod%d", i))
		must(netkit.ConnectRoutedPod(n.node, fmt.Sprintf("veth%d", i), pod,
			[]netip.Addr{cliPod4(i), cliPod6(i)}, []netip.Addr{cliPodGW4, cliPodGW6}))
		n.pods = append(n.pods, pod)
	}
	rec := nftrules.NewReconciler(nft.Options{NetNSFd: n.node.FD()})
	t.Cleanup(func() { _ = rec.Close() })
	n.rec = rec
	return n
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
	nsName, portName, _ := strings.Cut(name, ":")
	ns, n, _ := strings.Cut(nsName, "/")
	sp := &model.ServicePort{
		Name:     model.ServicePortName{NamespacedName: types.NamespacedName{Namespace: ns, Name: n}, Port: portName, Protocol: proto},
		ID:       id,
		Port:     port,
		Protocol: proto,
	}
	for _, ip := range strings.Split(clusterIPs, ",") {
		sp.ClusterIPs = append(sp.ClusterIPs, netip.MustParseAddr(ip))
	}
	for _, p := range pods {
		for _, a := range []netip.Addr{cliPod4(p), cliPod6(p)} {
			sp.Endpoints = append(sp.Endpoints, model.Endpoint{Addr: a, Port: targetPort, Ready: true, Serving: true})
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
