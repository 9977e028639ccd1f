package lab

import (
	"fmt"
	"io"
	"os"
)

// Mode is how pod traffic crosses between nodes, as the CNI plugins users
// run do it.
type Mode string

const (
	// Routed: each node routes the other nodes' pod CIDRs via their node IPs
	// on the underlay (Flannel host-gw / Calico without encapsulation).
	Routed Mode = "routed"
	// VXLAN: each node has a vxlan device over the underlay with static
	// FDB and neighbour entries per remote node (Flannel's default backend).
	VXLAN Mode = "vxlan"
)

// Options configure a lab. The zero value is usable: 3 routed nodes.
type Options struct {
	// Prefix of every namespace (and the work directory) of this lab.
	// Leftovers with this prefix are removed at Start. Default "nftlab-".
	Prefix string
	// PerProcess names this lab <Prefix><pid>- instead of <Prefix>, so labs
	// of concurrent test processes (two developers running make test) never
	// collide; Start then removes only the leftovers of dead processes.
	// Without it, Start removes any lab with the same prefix (make demo
	// restarting its own lab).
	PerProcess bool
	// Nodes is the number of nodes (default 3, at least 2).
	Nodes int
	// Mode is the cross-node pod network (default Routed).
	Mode Mode
	// RepoRoot is the nftproxy checkout (default: found from the working
	// directory by looking for its go.mod).
	RepoRoot string
	// CacheDir holds the built control-plane binaries, keyed by version
	// (default $XDG_CACHE_HOME/nftproxy-lab or ~/.cache/nftproxy-lab).
	CacheDir string
	// ProxyBinary is a prebuilt nftproxy; default: built from RepoRoot once
	// per process.
	ProxyBinary string
	// ProxyArgs are extra flags for every nftproxy (e.g. --masquerade-all).
	ProxyArgs []string
	// DefaultPacing runs nftproxy without the lab's --min-sync-period
	// (LabMinSyncPeriod), i.e. with the sync pacing users get by default
	// (by cost), for figures meant to be the users' ones.
	DefaultPacing bool
	// NoProxy starts no nftproxy (for checking the lab itself).
	NoProxy bool
	// RealKubelets makes a real-kubelet cluster instead of the namespace
	// lab (see cluster.go): every node runs containerd and kubelet in its
	// own namespaces, kube-scheduler and the default controllers run, and
	// the lab starts no nftproxy process (deploy it as a DaemonSet).
	// Routed mode only; Nodes defaults to 2.
	RealKubelets bool
	// Images are image archives (docker/OCI tarballs) every real node
	// imports into its containerd before kubelet starts.
	Images []string
	// KeepWorkDir keeps logs and certificates after Stop.
	KeepWorkDir bool
	// Log receives progress lines (default os.Stderr).
	Log io.Writer
}

func (o *Options) setDefaults() error {
	if o.Prefix == "" {
		o.Prefix = "nftlab-"
	}
	if o.Nodes == 0 {
		o.Nodes = 3
		if o.RealKubelets {
			o.Nodes = 2
		}
	}
	if o.Nodes < 2 || o.Nodes > 50 {
		return fmt.Errorf("lab: %d nodes: need between 2 and 50", o.Nodes)
	}
	if o.Mode == "" {
		o.Mode = Routed
	}
	if o.Mode != Routed && o.Mode != VXLAN {
		return fmt.Errorf("lab: unknown mode %q (want %q or %q)", o.Mode, Routed, VXLAN)
	}
	if o.RealKubelets && o.Mode != Routed {
		return fmt.Errorf("lab: real-kubelet clusters support mode %q only", Routed)
	}
	if o.Log == nil {
		o.Log = os.Stderr
	}
	if o.RepoRoot == "" {
		root, err := FindRepoRoot()
		if err != nil {
			return err
		}
		o.RepoRoot = root
	}
	if o.CacheDir == "" {
		d, err := DefaultCacheDir()
		if err != nil {
			return err
		}
		o.CacheDir = d
	}
	return nil
}
