package nftrules_test

import "testing"

// A first packet of a client without affinity yet may reach every endpoint,
// exactly as without affinity; masquerade and hairpin are unchanged. (The
// stickiness itself is kernel state, proven in TestKernelSessionAffinity.)
func TestFlowSessionAffinity(t *testing.T) {
	sticky := servicePort(1, "default/sticky", "tcp", 80, "172.30.0.40,fd00:30::40",
		readyEP("10.1.0.2:8080"), readyEP("10.1.0.3:8080"), readyEP("[fd00:1::2]:8080"))
	sticky.SessionAffinityClientIP, sticky.AffinityTimeoutSeconds = true, 5
	checkPacketFlows(t, flowCluster(sticky), []packetFlow{
		{"pod to ClusterIP: any endpoint", podSends(flowClientPod, "tcp", "172.30.0.40:80"), "DNAT to 10.1.0.2:8080, 10.1.0.3:8080"},
		{"outsider to ClusterIP: any endpoint, masqueraded", outsiderSends(flowOutsider, "tcp", "172.30.0.40:80"), "DNAT to 10.1.0.2:8080, 10.1.0.3:8080 (masqueraded)"},
		{"IPv6: the IPv6 endpoint", podSends(flowClientPod6, "tcp", "[fd00:30::40]:80"), "DNAT to [fd00:1::2]:8080"},
		{"hairpin through an endpoint chain", podSends("10.1.0.2", "tcp", "172.30.0.40:80"), "DNAT to 10.1.0.2:8080, 10.1.0.3:8080 (masqueraded to 10.1.0.2:8080)"},
		{"other port: untouched", podSends(flowClientPod, "tcp", "172.30.0.40:81"), "accept"},
	})
}
