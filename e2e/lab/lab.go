package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nftproxy/nftproxy/e2e/netkit"
	"k8s.io/client-go/kubernetes"
)

// Lab is a running lab. Its methods are safe for concurrent use.
type Lab struct {
	opts Options
	work string // logs, certificates, kubeconfigs, state file
	bins Binaries

	mu         sync.Mutex
	saveMu     sync.Mutex   // serialises state file writes
	daemons    []*daemon    // in start order
	namespaces []*netkit.NS // in creation order
	stopped    bool
	stopDone   chan struct{} // closed when the first Stop has finished

	underlay, cp *netkit.NS
	nodes        []*Node
	externals    []*netkit.NS
	pods         map[string]*Pod
	deployments  map[string]*Deployment

	pki                  *pki
	adminToken, kcmToken string
	apiserver, kcm       *daemon
	cluster              *clusterState // real-kubelet clusters only
	client               kubernetes.Interface
	proxyKubeconfig      string
}

// External client namespaces: on the underlay, outside every cluster CIDR.
const (
	External1 = "ext-1"
	External2 = "ext-2" // a second client, e.g. for source-range tests
)

// Start builds what is missing, removes leftovers of a crashed lab with
// the same prefix, and brings a lab up: topology, control plane, Node
// objects, and nftproxy on every node (unless opts.NoProxy). On error
// everything started so far is torn down again.
func Start(ctx context.Context, opts Options) (*Lab, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("lab: needs root (network namespaces, nftables)")
	}
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	if opts.PerProcess {
		opts.Prefix = fmt.Sprintf("%s%d-", opts.Prefix, os.Getpid())
	}
	begin := time.Now()
	ensure := EnsureControlPlane
	if opts.RealKubelets {
		ensure = EnsureClusterBinaries
		opts.NoProxy = true // nftproxy comes as a DaemonSet
	}
	bins, err := ensure(ctx, opts.RepoRoot, opts.CacheDir, opts.Log)
	if err != nil {
		return nil, err
	}
	bins.NFTProxy, bins.TestServer, err = EnsureProjectBinaries(ctx, opts.RepoRoot, opts.ProxyBinary, !opts.NoProxy)
	if err != nil {
		return nil, err
	}
	l := &Lab{opts: opts, bins: bins, pods: map[string]*Pod{}, deployments: map[string]*Deployment{},
		work: WorkDir(opts.Prefix)}
	if err := removeLeftovers(opts.Prefix, opts.PerProcess); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(l.work, "logs"), 0o755); err != nil {
		return nil, fmt.Errorf("lab: work dir: %w", err)
	}
	register(l)
	up := l.bringUp
	if opts.RealKubelets {
		up = l.bringUpCluster
	}
	if err := up(ctx); err != nil {
		if serr := l.Stop(); serr != nil {
			err = errors.Join(err, serr)
		}
		return nil, err
	}
	fmt.Fprintf(opts.Log, "lab: %d %s nodes up in %s (work dir %s)\n", opts.Nodes, opts.Mode,
		time.Since(begin).Round(10*time.Millisecond), l.work)
	return l, nil
}

func (l *Lab) bringUp(ctx context.Context) error {
	if err := l.buildUnderlay(); err != nil {
		return err
	}
	for i := 1; i <= l.opts.Nodes; i++ {
		n, err := l.buildNode(i)
		if err != nil {
			return err
		}
		l.nodes = append(l.nodes, n)
	}
	if err := l.linkNodes(); err != nil {
		return err
	}
	for i, name := range []string{External1, External2} {
		ns, err := l.newNS(name)
		if err != nil {
			return err
		}
		if _, err := l.attachUnderlay(ns, name, extHostBase+i); err != nil {
			return err
		}
		l.externals = append(l.externals, ns)
	}
	if err := l.startControlPlane(ctx); err != nil {
		return err
	}
	if err := l.createNodeObjects(ctx); err != nil {
		return err
	}
	if l.opts.NoProxy {
		return nil
	}
	if err := l.setupProxyAccess(ctx); err != nil {
		return err
	}
	for _, n := range l.nodes {
		if err := l.StartProxy(ctx, n.Name); err != nil {
			return err
		}
	}
	return nil
}

// newNS creates the lab namespace <prefix><role> and records it for Stop.
func (l *Lab) newNS(role string) (*netkit.NS, error) {
	ns, err := netkit.New(l.opts.Prefix + role)
	if err != nil {
		return nil, fmt.Errorf("lab: namespace %s: %w", role, err)
	}
	l.mu.Lock()
	l.namespaces = append(l.namespaces, ns)
	l.mu.Unlock()
	l.saveState()
	return ns, nil
}

// Stop stops every process of the lab by PID (clients first, the
// apiserver before etcd), deletes its namespaces and, unless KeepWorkDir,
// its work directory. It is idempotent.
func (l *Lab) Stop() error {
	l.mu.Lock()
	if l.stopped {
		// Another Stop runs (the signal handler's, while the program's
		// own deferred Stop is reached): wait for it, or the program may
		// exit with etcd and the namespaces still there.
		done := l.stopDone
		l.mu.Unlock()
		<-done
		return nil
	}
	l.stopped = true
	l.stopDone = make(chan struct{})
	defer close(l.stopDone)
	daemons := append([]*daemon(nil), l.daemons...)
	spaces := append([]*netkit.NS(nil), l.namespaces...)
	l.mu.Unlock()
	// Real nodes first: kubelet and containerd, then their pods.
	errs := l.stopRealNodes()
	// Reverse start order: pods and proxies, then controller manager,
	// apiserver (which needs etcd to shut down cleanly), etcd.
	for i := len(daemons) - 1; i >= 0; i-- {
		if err := l.stopDaemon(daemons[i], 5*time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	for i := len(spaces) - 1; i >= 0; i-- {
		if err := spaces[i].Delete(); err != nil {
			errs = append(errs, fmt.Errorf("lab: delete namespace: %w", err))
		}
	}
	// Safety net for anything created outside the records above.
	if err := netkit.CleanupPrefix(l.opts.Prefix); err != nil {
		errs = append(errs, err)
	}
	if err := l.checkHostSysctls(); err != nil {
		errs = append(errs, err)
	}
	unregister(l)
	if !l.opts.KeepWorkDir && len(errs) == 0 {
		if err := os.RemoveAll(l.work); err != nil {
			errs = append(errs, fmt.Errorf("lab: remove work dir: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Client is a Kubernetes client with cluster-admin rights (static token),
// reaching the apiserver through the lab network.
func (l *Lab) Client() kubernetes.Interface { return l.client }

// Nodes returns the lab's nodes in order.
func (l *Lab) Nodes() []*Node { return l.nodes }

// Node returns the node with the given name, or nil.
func (l *Lab) Node(name string) *Node {
	for _, n := range l.nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Prefix is the prefix of the lab's namespace names (with the pid for
// PerProcess labs).
func (l *Lab) Prefix() string { return l.opts.Prefix }

// Mode is the lab's cross-node mode.
func (l *Lab) Mode() Mode { return l.opts.Mode }

// WorkDirPath is where logs (logs/*.log), kubeconfigs and certificates are.
func (l *Lab) WorkDirPath() string { return l.work }

// AdminKubeconfig writes (once) and returns a cluster-admin kubeconfig,
// usable from inside lab namespaces (e.g. ip netns exec <prefix>cp kubectl).
func (l *Lab) AdminKubeconfig() (string, error) {
	p := filepath.Join(l.work, "admin.kubeconfig")
	if err := writeKubeconfig(p, l.pki.caPEM, l.adminToken); err != nil {
		return "", err
	}
	return p, nil
}

// Binaries returns the paths of the programs the lab runs.
func (l *Lab) Binaries() Binaries { return l.bins }

// ProxyKubeconfig is the kubeconfig every node's nftproxy runs with: the
// nftproxy ServiceAccount, bound to the RBAC of manifests/rbac.yaml.
func (l *Lab) ProxyKubeconfig() string { return l.proxyKubeconfig }

// ProxyBinary is the nftproxy binary the lab runs.
func (l *Lab) ProxyBinary() string { return l.bins.NFTProxy }

// WorkDir is the fixed work directory of labs with prefix: fixed, so the
// next run finds (and removes) what a crashed run left.
func WorkDir(prefix string) string {
	return filepath.Join(os.TempDir(), prefix+"work")
}
