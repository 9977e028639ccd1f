package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/nftproxy/nftproxy/e2e/netkit"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A real-kubelet cluster (Options.RealKubelets): the lab's topology and
// control plane, plus kube-scheduler and kube-controller-manager with its
// default controllers, and on every node a real kubelet with its own
// containerd, runc and CNI bridge (realnode.go, nodeconfig.go). There is
// no kube-proxy and the lab starts no nftproxy: deploy it as users do.
// Pods are IPv4; the node routes of the routed mode carry pod traffic
// between nodes, and the control plane routes to every pod CIDR (the
// apiserver proxies to pods and Services).

// clusterState is what a real-kubelet cluster adds to a lab.
type clusterState struct {
	nodeTokens  map[string]string // node name -> kubelet bearer token
	schedToken  string
	scheduler   *daemon
	nodes       map[string]*realNode
	hostSysctls map[string]string // host values at start, checked at Stop
}

// ClusterImages are the image archives every real node imports into its
// containerd before kubelet starts (Options.Images).
func (l *Lab) clusterImages() []string { return l.opts.Images }

// clusterAPIServerFlags differ from the namespace lab's: kubelets need
// the Node authorizer, pods their ServiceAccount tokens (the
// ServiceAccount admission plugin), the kubernetes Service its real
// endpoint, and logs/exec reach kubelet at its InternalIP (else the node
// name is resolved through the host's DNS).
var clusterAPIServerFlags = []string{
	"--authorization-mode=Node,RBAC",
	"--kubelet-preferred-address-types=InternalIP",
	"--allow-privileged=true",
}

// clusterKCMFlags run every default controller, with what they need: the
// CA for kube-root-ca.crt ConfigMaps and the service-account key.
func (l *Lab) clusterKCMFlags() []string {
	return []string{
		"--controllers=*",
		"--root-ca-file=" + l.pki.CACert,
		"--service-account-private-key-file=" + l.pki.SAKey,
		"--cluster-name=nftlab",
	}
}

// clusterTokens are the static-token lines of the kubelets (user
// system:node:<name>, group system:nodes, so the Node authorizer applies)
// and of kube-scheduler.
func (l *Lab) clusterTokens() string {
	if l.cluster == nil {
		return ""
	}
	var b strings.Builder
	names := make([]string, 0, len(l.cluster.nodeTokens))
	for n := range l.cluster.nodeTokens {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "%s,system:node:%s,node-%s,\"system:nodes\"\n", l.cluster.nodeTokens[n], n, n)
	}
	fmt.Fprintf(&b, "%s,system:kube-scheduler,kube-scheduler,\n", l.cluster.schedToken)
	return b.String()
}

// clusterPrerequisites checks the node software (Debian packages
// containerd, runc, containernetworking-plugins; iptables for portmap).
func clusterPrerequisites() error {
	var missing []string
	for _, bin := range []string{"containerd", "containerd-shim-runc-v2", "runc", "ctr", "nsenter", "unshare", "iptables"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	for _, plugin := range []string{"bridge", "host-local", "portmap", "loopback"} {
		if _, err := os.Stat(filepath.Join("/usr/lib/cni", plugin)); err != nil {
			missing = append(missing, "/usr/lib/cni/"+plugin)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("lab: real-kubelet cluster needs %s (apt-get install -y containerd runc containernetworking-plugins iptables util-linux)",
			strings.Join(missing, ", "))
	}
	return nil
}

func (l *Lab) bringUpCluster(ctx context.Context) error {
	if err := clusterPrerequisites(); err != nil {
		return err
	}
	l.cluster = &clusterState{nodeTokens: map[string]string{}, nodes: map[string]*realNode{},
		schedToken: randomToken(), hostSysctls: readHostSysctls()}
	if err := l.buildUnderlay(); err != nil {
		return err
	}
	for i := 1; i <= l.opts.Nodes; i++ {
		name := nodeName(i)
		ns, err := l.newNS(name)
		if err != nil {
			return err
		}
		a, err := l.attachUnderlay(ns, name, nodeHostBase+i)
		if err != nil {
			return err
		}
		n := &Node{Name: name, Index: i, Zone: zoneOf(i), NS: ns, IPv4: a.V4, IPv6: a.V6, usedPods: map[int]bool{}}
		n.PodCIDRv4, n.PodCIDRv6 = podCIDRs(i)
		n.PodGWv4, n.PodGWv6 = nth(n.PodCIDRv4, 1), nth(n.PodCIDRv6, 1)
		if err := ns.EnableForwarding(); err != nil {
			return fmt.Errorf("lab: forwarding on %s: %w", name, err)
		}
		l.nodes = append(l.nodes, n)
		l.cluster.nodeTokens[name] = randomToken()
	}
	if err := l.linkNodes(); err != nil {
		return err
	}
	if err := l.startControlPlane(ctx); err != nil {
		return err
	}
	for _, n := range l.nodes {
		if err := l.cp.AddRoute(n.PodCIDRv4, n.IPv4); err != nil {
			return fmt.Errorf("lab: route control plane -> %s pods: %w", n.Name, err)
		}
	}
	if err := l.startScheduler(ctx); err != nil {
		return err
	}
	for _, n := range l.nodes {
		if err := l.startRealNode(ctx, n, l.cluster.nodeTokens[n.Name], l.clusterImages()); err != nil {
			return err
		}
	}
	return l.waitNodesReady(ctx, 120*time.Second)
}

// startScheduler runs kube-scheduler in the control-plane namespace.
func (l *Lab) startScheduler(ctx context.Context) error {
	kc := filepath.Join(l.work, "kube-scheduler.kubeconfig")
	if err := writeKubeconfig(kc, l.pki.caPEM, l.cluster.schedToken); err != nil {
		return err
	}
	d, err := l.startDaemon(l.cp, "kube-scheduler", l.bins.Scheduler,
		"--kubeconfig="+kc, "--leader-elect=false", "--secure-port=0", "--v=1")
	if err != nil {
		return err
	}
	l.cluster.scheduler = d
	// Give it a moment to fail on bad flags before the nodes start.
	select {
	case <-d.Proc.Done():
		return fmt.Errorf("lab: kube-scheduler exited (%v); log tail:\n%s", d.Proc.Wait(), tailFile(d.Proc.LogPath, 30))
	case <-time.After(2 * time.Second):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waitNodesReady waits until every node's kubelet has registered its Node
// and reports it Ready.
func (l *Lab) waitNodesReady(ctx context.Context, timeout time.Duration) error {
	var watch []*daemon
	for _, rn := range l.cluster.nodes {
		watch = append(watch, rn.kubelet, rn.containerd)
	}
	start := time.Now()
	err := waitUntil(ctx, timeout, "every node Ready", func(ctx context.Context) (bool, error) {
		for _, n := range l.nodes {
			node, err := l.client.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			if !nodeReady(node) {
				return false, fmt.Errorf("node %s not Ready", n.Name)
			}
		}
		return true, nil
	}, watch...)
	if err == nil {
		fmt.Fprintf(l.opts.Log, "lab: %d kubelet nodes Ready in %s\n", len(l.nodes), time.Since(start).Round(10*time.Millisecond))
	}
	return err
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// hostConntrackGlobals are the host-wide conntrack settings a proxy's
// privileged init container (nftproxy's or kube-proxy's defaults) would
// raise if they were below nf_conntrack_max = 131072 (2 CPUs) and
// hashsize = max/4; the check at Stop proves it did not.
var hostConntrackGlobals = []string{"net/netfilter/nf_conntrack_max", "/sys/module/nf_conntrack/parameters/hashsize"}

// readHostSysctls reads the host-wide sysctls kubelet or a proxy would
// change (keys relative to /proc/sys, or absolute paths).
func readHostSysctls() map[string]string {
	m := map[string]string{}
	for k := range kubeletSysctls {
		readHostSysctl(m, k)
	}
	for _, k := range hostConntrackGlobals {
		readHostSysctl(m, k)
	}
	return m
}

func readHostSysctl(m map[string]string, k string) {
	path := k
	if !filepath.IsAbs(k) {
		path = "/proc/sys/" + k
	}
	if b, err := os.ReadFile(path); err == nil {
		m[k] = strings.TrimSpace(string(b))
	}
}

// checkHostSysctls reports host sysctls that differ from their values
// at start (read from the host's mount namespace: this process is not in
// a node's).
func (l *Lab) checkHostSysctls() error {
	if l.cluster == nil {
		return nil
	}
	var errs []error
	now := readHostSysctls()
	for k, was := range l.cluster.hostSysctls {
		if now[k] != was {
			errs = append(errs, fmt.Errorf("lab: host sysctl %s changed from %s to %s during the run", k, was, now[k]))
		}
	}
	return errors.Join(errs...)
}

// Kubectl runs the lab's kubectl as cluster admin inside the
// control-plane namespace (the apiserver is only reachable there), with
// stdin if given, and returns its combined output.
func (l *Lab) Kubectl(ctx context.Context, stdin string, args ...string) ([]byte, error) {
	kc, err := l.AdminKubeconfig()
	if err != nil {
		return nil, err
	}
	full := append([]string{"netns", "exec", l.cp.Name, l.bins.Kubectl, "--kubeconfig=" + kc}, args...)
	cmd := exec.CommandContext(ctx, "ip", full...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("lab: kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

// ControlPlaneNS is the control-plane namespace (clients of the lab, such
// as e2e.test, run there).
func (l *Lab) ControlPlaneNS() *netkit.NS { return l.cp }
