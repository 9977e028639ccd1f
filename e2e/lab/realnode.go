package lab

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// A real node runs three processes of the lab, all in the node's network
// namespace (never the host's: kubelet, containerd and CNI write
// nftables/iptables rules, bridges and routes where they run):
//
//   - a holder (`unshare --mount --propagation slave`) that owns the
//     node's private mount namespace: it bind-mounts the node's own
//     directories over the paths kubelet and containerd hard-code, and
//     files holding kubelet's wanted values over the host-wide sysctls
//     kubelet would otherwise change, then sleeps;
//   - containerd and kubelet, entered into that mount namespace with
//     nsenter (which execs in place: the recorded PID is the daemon's).
//
// Slave propagation: host mounts reach the node, the node's mounts never
// reach the host, and they all disappear with the namespace.

// realNode is the lab's record of one kubelet node.
type realNode struct {
	paths                       nodePaths
	holder, containerd, kubelet *daemon
}

// hostMountPoints are the paths bind-mounted per node (a directory of the
// node's below its work dir each). kubelet and containerd use them
// whatever their configuration says (device-plugin and pod-resources
// sockets, container log links, shim sockets, CNI result cache). They are
// created empty on the host when missing and stay empty there.
func hostMountPoints(p nodePaths) [][2]string {
	return [][2]string{
		{p.varLibKubelet, "/var/lib/kubelet"},
		{filepath.Join(p.varLog, "pods"), "/var/log/pods"},
		{filepath.Join(p.varLog, "containers"), "/var/log/containers"},
		{p.runContainerd, "/run/containerd"},
		{p.varLibCN, "/var/lib/cni"},
	}
}

// holderScript makes the node's mounts and then keeps the namespace.
func holderScript(p nodePaths) string {
	var b strings.Builder
	b.WriteString("set -e\n")
	for _, m := range hostMountPoints(p) {
		fmt.Fprintf(&b, "mount --bind %q %q\n", m[0], m[1])
	}
	for _, k := range slices.Sorted(maps.Keys(kubeletSysctls)) {
		fmt.Fprintf(&b, "mount --bind %q %q\n", filepath.Join(p.sysctlDir, strings.ReplaceAll(k, "/", ".")), "/proc/sys/"+k)
	}
	fmt.Fprintf(&b, "touch %q\nexec sleep infinity\n", filepath.Join(p.dir, "mounts.ready"))
	return b.String()
}

// startRealNode brings up containerd and kubelet on n and imports the
// image archives into its containerd.
func (l *Lab) startRealNode(ctx context.Context, n *Node, token string, images []string) error {
	p := l.nodePaths(n)
	rn := &realNode{paths: p}
	l.mu.Lock()
	l.cluster.nodes[n.Name] = rn
	l.mu.Unlock()
	if err := l.writeNodeFiles(n, p, token); err != nil {
		return err
	}
	for _, m := range hostMountPoints(p) {
		if err := os.MkdirAll(m[1], 0o755); err != nil {
			return fmt.Errorf("lab: mount point %s: %w", m[1], err)
		}
	}
	if err := makeCgroupRoot(p.cgroupRoot); err != nil {
		return err
	}
	var err error
	rn.holder, err = l.startDaemon(n.NS, "mountns-"+n.Name, "unshare", "--mount", "--propagation", "slave",
		"sh", "-c", holderScript(p))
	if err != nil {
		return err
	}
	ready := filepath.Join(p.dir, "mounts.ready")
	if err := waitUntil(ctx, 10*time.Second, "mount namespace of "+n.Name, func(context.Context) (bool, error) {
		_, err := os.Stat(ready)
		return err == nil, nil
	}, rn.holder); err != nil {
		return err
	}
	enter := []string{"nsenter", fmt.Sprintf("--target=%d", rn.holder.Proc.PID), "--mount", "--"}
	rn.containerd, err = l.startDaemon(n.NS, "containerd-"+n.Name, append(enter, "containerd", "--config", p.containerdConfig)...)
	if err != nil {
		return err
	}
	if err := waitUntil(ctx, 30*time.Second, "containerd on "+n.Name, func(ctx context.Context) (bool, error) {
		_, err := l.ctr(ctx, n, "version")
		return err == nil, err
	}, rn.containerd); err != nil {
		return err
	}
	for _, img := range images {
		start := time.Now()
		if _, err := l.ctr(ctx, n, "images", "import", img); err != nil {
			return err
		}
		fmt.Fprintf(l.opts.Log, "lab: %s: imported %s in %s\n", n.Name, filepath.Base(img), time.Since(start).Round(10*time.Millisecond))
	}
	rn.kubelet, err = l.startDaemon(n.NS, "kubelet-"+n.Name, append(enter, l.bins.Kubelet,
		"--config="+p.kubeletConfig,
		"--kubeconfig="+p.kubeconfig,
		"--hostname-override="+n.Name,
		"--node-ip="+n.IPv4.String(),
		"--node-labels=topology.kubernetes.io/zone="+n.Zone,
		"--v=2")...)
	return err
}

// ctr runs containerd's client against n's containerd, in the k8s.io
// namespace the CRI plugin uses. The socket is a file of the lab: no
// network is involved.
func (l *Lab) ctr(ctx context.Context, n *Node, args ...string) ([]byte, error) {
	p := l.nodePaths(n)
	full := append([]string{"--address", p.containerdSock, "--namespace", "k8s.io"}, args...)
	out, err := exec.CommandContext(ctx, "ctr", full...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("lab: ctr %s on %s: %w: %s", strings.Join(args, " "), n.Name, err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// stopRealNodes stops every node's kubelet and containerd, then kills
// the pods left in the node's cgroups (they live in pod network
// namespaces the namespace cleanup does not see) and removes the
// cgroups. The holders go with the rest of the daemons.
func (l *Lab) stopRealNodes() []error {
	if l.cluster == nil {
		return nil
	}
	var errs []error
	for _, n := range l.nodes {
		rn := l.cluster.nodes[n.Name]
		if rn == nil {
			continue
		}
		for _, d := range []*daemon{rn.kubelet, rn.containerd} {
			if d != nil {
				if err := l.stopDaemon(d, 10*time.Second); err != nil {
					errs = append(errs, err)
				}
			}
		}
		if err := killCgroup(rn.paths.cgroupRoot); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}
