package nftrules_test

import (
	"testing"

	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/nft"
)

// Dual-stack edge cases: each family's table serves only that family's
// ClusterIPs, with that family's endpoints.
func TestFlowDualStackEdgeCases(t *testing.T) {
	v6only := servicePort(1, "default/v6only", "tcp", 80, "fd00:30::60", readyEP("[fd00:1::60]:8080"))
	// A SingleStack IPv6 Service whose controller also produced an IPv4
	// slice: the IPv4 endpoints are never used.
	v6withV4Slice := servicePort(2, "default/v6slice", "tcp", 80, "fd00:30::61", readyEP("10.1.0.61:8080"))
	// PreferDualStack on a single-stack cluster: one IPv4 ClusterIP; the
	// IPv6 endpoints it may have are unused.
	prefer := servicePort(3, "default/prefer", "udp", 53, "172.30.0.62", readyEP("10.1.0.62:53"), readyEP("[fd00:1::62]:53"))
	// RequireDualStack: both families, each to its own endpoints.
	require := servicePort(4, "default/require", "tcp", 443, "172.30.0.63,fd00:30::63", readyEP("10.1.0.63:443"), readyEP("[fd00:1::63]:443"))
	checkPacketFlows(t, flowCluster(v6only, v6withV4Slice, prefer, require), []packetFlow{
		{"single-stack IPv6 Service", podSends(flowClientPod6, "tcp", "[fd00:30::60]:80"), "DNAT to [fd00:1::60]:8080"},
		{"IPv6 Service with only an IPv4 slice rejects", podSends(flowClientPod6, "tcp", "[fd00:30::61]:80"), "reject"},
		{"single-family Service: its family", podSends(flowClientPod, "udp", "172.30.0.62:53"), "DNAT to 10.1.0.62:53"},
		{"RequireDualStack over IPv4", podSends(flowClientPod, "tcp", "172.30.0.63:443"), "DNAT to 10.1.0.63:443"},
		{"RequireDualStack over IPv6", podSends(flowClientPod6, "tcp", "[fd00:30::63]:443"), "DNAT to [fd00:1::63]:443"},
	})
}

// The terminating fallback is decided per family: ready IPv4 endpoints do
// not hide the serving-terminating IPv6 ones.
func TestFlowTerminatingFallbackPerFamily(t *testing.T) {
	sp := servicePort(1, "default/mixed", "tcp", 80, "172.30.0.70,fd00:30::70",
		readyEP("10.1.0.70:8080"), servingTerminatingEP("[fd00:1::70]:8080"))
	checkPacketFlows(t, flowCluster(sp), []packetFlow{
		{"IPv4: the ready endpoint", podSends(flowClientPod, "tcp", "172.30.0.70:80"), "DNAT to 10.1.0.70:8080"},
		{"IPv6: the serving terminating endpoint", podSends(flowClientPod6, "tcp", "[fd00:30::70]:80"), "DNAT to [fd00:1::70]:8080"},
	})
}

// A node without IPv6 gets only the IPv4 table: dual-stack Services work
// over IPv4 and nothing is programmed for IPv6.
func TestFlowNodeWithoutIPv6(t *testing.T) {
	st := flowCluster(servicePort(1, "default/ds", "tcp", 80, "172.30.0.80,fd00:30::80",
		readyEP("10.1.0.80:8080"), readyEP("[fd00:1::80]:8080")))
	st.NoIPv6 = true
	rs := nftrules.Build(st)
	if fams := rs.SortedFamilies(); len(fams) != 1 || fams[0] != nft.IPv4 {
		t.Fatalf("tables %v, want only ip", fams)
	}
	checkPacketFlows(t, st, []packetFlow{
		{"IPv4 still works", podSends(flowClientPod, "tcp", "172.30.0.80:80"), "DNAT to 10.1.0.80:8080"},
	})
}
