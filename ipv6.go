package main

import (
	"os"

	"k8s.io/klog/v2"
)

// ipv6Available reports whether this node's kernel has IPv6. Without it
// nftproxy programs only the IPv4 table (an ip6 table could not work, and
// asking for it would fail every sync).
func ipv6Available() bool {
	if _, err := os.Stat("/proc/net/if_inet6"); err != nil {
		klog.InfoS("IPv6 is not available on this node; only IPv4 Service addresses are programmed", "reason", err)
		return false
	}
	return true
}
