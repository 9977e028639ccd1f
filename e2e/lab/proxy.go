package lab

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/google/nftables"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
)

// ProxyTable is the nftables table nftproxy owns (both families).
const ProxyTable = "nftproxy"

// proxyProc is a node's running nftproxy.
type proxyProc struct{ d *daemon }

// setupProxyAccess applies manifests/rbac.yaml and writes a kubeconfig
// with a token of the nftproxy ServiceAccount (TokenRequest API), as the
// DaemonSet's projected token would provide.
func (l *Lab) setupProxyAccess(ctx context.Context) error {
	if err := l.ApplyManifest(ctx, filepath.Join(l.opts.RepoRoot, "manifests", "rbac.yaml")); err != nil {
		return err
	}
	exp := int64(24 * 3600)
	tr, err := l.client.CoreV1().ServiceAccounts("kube-system").CreateToken(ctx, "nftproxy",
		&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("lab: token for kube-system/nftproxy: %w", err)
	}
	l.proxyKubeconfig = filepath.Join(l.work, "nftproxy.kubeconfig")
	return writeKubeconfig(l.proxyKubeconfig, l.pki.caPEM, tr.Status.Token)
}

// ApplyManifest creates the ServiceAccounts, ClusterRoles and
// ClusterRoleBindings of a multi-document YAML file (existing objects are
// left as they are).
func (l *Lab) ApplyManifest(ctx context.Context, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("lab: read manifest: %w", err)
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("lab: split %s: %w", path, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			return fmt.Errorf("lab: decode %s: %w", path, err)
		}
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			_, err = l.client.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRole:
			_, err = l.client.RbacV1().ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRoleBinding:
			_, err = l.client.RbacV1().ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
		default:
			return fmt.Errorf("lab: %s: unsupported kind %T", path, obj)
		}
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("lab: apply %s: %w", path, err)
		}
	}
}

// StartProxy runs nftproxy in node's namespace (the node's host network,
// as the DaemonSet runs it) and waits until its table exists there.
func (l *Lab) StartProxy(ctx context.Context, node string) error {
	return l.StartProxyWith(ctx, node, 20*time.Second)
}

// StartProxyWith is StartProxy with a longer wait for the table (a cold
// start of a big cluster) and extra flags after the lab's own (a flag
// given again overrides, e.g. --kubeconfig).
func (l *Lab) StartProxyWith(ctx context.Context, node string, wait time.Duration, extra ...string) error {
	n := l.Node(node)
	if n == nil {
		return fmt.Errorf("lab: StartProxy: no node %q", node)
	}
	if n.proxy != nil && !n.proxy.d.Proc.Exited() {
		return fmt.Errorf("lab: nftproxy already runs on %s", node)
	}
	args := []string{l.bins.NFTProxy,
		"--kubeconfig=" + l.proxyKubeconfig,
		"--hostname-override=" + n.Name,
		"--cluster-cidr=" + ClusterCIDRV4.String() + "," + ClusterCIDRV6.String(),
		// What it records (route_localnet) stays in the lab, not in the
		// host's /run/nftproxy.
		"--state-dir=" + filepath.Join(l.work, "state-"+n.Name),
		"-v=2"}
	if !l.opts.DefaultPacing {
		// The e2e suites assert that changes reach the data path within a
		// second; with kube-proxy's default 1 s rate limit that would
		// measure the limit, not nftproxy. ProxyArgs may override it.
		args = append(args, "--min-sync-period="+LabMinSyncPeriod.String())
	}
	args = append(args, l.opts.ProxyArgs...)
	args = append(args, extra...)
	d, err := l.startDaemon(n.NS, "nftproxy-"+n.Name, args...)
	if err != nil {
		return err
	}
	n.proxy = &proxyProc{d: d}
	return waitUntil(ctx, wait, "nftproxy table on "+n.Name, func(context.Context) (bool, error) {
		return hasTable(n), nil
	}, d)
}

// LabMinSyncPeriod is the --min-sync-period the lab runs nftproxy with.
const LabMinSyncPeriod = 250 * time.Millisecond

// StopProxy stops node's nftproxy (SIGTERM). Its rules stay, as with
// kube-proxy.
func (l *Lab) StopProxy(node string) error {
	n := l.Node(node)
	if n == nil {
		return fmt.Errorf("lab: StopProxy: no node %q", node)
	}
	if n.proxy == nil {
		return nil
	}
	err := l.stopDaemon(n.proxy.d, 5*time.Second)
	n.proxy = nil
	return err
}

// ProxyLog returns the last lines of node's nftproxy log.
func (l *Lab) ProxyLog(node string, lines int) string {
	return tailFile(filepath.Join(l.work, "logs", "nftproxy-"+node+".log"), lines)
}

// hasTable reports whether nftproxy's table exists in n's namespace.
func hasTable(n *Node) bool {
	c, err := nftables.New(nftables.WithNetNSFd(n.NS.FD()))
	if err != nil {
		return false
	}
	defer c.CloseLasting()
	tables, err := c.ListTables()
	if err != nil {
		return false
	}
	for _, t := range tables {
		if t.Name == ProxyTable {
			return true
		}
	}
	return false
}
