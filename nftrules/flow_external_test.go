package nftrules_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/trace"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// Packet-flow specifications of external traffic: NodePorts, external IPs,
// load balancer IPs, source ranges and traffic policies. This node is
// node-a at 192.168.0.10 / fd00:168::10 (its NodePort addresses); local
// pods are 10.1.0.x, pods of other nodes 10.1.1.x.

const flowNode6 = "fd00:168::10"

// local and remote endpoints (ready), as EndpointSlices report them.
func localEP(ap string) model.Endpoint {
	ep := readyEP(ap)
	ep.NodeName = "node-a"
	return ep
}

func remoteEP(ap string) model.Endpoint {
	ep := readyEP(ap)
	ep.NodeName = "node-b"
	return ep
}

// externalCluster is flowCluster with NodePorts served on the node's IPs.
func externalCluster(sps ...*model.ServicePort) *model.State {
	st := flowCluster(sps...)
	st.NodePortIPs = []netip.Addr{netip.MustParseAddr(flowNode), netip.MustParseAddr(flowNode6)}
	return st
}

// with returns sp after applying the changes (test sugar).
func with(sp *model.ServicePort, changes ...func(*model.ServicePort)) *model.ServicePort {
	for _, c := range changes {
		c(sp)
	}
	return sp
}

func nodePort(p uint16) func(*model.ServicePort) {
	return func(sp *model.ServicePort) { sp.NodePort = p }
}

func etpLocal(sp *model.ServicePort) { sp.ExternalPolicyLocal = true }
func itpLocal(sp *model.ServicePort) { sp.InternalPolicyLocal = true }

func lbIPs(ips ...string) func(*model.ServicePort) {
	return func(sp *model.ServicePort) {
		for _, ip := range ips {
			sp.LoadBalancerIPs = append(sp.LoadBalancerIPs, netip.MustParseAddr(ip))
		}
	}
}

func externalIPs(ips ...string) func(*model.ServicePort) {
	return func(sp *model.ServicePort) {
		for _, ip := range ips {
			sp.ExternalIPs = append(sp.ExternalIPs, netip.MustParseAddr(ip))
		}
	}
}

func sourceRanges(ranges ...string) func(*model.ServicePort) {
	return func(sp *model.ServicePort) {
		sp.SourceRanges = []netip.Prefix{}
		for _, r := range ranges {
			sp.SourceRanges = append(sp.SourceRanges, netip.MustParsePrefix(r))
		}
	}
}

// toNode is a packet from another host to one of the node's addresses: it
// is forwarded to a pod once DNATed, else delivered to the node (input).
func toNode(src, proto, dst string, dnat bool) trace.Packet {
	if dnat {
		return makePacket(src, proto, dst, trace.Forwarded)
	}
	return makePacket(src, proto, dst, trace.ToLocal)
}

func TestFlowNodePort(t *testing.T) {
	st := externalCluster(
		with(servicePort(1, "ns/np", "tcp", 80, "172.30.0.10,fd00:30::10",
			localEP("10.1.0.2:8080"), remoteEP("10.1.1.2:8080"), localEP("[fd00:1::2]:8080")), nodePort(30080)),
		with(servicePort(2, "ns/np-udp", "udp", 53, "172.30.0.11", remoteEP("10.1.1.3:5353")), nodePort(30053)),
		with(servicePort(3, "ns/np-sctp", "sctp", 3868, "172.30.0.12", remoteEP("10.1.1.4:3868")), nodePort(30068)),
		with(servicePort(4, "ns/np-none", "tcp", 80, "172.30.0.13,fd00:30::13"), nodePort(30090)),
		with(servicePort(5, "ns/np-none-udp", "udp", 80, "172.30.0.14"), nodePort(30091)),
	)
	checkPacketFlows(t, st, []packetFlow{
		{"outsider to the node's IP: all endpoints, masqueraded", toNode(flowOutsider, "tcp", flowNode+":30080", true),
			"DNAT to 10.1.0.2:8080, 10.1.1.2:8080 (masqueraded)"},
		{"IPv6 NodePort", toNode(flowOutsider6, "tcp", "["+flowNode6+"]:30080", true),
			"DNAT to [fd00:1::2]:8080 (masqueraded)"},
		{"UDP NodePort", toNode(flowOutsider, "udp", flowNode+":30053", true),
			"DNAT to 10.1.1.3:5353 (masqueraded)"},
		{"SCTP NodePort", toNode(flowOutsider, "sctp", flowNode+":30068", true),
			"DNAT to 10.1.1.4:3868 (masqueraded)"},
		{"a pod to the NodePort: masqueraded too (ETP Cluster)", podSends(flowClientPod, "tcp", flowNode+":30080"),
			"DNAT to 10.1.0.2:8080, 10.1.1.2:8080 (masqueraded)"},
		{"the node to its own NodePort", nodeSends("tcp", flowNode+":30080"),
			"DNAT to 10.1.0.2:8080, 10.1.1.2:8080 (masqueraded)"},
		{"NodePort on another protocol: untouched", toNode(flowOutsider, "udp", flowNode+":30080", false),
			"accept"},
		{"NodePort on an address not in --nodeport-addresses: untouched", toNode(flowOutsider, "tcp", "192.168.0.11:30080", false),
			"accept"},
		{"the Service port on the node's IP is not the NodePort", toNode(flowOutsider, "tcp", flowNode+":80", false),
			"accept"},
		{"ClusterIP of a NodePort Service still works, unmasqueraded from pods", podSends(flowClientPod, "tcp", "172.30.0.10:80"),
			"DNAT to 10.1.0.2:8080, 10.1.1.2:8080"},
		{"NodePort without endpoints: rejected (input)", toNode(flowOutsider, "tcp", flowNode+":30090", false),
			"reject"},
		{"IPv6 NodePort without endpoints: rejected", toNode(flowOutsider6, "tcp", "["+flowNode6+"]:30090", false),
			"reject"},
		{"UDP NodePort without endpoints: rejected", toNode(flowOutsider, "udp", flowNode+":30091", false),
			"reject"},
		{"NodePort without endpoints from the node: rejected", nodeSends("tcp", flowNode+":30090"),
			"reject"},
	})

	t.Run("no NodePort addresses", func(t *testing.T) {
		st := flowCluster(st.Services...)
		checkPacketFlows(t, st, []packetFlow{
			{"the node's IP is not a NodePort address", toNode(flowOutsider, "tcp", flowNode+":30080", false), "accept"},
		})
	})
	t.Run("localhost", func(t *testing.T) {
		st := externalCluster(st.Services...)
		st.NodePortIPs = append(st.NodePortIPs, netip.MustParseAddr("127.0.0.1"))
		checkPacketFlows(t, st, []packetFlow{
			{"the node to 127.0.0.1:NodePort: masqueraded", makePacket("127.0.0.1", "tcp", "127.0.0.1:30080", trace.LocalOut),
				"DNAT to 10.1.0.2:8080, 10.1.1.2:8080 (masqueraded)"},
			{"another host sending to 127.0.0.1 is dropped", makePacket(flowOutsider, "tcp", "127.0.0.1:30080", trace.ToLocal),
				"drop"},
		})
	})
}

func TestFlowExternalTrafficPolicyLocal(t *testing.T) {
	st := externalCluster(
		with(servicePort(1, "ns/local", "tcp", 80, "172.30.0.10,fd00:30::10",
			localEP("10.1.0.2:8080"), remoteEP("10.1.1.2:8080"), localEP("[fd00:1::2]:8080"), remoteEP("[fd00:1:1::2]:8080")),
			nodePort(30080), etpLocal, lbIPs("203.0.113.10", "2001:db8::10"), externalIPs("198.51.100.10")),
		with(servicePort(2, "ns/remote-only", "tcp", 80, "172.30.0.11",
			remoteEP("10.1.1.3:8080"), remoteEP("10.1.1.4:8080")),
			nodePort(30081), etpLocal, externalIPs("198.51.100.11")),
		with(servicePort(3, "ns/local-terminating", "udp", 53, "172.30.0.12",
			servingTerminatingEP("10.1.0.5:53"), remoteEP("10.1.1.5:53")),
			nodePort(30053), etpLocal),
	)
	st.Services[2].Endpoints[0].NodeName = "node-a"
	checkPacketFlows(t, st, []packetFlow{
		{"outsider via NodePort: local endpoints only, source kept", toNode(flowOutsider, "tcp", flowNode+":30080", true),
			"DNAT to 10.1.0.2:8080"},
		{"outsider via the LB IP: local endpoints only, source kept", outsiderSends(flowOutsider, "tcp", "203.0.113.10:80"),
			"DNAT to 10.1.0.2:8080"},
		{"outsider via the external IP: local endpoints only", outsiderSends(flowOutsider, "tcp", "198.51.100.10:80"),
			"DNAT to 10.1.0.2:8080"},
		{"IPv6 LB IP: local IPv6 endpoints only", outsiderSends(flowOutsider6, "tcp", "[2001:db8::10]:80"),
			"DNAT to [fd00:1::2]:8080"},
		{"IPv6 NodePort: local IPv6 endpoints only", toNode(flowOutsider6, "tcp", "["+flowNode6+"]:30080", true),
			"DNAT to [fd00:1::2]:8080"},
		{"a pod to the LB IP short-circuits to all endpoints, unmasqueraded", podSends(flowClientPod, "tcp", "203.0.113.10:80"),
			"DNAT to 10.1.0.2:8080, 10.1.1.2:8080"},
		{"a pod to the external IP short-circuits too (kubernetes#131765)", podSends(flowClientPod, "tcp", "198.51.100.10:80"),
			"DNAT to 10.1.0.2:8080, 10.1.1.2:8080"},
		{"a pod to the NodePort short-circuits", podSends(flowClientPod, "tcp", flowNode+":30080"),
			"DNAT to 10.1.0.2:8080, 10.1.1.2:8080"},
		{"the node to its NodePort: all endpoints, masqueraded", nodeSends("tcp", flowNode+":30080"),
			"DNAT to 10.1.0.2:8080, 10.1.1.2:8080 (masqueraded)"},
		{"the node to the LB IP: all endpoints, masqueraded", nodeSends("tcp", "203.0.113.10:80"),
			"DNAT to 10.1.0.2:8080, 10.1.1.2:8080 (masqueraded)"},
		{"ClusterIP is not affected by ETP", podSends(flowClientPod, "tcp", "172.30.0.10:80"),
			"DNAT to 10.1.0.2:8080, 10.1.1.2:8080"},
		{"no local endpoint: NodePort from outside dropped", toNode(flowOutsider, "tcp", flowNode+":30081", false),
			"drop"},
		{"no local endpoint: external IP from outside dropped", outsiderSends(flowOutsider, "tcp", "198.51.100.11:80"),
			"drop"},
		{"no local endpoint: a pod still reaches all endpoints", podSends(flowClientPod, "tcp", "198.51.100.11:80"),
			"DNAT to 10.1.1.3:8080, 10.1.1.4:8080"},
		{"no local endpoint: the node still reaches all endpoints", nodeSends("tcp", flowNode+":30081"),
			"DNAT to 10.1.1.3:8080, 10.1.1.4:8080 (masqueraded)"},
		{"only a serving-terminating local endpoint: it is used (fallback within the local set)", toNode(flowOutsider, "udp", flowNode+":30053", true),
			"DNAT to 10.1.0.5:53"},
		{"cluster-wide traffic prefers the ready remote endpoint", podSends(flowClientPod, "udp", "172.30.0.12:53"),
			"DNAT to 10.1.1.5:53"},
	})

	t.Run("without cluster CIDRs pods are not recognised", func(t *testing.T) {
		st := externalCluster(st.Services...)
		st.ClusterCIDRs = nil
		checkPacketFlows(t, st, []packetFlow{
			{"a pod to the LB IP is treated as external", podSends(flowClientPod, "tcp", "203.0.113.10:80"), "DNAT to 10.1.0.2:8080"},
		})
	})
}

func TestFlowExternalIPsAndLoadBalancers(t *testing.T) {
	st := externalCluster(
		with(servicePort(1, "ns/lb", "tcp", 443, "172.30.0.10,fd00:30::10",
			remoteEP("10.1.1.2:8443"), remoteEP("[fd00:1:1::2]:8443")),
			nodePort(30443), lbIPs("203.0.113.10", "2001:db8::10")),
		with(servicePort(2, "ns/ext", "udp", 53, "172.30.0.11", remoteEP("10.1.1.3:53")),
			externalIPs("198.51.100.11")),
		with(servicePort(3, "ns/lb-none", "tcp", 80, "172.30.0.12"), lbIPs("203.0.113.12"), externalIPs("198.51.100.12")),
		// An LB IP shared by two Services on different ports.
		with(servicePort(4, "ns/lb-shared", "tcp", 80, "172.30.0.13", remoteEP("10.1.1.4:80")), lbIPs("203.0.113.10")),
	)
	checkPacketFlows(t, st, []packetFlow{
		{"LB IP from outside: masqueraded (ETP Cluster)", outsiderSends(flowOutsider, "tcp", "203.0.113.10:443"),
			"DNAT to 10.1.1.2:8443 (masqueraded)"},
		{"IPv6 LB IP", outsiderSends(flowOutsider6, "tcp", "[2001:db8::10]:443"),
			"DNAT to [fd00:1:1::2]:8443 (masqueraded)"},
		{"shared LB IP, other port: the other Service", outsiderSends(flowOutsider, "tcp", "203.0.113.10:80"),
			"DNAT to 10.1.1.4:80 (masqueraded)"},
		{"LB IP from a pod: masqueraded too", podSends(flowClientPod, "tcp", "203.0.113.10:443"),
			"DNAT to 10.1.1.2:8443 (masqueraded)"},
		{"LB IP, unknown port: untouched", outsiderSends(flowOutsider, "tcp", "203.0.113.10:444"),
			"accept"},
		{"external IP, UDP", outsiderSends(flowOutsider, "udp", "198.51.100.11:53"),
			"DNAT to 10.1.1.3:53 (masqueraded)"},
		{"external IP, other protocol: untouched", outsiderSends(flowOutsider, "tcp", "198.51.100.11:53"),
			"accept"},
		{"LB IP without endpoints: rejected", outsiderSends(flowOutsider, "tcp", "203.0.113.12:80"),
			"reject"},
		{"external IP without endpoints: rejected", outsiderSends(flowOutsider, "tcp", "198.51.100.12:80"),
			"reject"},
	})
}

func TestFlowLoadBalancerSourceRanges(t *testing.T) {
	st := externalCluster(
		with(servicePort(1, "ns/fw", "tcp", 443, "172.30.0.10,fd00:30::10",
			remoteEP("10.1.1.2:8443"), remoteEP("[fd00:1:1::2]:8443")),
			nodePort(30443), lbIPs("203.0.113.10", "2001:db8::10"), externalIPs("198.51.100.10"),
			sourceRanges("192.168.99.0/24", "10.99.0.7/32", "fd00:99::/64")),
		with(servicePort(2, "ns/fw-invalid", "tcp", 80, "172.30.0.11", remoteEP("10.1.1.3:80")),
			lbIPs("203.0.113.11"), sourceRanges()),
		with(servicePort(3, "ns/fw-v4-only", "tcp", 80, "172.30.0.12,fd00:30::12", remoteEP("10.1.1.4:80"), remoteEP("[fd00:1:1::4]:80")),
			lbIPs("203.0.113.12", "2001:db8::12"), sourceRanges("192.168.99.0/24")),
		with(servicePort(4, "ns/fw-all", "tcp", 80, "172.30.0.13", remoteEP("10.1.1.5:80")),
			lbIPs("203.0.113.13"), sourceRanges("0.0.0.0/0")),
		with(servicePort(5, "ns/fw-local-noeps", "tcp", 80, "172.30.0.14"),
			lbIPs("203.0.113.14"), sourceRanges("192.168.99.0/24")),
	)
	checkPacketFlows(t, st, []packetFlow{
		{"from inside the ranges: allowed", outsiderSends(flowOutsider, "tcp", "203.0.113.10:443"),
			"DNAT to 10.1.1.2:8443 (masqueraded)"},
		{"from a /32 range: allowed", outsiderSends("10.99.0.7", "tcp", "203.0.113.10:443"),
			"DNAT to 10.1.1.2:8443 (masqueraded)"},
		{"from outside the ranges: dropped", outsiderSends("192.168.98.9", "tcp", "203.0.113.10:443"),
			"drop"},
		{"from outside the ranges, IPv6: dropped", outsiderSends("fd00:98::9", "tcp", "[2001:db8::10]:443"),
			"drop"},
		{"from inside the ranges, IPv6: allowed", outsiderSends(flowOutsider6, "tcp", "[2001:db8::10]:443"),
			"DNAT to [fd00:1:1::2]:8443 (masqueraded)"},
		{"from a pod outside the ranges: dropped (as upstream)", podSends(flowClientPod, "tcp", "203.0.113.10:443"),
			"drop"},
		{"from the node outside the ranges: dropped", nodeSends("tcp", "203.0.113.10:443"),
			"drop"},
		{"the NodePort is not filtered", toNode("192.168.98.9", "tcp", flowNode+":30443", true),
			"DNAT to 10.1.1.2:8443 (masqueraded)"},
		{"external IPs are not filtered", outsiderSends("192.168.98.9", "tcp", "198.51.100.10:443"),
			"DNAT to 10.1.1.2:8443 (masqueraded)"},
		{"the ClusterIP is not filtered", outsiderSends("192.168.98.9", "tcp", "172.30.0.10:443"),
			"DNAT to 10.1.1.2:8443 (masqueraded)"},
		{"LB IP, other port: not filtered", outsiderSends("192.168.98.9", "tcp", "203.0.113.10:80"),
			"accept"},
		{"every range invalid: all LB traffic dropped", outsiderSends(flowOutsider, "tcp", "203.0.113.11:80"),
			"drop"},
		{"IPv4 ranges only: IPv4 allowed", outsiderSends(flowOutsider, "tcp", "203.0.113.12:80"),
			"DNAT to 10.1.1.4:80 (masqueraded)"},
		{"IPv4 ranges only: IPv6 LB IP dropped (fail closed)", outsiderSends(flowOutsider6, "tcp", "[2001:db8::12]:80"),
			"drop"},
		{"0.0.0.0/0 allows everyone", outsiderSends("192.168.98.9", "tcp", "203.0.113.13:80"),
			"DNAT to 10.1.1.5:80 (masqueraded)"},
		{"no endpoints, outside the ranges: dropped before the reject", outsiderSends("192.168.98.9", "tcp", "203.0.113.14:80"),
			"drop"},
		{"no endpoints, inside the ranges: rejected", outsiderSends(flowOutsider, "tcp", "203.0.113.14:80"),
			"reject"},
	})
}

func TestFlowInternalTrafficPolicyLocal(t *testing.T) {
	st := externalCluster(
		with(servicePort(1, "ns/itp", "tcp", 80, "172.30.0.10,fd00:30::10",
			localEP("10.1.0.2:8080"), remoteEP("10.1.1.2:8080"), localEP("[fd00:1::2]:8080")), itpLocal),
		with(servicePort(2, "ns/itp-remote", "tcp", 80, "172.30.0.11", remoteEP("10.1.1.3:8080")), itpLocal),
		with(servicePort(3, "ns/itp-none", "tcp", 80, "172.30.0.12"), itpLocal),
		// ITP Local with ETP Cluster: external traffic still reaches all.
		with(servicePort(4, "ns/itp-np", "tcp", 80, "172.30.0.13", localEP("10.1.0.4:8080"), remoteEP("10.1.1.4:8080")),
			itpLocal, nodePort(30084), lbIPs("203.0.113.13")),
		// Both Local.
		with(servicePort(5, "ns/both", "tcp", 80, "172.30.0.14", localEP("10.1.0.5:8080"), remoteEP("10.1.1.5:8080")),
			itpLocal, etpLocal, nodePort(30085)),
		// ITP Local with no local endpoint, NodePort ETP Cluster.
		with(servicePort(6, "ns/itp-remote-np", "tcp", 80, "172.30.0.15", remoteEP("10.1.1.6:8080")),
			itpLocal, nodePort(30086)),
	)
	checkPacketFlows(t, st, []packetFlow{
		{"a pod reaches only the local endpoint", podSends(flowClientPod, "tcp", "172.30.0.10:80"),
			"DNAT to 10.1.0.2:8080"},
		{"IPv6: only the local endpoint", podSends(flowClientPod6, "tcp", "[fd00:30::10]:80"),
			"DNAT to [fd00:1::2]:8080"},
		{"the node reaches only the local endpoint", nodeSends("tcp", "172.30.0.10:80"),
			"DNAT to 10.1.0.2:8080 (masqueraded)"},
		{"no local endpoint: dropped", podSends(flowClientPod, "tcp", "172.30.0.11:80"),
			"drop"},
		{"no endpoint at all: rejected", podSends(flowClientPod, "tcp", "172.30.0.12:80"),
			"reject"},
		{"ITP Local, ETP Cluster: ClusterIP local only", podSends(flowClientPod, "tcp", "172.30.0.13:80"),
			"DNAT to 10.1.0.4:8080"},
		{"ITP Local, ETP Cluster: NodePort reaches all, masqueraded", toNode(flowOutsider, "tcp", flowNode+":30084", true),
			"DNAT to 10.1.0.4:8080, 10.1.1.4:8080 (masqueraded)"},
		{"ITP Local, ETP Cluster: LB IP reaches all, masqueraded", outsiderSends(flowOutsider, "tcp", "203.0.113.13:80"),
			"DNAT to 10.1.0.4:8080, 10.1.1.4:8080 (masqueraded)"},
		{"both Local: ClusterIP local only", podSends(flowClientPod, "tcp", "172.30.0.14:80"),
			"DNAT to 10.1.0.5:8080"},
		{"both Local: NodePort from outside local only, unmasqueraded", toNode(flowOutsider, "tcp", flowNode+":30085", true),
			"DNAT to 10.1.0.5:8080"},
		{"both Local: a pod to the NodePort short-circuits to all", podSends(flowClientPod, "tcp", flowNode+":30085"),
			"DNAT to 10.1.0.5:8080, 10.1.1.5:8080"},
		{"ITP Local without local endpoint: ClusterIP dropped", podSends(flowClientPod, "tcp", "172.30.0.15:80"),
			"drop"},
		{"ITP Local without local endpoint: NodePort (ETP Cluster) still works", toNode(flowOutsider, "tcp", flowNode+":30086", true),
			"DNAT to 10.1.1.6:8080 (masqueraded)"},
	})
}

// TestFlowEveryExternalAddressIsReachable traces every NodePort, external
// IP and LB IP of generated Services under both policies.
func TestFlowEveryExternalAddressIsReachable(t *testing.T) {
	var sps []*model.ServicePort
	protos := []string{"tcp", "udp", "sctp"}
	for i := 1; i <= 45; i++ {
		ip := netip.AddrFrom4([4]byte{172, 30, 2, byte(i)})
		sp := servicePort(uint32(i), "ns/e"+strings.Repeat("x", i), protos[i%3], 80, ip.String(),
			localEP(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, 0, byte(i)}), 8080).String()),
			remoteEP(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, 1, byte(i)}), 8080).String()))
		sp.NodePort = uint16(30000 + i)
		sp.ExternalIPs = []netip.Addr{netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})}
		sp.LoadBalancerIPs = []netip.Addr{netip.AddrFrom4([4]byte{203, 0, 113, byte(i)})}
		sp.ExternalPolicyLocal = i%2 == 0
		sp.InternalPolicyLocal = i%3 == 0
		sps = append(sps, sp)
	}
	rs := nftrules.Build(externalCluster(sps...))
	for _, sp := range sps {
		proto := strings.ToLower(string(sp.Protocol))
		want := "DNAT to " + sp.Endpoints[0].AddrPort().String() + ", " + sp.Endpoints[1].AddrPort().String() + " (masqueraded)"
		if sp.ExternalPolicyLocal {
			want = "DNAT to " + sp.Endpoints[0].AddrPort().String()
		}
		for _, dst := range []netip.AddrPort{
			netip.AddrPortFrom(netip.MustParseAddr(flowNode), sp.NodePort),
			netip.AddrPortFrom(sp.ExternalIPs[0], sp.Port),
			netip.AddrPortFrom(sp.LoadBalancerIPs[0], sp.Port),
		} {
			p := outsiderSends(flowOutsider, proto, dst.String())
			r, err := trace.Trace(rs, p)
			if err != nil {
				t.Fatalf("Trace: %v", err)
			}
			if r.String() != want {
				t.Errorf("%s %v: got %s, want %s", sp.Name, p, r, want)
			}
		}
	}
}
