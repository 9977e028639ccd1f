package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
)

// Fault injection for the fault suite (e2e/faults_*_test.go): kill -9 of
// a node's nftproxy, control-plane restarts with unchanged flags, a
// network partition between a node and the apiserver, and what the suite
// measures with (the proxy's PID and log, HTTP from inside the lab).

// KillProxy kills node's nftproxy with SIGKILL (no shutdown code runs, as
// after an OOM kill) and waits until it is reaped. Its rules stay in the
// kernel; StartProxy starts a new one.
func (l *Lab) KillProxy(node string) error {
	n := l.Node(node)
	if n == nil {
		return fmt.Errorf("lab: KillProxy: no node %q", node)
	}
	if n.proxy == nil {
		return fmt.Errorf("lab: KillProxy: no nftproxy runs on %s", node)
	}
	d := n.proxy.d
	if err := d.Proc.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case <-d.Proc.Done():
	case <-time.After(10 * time.Second):
		return fmt.Errorf("lab: nftproxy on %s (pid %d) survived SIGKILL for 10s", node, d.Proc.PID)
	}
	l.forgetDaemon(d)
	n.proxy = nil
	return nil
}

// ProxyPID is the PID of node's running nftproxy (0 if none runs).
func (l *Lab) ProxyPID(node string) int {
	n := l.Node(node)
	if n == nil || n.proxy == nil || n.proxy.d.Proc.Exited() {
		return 0
	}
	return n.proxy.d.Proc.PID
}

// ProxyLogPath is the file node's nftproxy logs to; restarts append to it.
func (l *Lab) ProxyLogPath(node string) string {
	return filepath.Join(l.work, "logs", "nftproxy-"+node+".log")
}

// RestartAPIServer stops kube-apiserver (SIGTERM, SIGKILL after 10 s, as
// a control-plane upgrade does), runs whileDown (if set), starts it again with the same
// flags and waits for /readyz. It returns how long the apiserver was
// stopped: from the stop signal until it is ready again.
func (l *Lab) RestartAPIServer(ctx context.Context, whileDown func()) (time.Duration, error) {
	return l.restart(ctx, l.apiserver, whileDown, func(d *daemon) {
		l.apiserver = d
	}, l.waitAPIServer)
}

// RestartEtcd does the same with etcd (its data directory is kept).
func (l *Lab) RestartEtcd(ctx context.Context, whileDown func()) (time.Duration, error) {
	l.mu.Lock()
	var etcd *daemon
	for _, d := range l.daemons {
		if d.Name == "etcd" {
			etcd = d
		}
	}
	l.mu.Unlock()
	if etcd == nil {
		return 0, fmt.Errorf("lab: RestartEtcd: etcd is not running")
	}
	return l.restart(ctx, etcd, whileDown, nil, l.waitEtcd)
}

func (l *Lab) restart(ctx context.Context, d *daemon, whileDown func(), started func(*daemon),
	wait func(context.Context, *daemon) error) (time.Duration, error) {
	begin := time.Now()
	// kube-apiserver waits for its watch connections to drain far longer
	// than a kubelet would let a static pod linger: cut it short.
	if err := l.stopDaemon(d, 10*time.Second); err != nil {
		return 0, err
	}
	if whileDown != nil {
		whileDown()
	}
	nd, err := l.startDaemon(d.NS, d.Name, d.Proc.Args...)
	if err != nil {
		return 0, err
	}
	if started != nil {
		started(nd)
	}
	if err := wait(ctx, nd); err != nil {
		return 0, err
	}
	return time.Since(begin), nil
}

// partitionTable is the table (in the control-plane namespace) that cuts
// node off the apiserver.
func partitionTable(node string) string { return "labfault-" + node }

// PartitionFromAPIServer silently drops every packet between node and
// the apiserver, both ways, as a control-plane network partition does
// (no reset: open connections hang until their own timeouts). The rules
// live in the control-plane namespace, in a table of their own.
func (l *Lab) PartitionFromAPIServer(node string) error {
	n := l.Node(node)
	if n == nil {
		return fmt.Errorf("lab: PartitionFromAPIServer: no node %q", node)
	}
	rules := fmt.Sprintf(`table inet %[1]s {
	chain in {
		type filter hook input priority -300; policy accept;
		ip saddr %[2]s tcp dport %[4]d drop
		ip6 saddr %[3]s tcp dport %[4]d drop
	}
	chain out {
		type filter hook output priority -300; policy accept;
		ip daddr %[2]s tcp sport %[4]d drop
		ip6 daddr %[3]s tcp sport %[4]d drop
	}
}
`, partitionTable(node), n.IPv4, n.IPv6, APIServerPort)
	path := filepath.Join(l.work, partitionTable(node)+".nft")
	if err := os.WriteFile(path, []byte(rules), 0o644); err != nil {
		return fmt.Errorf("lab: partition rules: %w", err)
	}
	if _, err := l.cp.Exec("nft", "-f", path); err != nil {
		return fmt.Errorf("lab: partition %s: %w", node, err)
	}
	return nil
}

// HealPartition removes the partition of node.
func (l *Lab) HealPartition(node string) error {
	if _, err := l.cp.Exec("nft", "delete", "table", "inet", partitionTable(node)); err != nil {
		return fmt.Errorf("lab: heal partition of %s: %w", node, err)
	}
	return nil
}

// Get fetches url (plain HTTP) from inside the namespace of a lab member
// (see Dial), e.g. a node's /healthz or /metrics.
func (l *Lab) Get(ctx context.Context, from, url string) (int, string, error) {
	ns, err := l.namespaceOf(from)
	if err != nil {
		return 0, "", err
	}
	return httpGetIn(ctx, ns, url, nil, "")
}

// ClientWithQPS is Client with another client-side rate limit, for bulk
// loading (Client allows 200 requests per second).
func (l *Lab) ClientWithQPS(qps float32, burst int) (kubernetes.Interface, error) {
	cfg := l.adminConfig()
	cfg.QPS, cfg.Burst = qps, burst
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("lab: API client: %w", err)
	}
	return c, nil
}

// RegisterNode creates the Node object of a lab node again (after a test
// deleted it), as a restarted kubelet would.
func (l *Lab) RegisterNode(ctx context.Context, node string) error {
	n := l.Node(node)
	if n == nil {
		return fmt.Errorf("lab: RegisterNode: no node %q", node)
	}
	return l.registerNode(ctx, n)
}
