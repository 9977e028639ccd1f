package lab

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Configuration files of a real-kubelet node: containerd's, the CNI
// network's and kubelet's. Everything a node writes lives under its
// directory in the lab's work dir; the few paths kubelet and containerd
// hard-code are bind mounts inside the node's private mount namespace
// (see realnode.go).

// PauseImage is containerd's sandbox image: the pause image the e2e test
// binary of KubernetesVersion names, built locally (e2e/images).
const PauseImage = "registry.k8s.io/pause:3.10.2"

// ClusterDNSIP is the kube-dns Service's ClusterIP (kubelet's clusterDNS).
var ClusterDNSIP = nth(ServiceCIDRV4, 10)

// ClusterDomain is the cluster's DNS domain.
const ClusterDomain = "cluster.local"

// nodePaths are the files and directories of one real node.
type nodePaths struct {
	dir                     string // <work>/nodes/<name>
	containerdConfig        string
	containerdSock          string
	kubeletConfig           string
	kubeconfig              string
	cniConfDir, cniIPAMDir  string
	cgroupRoot              string // absolute cgroup path
	varLibKubelet, varLog   string // bind-mounted over /var/lib/kubelet, /var/log/{pods,containers}
	runContainerd, varLibCN string // over /run/containerd, /var/lib/cni
	sysctlDir               string // files bind-mounted over /proc/sys entries
}

func (l *Lab) nodePaths(n *Node) nodePaths {
	d := filepath.Join(l.work, "nodes", n.Name)
	return nodePaths{
		dir:              d,
		containerdConfig: filepath.Join(d, "containerd.toml"),
		containerdSock:   filepath.Join(d, "containerd.sock"),
		kubeletConfig:    filepath.Join(d, "kubelet.yaml"),
		kubeconfig:       filepath.Join(d, "kubelet.kubeconfig"),
		cniConfDir:       filepath.Join(d, "cni", "net.d"),
		cniIPAMDir:       filepath.Join(d, "cni", "ipam"),
		cgroupRoot:       filepath.Join(ownCgroupBase(), l.opts.Prefix+n.Name),
		varLibKubelet:    filepath.Join(d, "var-lib-kubelet"),
		varLog:           filepath.Join(d, "var-log"),
		runContainerd:    filepath.Join(d, "run-containerd"),
		varLibCN:         filepath.Join(d, "var-lib-cni"),
		sysctlDir:        filepath.Join(d, "sysctl"),
	}
}

// containerdConfig is containerd 1.6's configuration for a node: its own
// root, state, sockets, runc root and CNI directories, and the two
// adjustments these hosts need (no CAP_SYS_RESOURCE: restrict the OOM
// score adjustment; no registry: the local pause image).
func containerdConfig(p nodePaths) string {
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	return strings.Join([]string{
		`version = 2`,
		`root = ` + q(filepath.Join(p.dir, "containerd", "root")),
		`state = ` + q(filepath.Join(p.dir, "containerd", "state")),
		`oom_score = 0`,
		// Snapshotters that only probe the host and are not used.
		`disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]`,
		`[grpc]`,
		`  address = ` + q(p.containerdSock),
		`[ttrpc]`,
		`  address = ` + q(p.containerdSock+".ttrpc"),
		`[debug]`,
		`  level = "info"`,
		`[plugins."io.containerd.internal.v1.opt"]`,
		`  path = ` + q(filepath.Join(p.dir, "containerd", "opt")),
		`[plugins."io.containerd.grpc.v1.cri"]`,
		`  sandbox_image = ` + q(PauseImage),
		`  restrict_oom_score_adj = true`,
		`  netns_mounts_under_state_dir = true`,
		`  enable_selinux = false`,
		`  [plugins."io.containerd.grpc.v1.cri".containerd]`,
		`    snapshotter = "overlayfs"`,
		`    default_runtime_name = "runc"`,
		`    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]`,
		`      runtime_type = "io.containerd.runc.v2"`,
		`      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]`,
		`        SystemdCgroup = false`,
		`        Root = ` + q(filepath.Join(p.dir, "runc")),
		`  [plugins."io.containerd.grpc.v1.cri".cni]`,
		`    bin_dir = "/usr/lib/cni"`,
		`    conf_dir = ` + q(p.cniConfDir),
		`    max_conf_num = 1`,
		``,
	}, "\n")
}

// cniConfig is the node's pod network: a bridge (cni0, the gateway of the
// node's pod CIDR, hairpin on for pods reaching themselves through a
// Service) with host-local addresses, and portmap for hostPort pods. No
// masquerade: the lab's routes carry pod addresses between nodes and to
// the control plane, as in the routed lab mode.
func cniConfig(n *Node, p nodePaths) ([]byte, error) {
	conf := map[string]any{
		"cniVersion": "0.4.0",
		"name":       "nftlab",
		"plugins": []any{
			map[string]any{
				"type": "bridge", "bridge": podBridge, "isGateway": true, "ipMasq": false, "hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"dataDir": p.cniIPAMDir,
					"ranges":  [][]map[string]string{{{"subnet": n.PodCIDRv4.String(), "gateway": n.PodGWv4.String()}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	return json.MarshalIndent(conf, "", "  ")
}

// kubeletConfig is the node's KubeletConfiguration. Per node: cgroupRoot
// (shared, each kubelet kills the other's pods), the runtime endpoint and
// the plugin dir; the rest adapts kubelet to these hosts: cgroup v1
// (failCgroupV1: false), cgroupfs (no systemd), no image garbage
// collection (images are imported, never pulled: a collected image could
// not come back) and eviction only when really out of space.
func kubeletConfig(p nodePaths, resolvConf string) string {
	return strings.Join([]string{
		`apiVersion: kubelet.config.k8s.io/v1beta1`,
		`kind: KubeletConfiguration`,
		`failCgroupV1: false`,
		`cgroupDriver: cgroupfs`,
		`cgroupRoot: ` + p.cgroupRoot,
		`containerRuntimeEndpoint: unix://` + p.containerdSock,
		`volumePluginDir: ` + filepath.Join(p.dir, "volume-plugins"),
		`podLogsDir: /var/log/pods`,
		`resolvConf: ` + resolvConf,
		`clusterDNS: [` + ClusterDNSIP.String() + `]`,
		`clusterDomain: ` + ClusterDomain,
		// The apiserver reaches kubelet (logs, exec, port-forward) without
		// a client certificate; only lab namespaces can reach this port.
		`authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}`,
		`authorization: {mode: AlwaysAllow}`,
		`readOnlyPort: 0`,
		`healthzBindAddress: 127.0.0.1`,
		`failSwapOn: false`,
		`protectKernelDefaults: false`,
		`serializeImagePulls: false`,
		`imageGCHighThresholdPercent: 100`,
		`imageGCLowThresholdPercent: 99`,
		`evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}`,
		`rotateCertificates: false`,
		``,
	}, "\n")
}

// kubeletSysctls are the host-wide sysctls kubelet sets at start (when
// they differ) and the values it wants. Inside the node's mount namespace
// a file holding that value is bind-mounted over each, so kubelet finds
// nothing to change and the host keeps its own values.
var kubeletSysctls = map[string]string{
	"vm/overcommit_memory":      "1",
	"vm/panic_on_oom":           "0",
	"kernel/panic":              "10",
	"kernel/panic_on_oops":      "1",
	"kernel/keys/root_maxkeys":  "1000000",
	"kernel/keys/root_maxbytes": "25000000",
}

// writeNodeFiles writes every configuration file of node n.
func (l *Lab) writeNodeFiles(n *Node, p nodePaths, token string) error {
	for _, d := range []string{p.cniConfDir, p.cniIPAMDir, p.varLibKubelet, filepath.Join(p.varLog, "pods"),
		filepath.Join(p.varLog, "containers"), p.runContainerd, p.varLibCN, p.sysctlDir, filepath.Join(p.dir, "volume-plugins")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("lab: node dir: %w", err)
		}
	}
	cni, err := cniConfig(n, p)
	if err != nil {
		return err
	}
	resolv := filepath.Join(l.work, "resolv.conf")
	files := map[string][]byte{
		p.containerdConfig: []byte(containerdConfig(p)),
		filepath.Join(p.cniConfDir, "10-nftlab.conflist"): cni,
		p.kubeletConfig: []byte(kubeletConfig(p, resolv)),
		// The node's upstream resolver is the underlay's dead end: names
		// outside the cluster fail inside the lab, nothing is sent out.
		resolv: []byte("nameserver " + underlayAddr(deadEndHost).V4.String() + "\n"),
	}
	for k, v := range kubeletSysctls {
		files[filepath.Join(p.sysctlDir, strings.ReplaceAll(k, "/", "."))] = []byte(v + "\n")
	}
	for path, b := range files {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			return fmt.Errorf("lab: write %s: %w", path, err)
		}
	}
	return writeKubeconfig(p.kubeconfig, l.pki.caPEM, token)
}
