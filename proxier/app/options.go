package app

import (
	"github.com/nftproxy/nftproxy/proxier/conntrack"

	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/nftproxy/nftproxy/proxier"
)

// options are the command-line flags, named and defaulted as kube-proxy's
// so that existing DaemonSet manifests keep working.
type options struct {
	configFile       string
	kubeconfig       string
	master           string
	hostnameOverride string
	clusterCIDRs     string
	masqueradeAll    bool
	minSyncPeriod    optionalDuration // unset: adaptive pacing
	syncPeriod       time.Duration
	serviceProxyName string
	nodePortAddrs    string
	// denyNodeAddressExternalIPs: see proxier/claims.
	denyNodeAddressExternalIPs bool
	stateDir                   string
	// conntrack: kube-proxy's --conntrack-* (proxier/conntrack/sysctl.go);
	// setConntrackSysctls writes them and exits (the init container).
	conntrack           conntrack.Sysctls
	setConntrackSysctls bool

	// Filled in by complete.
	nodeName  string
	podRanges []netip.Prefix
	nodePorts proxier.NodePortAddresses
}

func newOptions() *options {
	return &options{syncPeriod: 30 * time.Second, nodePortAddrs: "primary", stateDir: "/run/nftproxy",
		conntrack: conntrack.KubeProxyDefaults()}
}

func (o *options) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.configFile, "config", o.configFile, "Path to a KubeProxyConfiguration file (kubeproxy.config.k8s.io/v1alpha1). Flags given on the command line override its fields; fields nftproxy does not support are warned about and ignored.")
	fs.StringVar(&o.kubeconfig, "kubeconfig", o.kubeconfig, "Path to a kubeconfig file. Without it and --master, the in-cluster configuration is used.")
	fs.StringVar(&o.master, "master", o.master, "Address of the Kubernetes API server (overrides any value in kubeconfig).")
	fs.StringVar(&o.hostnameOverride, "hostname-override", o.hostnameOverride, "Name of this node, if not the host name.")
	fs.StringVar(&o.clusterCIDRs, "cluster-cidr", o.clusterCIDRs, "Comma-separated pod CIDRs, at most one per IP family; ClusterIP traffic from outside them is masqueraded.")
	fs.BoolVar(&o.masqueradeAll, "masquerade-all", o.masqueradeAll, "Masquerade all traffic sent to Service cluster IPs.")
	fs.Var(&o.minSyncPeriod, "min-sync-period", "Minimum time between two rule syncs, with a burst of two as kube-proxy's; changes arriving meanwhile are batched (0: sync on every change). Unset (the default): each change is synced at once while syncs take less than a fifth of the time, and waits at most 1s otherwise.")
	fs.StringVar(&o.serviceProxyName, "service-proxy-name", o.serviceProxyName, "Program only Services labelled service.kubernetes.io/service-proxy-name=NAME (empty: only Services without that label, as kube-proxy).")
	fs.StringVar(&o.nodePortAddrs, "nodeport-addresses", o.nodePortAddrs, "Addresses NodePorts are served on: \"primary\" (the Node's InternalIPs), and/or comma-separated CIDRs selecting the node's interface addresses (\"0.0.0.0/0,::/0\": all; 127.0.0.0/8 enables localhost NodePorts and, once their guard rule is in, sets net.ipv4.conf.all.route_localnet=1, which --cleanup restores).")
	fs.BoolVar(&o.denyNodeAddressExternalIPs, "deny-external-ips-on-node-addresses", o.denyNodeAddressExternalIPs, "Never program an externalIP or load-balancer IP that is one of this node's addresses, on any port (guards the node's own services, e.g. SSH or the kubelet, from capture by a Service; kube-proxy has no such guard). Without it, such an address still loses to a NodePort on the same port.")
	fs.StringVar(&o.stateDir, "state-dir", o.stateDir, "Directory where nftproxy records what it changes outside its tables (the value of net.ipv4.conf.all.route_localnet it replaced), for --cleanup to restore; a tmpfs, like the sysctl, forgets it at reboot.")
	ct := &o.conntrack
	fs.Int32Var(&ct.MaxPerCore, "conntrack-max-per-core", ct.MaxPerCore, "Maximum number of NAT connections to track per CPU core (0 to leave the limit as-is and ignore conntrack-min).")
	fs.Int32Var(&ct.Min, "conntrack-min", ct.Min, "Minimum number of conntrack entries to allocate, regardless of conntrack-max-per-core (set conntrack-max-per-core=0 to leave the limit as-is).")
	fs.DurationVar(&ct.TCPEstablishedTimeout, "conntrack-tcp-timeout-established", ct.TCPEstablishedTimeout, "Idle timeout for established TCP connections (0 to leave as-is)")
	fs.DurationVar(&ct.TCPCloseWaitTimeout, "conntrack-tcp-timeout-close-wait", ct.TCPCloseWaitTimeout, "NAT timeout for TCP connections in the CLOSE_WAIT state (0 to leave as-is)")
	fs.BoolVar(&ct.TCPBeLiberal, "conntrack-tcp-be-liberal", ct.TCPBeLiberal, "Enable liberal mode for tracking TCP packets by setting nf_conntrack_tcp_be_liberal to 1")
	fs.DurationVar(&ct.UDPTimeout, "conntrack-udp-timeout", ct.UDPTimeout, "Idle timeout for UNREPLIED UDP connections (0 to leave as-is)")
	fs.DurationVar(&ct.UDPStreamTimeout, "conntrack-udp-timeout-stream", ct.UDPStreamTimeout, "Idle timeout for ASSURED UDP connections (0 to leave as-is)")
	fs.BoolVar(&o.setConntrackSysctls, "set-conntrack-sysctls", o.setConntrackSysctls, "Write the --conntrack-* settings to /proc/sys (and the nf_conntrack hashsize) and exit: the privileged init container of the DaemonSet, so that the proxy itself runs unprivileged.")
	fs.DurationVar(&o.syncPeriod, "sync-period", o.syncPeriod, "Interval of the check of our tables in the kernel against the rules applied, beside the change syncs; a difference is repaired by a full sync. Also the longest retry delay after a failure.")
}

// applyConfig applies --config to fs, the command's flags (flags given on
// the command line win); complete then reads the result.
func (o *options) applyConfig(fs *pflag.FlagSet) error {
	if o.configFile == "" {
		return nil
	}
	_, err := applyConfigFile(fs, o.configFile)
	return err
}

// complete derives the node name and parses the CIDRs, and checks every
// flag, reporting all problems at once.
func (o *options) complete() error {
	var errs []error
	name, err := nodeName(o.hostnameOverride)
	if err != nil {
		errs = append(errs, err)
	}
	o.nodeName = name
	o.podRanges, err = parseClusterCIDRs(o.clusterCIDRs)
	if err != nil {
		errs = append(errs, err)
	}
	o.nodePorts, err = proxier.ParseNodePortAddresses(o.nodePortAddrs)
	if err != nil {
		errs = append(errs, err)
	}
	if o.conntrack.MaxPerCore < 0 || o.conntrack.Min < 0 {
		errs = append(errs, errors.New("--conntrack-max-per-core and --conntrack-min must not be negative"))
	}
	if o.minSyncPeriod.value < 0 {
		errs = append(errs, fmt.Errorf("--min-sync-period %v must not be negative", o.minSyncPeriod.value))
	}
	if o.syncPeriod <= 0 {
		errs = append(errs, fmt.Errorf("--sync-period %v must be positive", o.syncPeriod))
	} else if o.minSyncPeriod.value > o.syncPeriod {
		errs = append(errs, fmt.Errorf("--min-sync-period %v must not exceed --sync-period %v", o.minSyncPeriod, o.syncPeriod))
	}
	return errors.Join(errs...)
}

// optionalDuration is a duration flag that knows whether it was set, on
// the command line or by --config: an explicit --min-sync-period is
// honoured exactly, its absence selects the adaptive pacing.
type optionalDuration struct {
	value time.Duration
	set   bool
}

func (d *optionalDuration) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	d.value, d.set = v, true
	return nil
}

// String is empty when unset, so that the help shows no default.
func (d *optionalDuration) String() string {
	if !d.set {
		return ""
	}
	return d.value.String()
}

func (d *optionalDuration) Type() string { return "duration" }

// nodeName is the override or the host name, lowercased like kubelet's
// node names, so that both agree on which Node is ours.
func nodeName(override string) (string, error) {
	name := strings.TrimSpace(override)
	if name == "" {
		h, err := os.Hostname()
		if err != nil {
			return "", fmt.Errorf("cannot determine the node name (set --hostname-override): %w", err)
		}
		name = h
	}
	name = strings.ToLower(strings.TrimSpace(name))
	if name == "" {
		return "", errors.New("empty node name (set --hostname-override)")
	}
	return name, nil
}

// parseClusterCIDRs parses "10.244.0.0/16,fd44::/16": at most one CIDR per
// family, as kube-proxy accepts.
func parseClusterCIDRs(s string) ([]netip.Prefix, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []netip.Prefix
	seen := map[bool]bool{} // is IPv4 -> seen
	for _, part := range strings.Split(s, ",") {
		p, err := netip.ParsePrefix(strings.TrimSpace(part))
		if err != nil {
			return nil, fmt.Errorf("--cluster-cidr: invalid CIDR %q: %w", part, err)
		}
		p = p.Masked()
		if p.Addr().Is4In6() {
			return nil, fmt.Errorf("--cluster-cidr: IPv4-mapped CIDR %q is not allowed", part)
		}
		if seen[p.Addr().Is4()] {
			return nil, fmt.Errorf("--cluster-cidr %q: at most one CIDR per IP family", s)
		}
		seen[p.Addr().Is4()] = true
		out = append(out, p)
	}
	return out, nil
}
