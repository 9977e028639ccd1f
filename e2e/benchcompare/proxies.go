package main

import (
	"bytes"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nftproxy/nftproxy/e2e/lab"
	"github.com/nftproxy/nftproxy/e2e/netkit"
)

// proxy is one contender: how to run it and how to see its work in the
// kernel.
type proxy struct {
	name string
	// args returns the command line on node (kubeconfig, node name, min
	// sync period).
	args func(kubeconfig string, minSync time.Duration) []string
	// programmed reports whether the dispatch entry of a ClusterIP (port
	// 80/TCP) is in the kernel.
	programmed func(env *nodeEnv, clusterIP netip.Addr) (bool, error)
	// hasEndpoint reports whether a local endpoint (port 8080) is in the
	// kernel.
	hasEndpoint func(env *nodeEnv, ep netip.Addr) (bool, error)
	// hasEndpoints, when set, answers for many endpoints at once more
	// cheaply than hasEndpoint one by one (one iptables-save).
	hasEndpoints func(env *nodeEnv, eps []netip.Addr) ([]bool, error)
	// dumps are the ways an admin shows this proxy's rules.
	dumps []dumpCmd
	// pollEvery is how often the kernel is probed.
	pollEvery time.Duration
	// profiling: the proxy serves /debug/pprof/ on 127.0.0.1:10249.
	profiling bool
}

// endpointsIn reports, for each of eps, whether it is in the kernel.
func (p *proxy) endpointsIn(env *nodeEnv, eps []netip.Addr) ([]bool, error) {
	if p.hasEndpoints != nil {
		return p.hasEndpoints(env, eps)
	}
	out := make([]bool, len(eps))
	for i, ep := range eps {
		ok, err := p.hasEndpoint(env, ep)
		if err != nil {
			return nil, err
		}
		out[i] = ok
	}
	return out, nil
}

type dumpCmd struct {
	name string
	args []string
}

// nodeEnv is the node the proxies take turns on.
type nodeEnv struct {
	node  *lab.Node
	probe *probe
}

func clusterIPKey(ip netip.Addr) []byte {
	return concat(addrBytes(ip), protoBytes(unix.IPPROTO_TCP), portBytes(servicePort))
}

func commonFlags(kubeconfig string) []string {
	return []string{
		"--kubeconfig=" + kubeconfig,
		"--hostname-override=" + proxyNode,
		"--cluster-cidr=" + lab.ClusterCIDRV4.String() + "," + lab.ClusterCIDRV6.String(),
	}
}

func nftproxyDef(bin string, profiling bool) *proxy {
	return &proxy{
		name:      "nftproxy",
		profiling: profiling,
		args: func(kc string, ms time.Duration) []string {
			args := append([]string{bin, "--min-sync-period=" + ms.String()}, commonFlags(kc)...)
			if profiling {
				args = append(args, "--profiling")
			}
			return args
		},
		programmed: func(env *nodeEnv, ip netip.Addr) (bool, error) {
			return env.probe.has(familyOf(ip), "nftproxy", "service-ips", clusterIPKey(ip))
		},
		hasEndpoint: func(env *nodeEnv, ep netip.Addr) (bool, error) {
			return env.probe.has(familyOf(ep), "nftproxy", "hairpin", concat(addrBytes(ep), addrBytes(ep)))
		},
		dumps: []dumpCmd{
			{"nftproxy --dump", []string{bin, "--dump"}},
			{"nft list table ip nftproxy", []string{"nft", "list", "table", "ip", "nftproxy"}},
		},
		pollEvery: time.Millisecond,
	}
}

// kubeProxyFlags keep kube-proxy off everything host-wide: no conntrack
// sysctls (nf_conntrack_max and the hash size are global), its own
// namespace's ports only.
func kubeProxyFlags(mode string, minSync time.Duration) []string {
	return []string{
		"--proxy-mode=" + mode,
		// Despite its name, the min sync period of the nftables mode too.
		"--iptables-min-sync-period=" + minSync.String(),
		"--conntrack-max-per-core=0",
		"--conntrack-min=0",
		"--conntrack-tcp-timeout-established=0",
		"--conntrack-tcp-timeout-close-wait=0",
	}
}

func kubeProxyNFTDef(bin string) *proxy {
	return &proxy{
		name: "kube-proxy nftables",
		args: func(kc string, ms time.Duration) []string {
			return append(append([]string{bin}, commonFlags(kc)...), kubeProxyFlags("nftables", ms)...)
		},
		programmed: func(env *nodeEnv, ip netip.Addr) (bool, error) {
			return env.probe.has(familyOf(ip), "kube-proxy", "service-ips", clusterIPKey(ip))
		},
		hasEndpoint: func(env *nodeEnv, ep netip.Addr) (bool, error) {
			return env.probe.has(familyOf(ep), "kube-proxy", "hairpin-connections",
				concat(addrBytes(ep), addrBytes(ep), protoBytes(unix.IPPROTO_TCP), portBytes(endpointPort)))
		},
		dumps:     []dumpCmd{{"nft list table ip kube-proxy", []string{"nft", "list", "table", "ip", "kube-proxy"}}},
		pollEvery: time.Millisecond,
	}
}

func kubeProxyIPTDef(bin string) *proxy {
	return &proxy{
		name: "kube-proxy iptables",
		args: func(kc string, ms time.Duration) []string {
			return append(append([]string{bin}, commonFlags(kc)...), kubeProxyFlags("iptables", ms)...)
		},
		programmed: func(env *nodeEnv, ip netip.Addr) (bool, error) {
			save, bits := "iptables-save", 32
			if ip.Is6() {
				save, bits = "ip6tables-save", 128
			}
			out, err := iptablesSave(env.node.NS, save, "nat")
			if err != nil {
				return false, err
			}
			return bytes.Contains(out, []byte(fmt.Sprintf("-d %s/%d -p tcp -m comment", ip, bits))), nil
		},
		hasEndpoint: func(env *nodeEnv, ep netip.Addr) (bool, error) {
			in, err := iptablesHasEndpoints(env, []netip.Addr{ep})
			if err != nil {
				return false, err
			}
			return in[0], nil
		},
		hasEndpoints: iptablesHasEndpoints,
		dumps:        []dumpCmd{{"iptables-save", []string{"iptables-save"}}},
		pollEvery:    200 * time.Millisecond,
	}
}

// iptablesHasEndpoints looks for each endpoint's DNAT rule in one
// iptables-save of the nat table.
func iptablesHasEndpoints(env *nodeEnv, eps []netip.Addr) ([]bool, error) {
	out, err := iptablesSave(env.node.NS, "iptables-save", "nat")
	if err != nil {
		return nil, err
	}
	in := make([]bool, len(eps))
	for i, ep := range eps {
		in[i] = bytes.Contains(out, []byte(fmt.Sprintf("--to-destination %s:%d", ep, endpointPort)))
	}
	return in, nil
}

// iptablesSave runs save (iptables-save or ip6tables-save) for one table.
func iptablesSave(ns *netkit.NS, save, table string) ([]byte, error) {
	out, err := exec.Command("ip", "netns", "exec", ns.Name, save, "-t", table).Output()
	if err != nil {
		// No table yet reads as empty.
		if strings.Contains(err.Error(), "exit status") {
			return nil, nil
		}
		return nil, err
	}
	return out, nil
}
