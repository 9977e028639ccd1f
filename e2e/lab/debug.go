package lab

import (
	"fmt"
	"strings"
)

// NodeRules returns `nft list ruleset` of node's namespace: nftproxy's
// live rules (nothing else programs nftables there).
func (l *Lab) NodeRules(node string) (string, error) {
	n := l.Node(node)
	if n == nil {
		return "", fmt.Errorf("lab: NodeRules: no node %q", node)
	}
	out, err := n.NS.Exec("nft", "list", "ruleset")
	if err != nil {
		return "", fmt.Errorf("lab: rules of %s: %w", node, err)
	}
	return string(out), nil
}

// TB is the part of testing.TB the lab uses (kept small so the package
// does not import testing).
type TB interface {
	Helper()
	Failed() bool
	Logf(format string, args ...any)
	Cleanup(func())
}

// DumpOnFailure registers a cleanup on t that, if t failed, logs every
// node's nft ruleset and the tail of its nftproxy log.
func (l *Lab) DumpOnFailure(t TB) {
	t.Helper()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s", l.Dump())
		}
	})
}

// Dump describes every node: ruleset and nftproxy log tail.
func (l *Lab) Dump() string {
	var b strings.Builder
	for _, n := range l.nodes {
		rules, err := l.NodeRules(n.Name)
		if err != nil {
			rules = err.Error()
		}
		fmt.Fprintf(&b, "===== %s (%s, %s/%s) nftproxy --dump:\n%s\n", n.Name, l.opts.Mode, n.IPv4, n.IPv6, l.proxyDump(n))
		fmt.Fprintf(&b, "===== %s nft list ruleset:\n%s\n", n.Name, rules)
		fmt.Fprintf(&b, "===== %s nftproxy log (last 40 lines):\n%s\n", n.Name, l.ProxyLog(n.Name, 40))
	}
	return b.String()
}

// proxyDump runs `nftproxy --dump` in the node's namespace: the Service
// ports as programmed in the kernel, flagged where they differ from the API.
func (l *Lab) proxyDump(n *Node) string {
	if l.opts.NoProxy || l.proxyKubeconfig == "" {
		return "(no nftproxy in this lab)"
	}
	out, err := n.NS.Exec(l.bins.NFTProxy, "--dump", "--kubeconfig="+l.proxyKubeconfig, "--hostname-override="+n.Name)
	if err != nil {
		return err.Error()
	}
	return string(out)
}
