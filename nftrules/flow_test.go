package nftrules_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"

	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/trace"
	"github.com/nftproxy/nftproxy/proxier/model"
	"github.com/nftproxy/nftproxy/proxier/model/modeltest"
)

// Packet-flow specifications: what happens to the first packet of a
// connection under the ruleset Build makes for a State. Each want is the
// tracer's one-line summary: "accept" (untouched), "reject", or
// "DNAT to <every possible endpoint>" with "(masqueraded)" when the source
// is rewritten (or "(masqueraded to X)" when only some endpoints are).
//
// The cluster: pods in 10.1.0.0/16 and fd00:1::/64, ClusterIPs in
// 172.30.0.0/16 and fd00:30::/108, the node at 192.168.0.10, and a client
// outside the cluster at 192.168.99.9.

const (
	flowClientPod  = "10.1.5.5"
	flowClientPod6 = "fd00:1::5:5"
	flowNode       = "192.168.0.10"
	flowOutsider   = "192.168.99.9"
	flowOutsider6  = "fd00:99::9"
)

// packetFlow is one packet and what must happen to it.
type packetFlow struct {
	name   string
	packet trace.Packet
	want   string
}

func checkPacketFlows(t *testing.T, st *model.State, flows []packetFlow) {
	t.Helper()
	rs := nftrules.Build(st)
	for _, f := range flows {
		t.Run(f.name, func(t *testing.T) {
			r, err := trace.Trace(rs, f.packet)
			if err != nil {
				t.Fatalf("Trace: %v", err)
			}
			if got := r.String(); got != f.want {
				t.Errorf("%v:\ngot  %s\nwant %s\n\n%s", f.packet, got, f.want, r.Explain())
			}
		})
	}
}

// podSends, nodeSends and outsiderSends build first packets "proto dst:port".
func podSends(src, proto, dst string) trace.Packet {
	return makePacket(src, proto, dst, trace.FromPod)
}

func nodeSends(proto, dst string) trace.Packet {
	return makePacket(flowNode, proto, dst, trace.LocalOut)
}

func outsiderSends(src, proto, dst string) trace.Packet {
	return makePacket(src, proto, dst, trace.Forwarded)
}

func makePacket(src, proto, dst string, path trace.Path) trace.Packet {
	ap := netip.MustParseAddrPort(dst)
	p, ok := nftrules.ProtocolOf(v1.Protocol(strings.ToUpper(proto)))
	if !ok {
		panic("bad protocol " + proto)
	}
	return trace.Packet{Src: netip.MustParseAddr(src), Dst: ap.Addr(), Proto: p, DstPort: ap.Port(), Path: path}
}

// servicePort returns the service port "ns/name:portname" (":portname" optional)
// with the given ID, protocol, port, comma-separated ClusterIPs and
// endpoints.
func servicePort(id uint32, name, proto string, port uint16, clusterIPs string, eps ...model.Endpoint) *model.ServicePort {
	return modeltest.ServicePort(id, name, v1.Protocol(strings.ToUpper(proto)), port, clusterIPs, eps...)
}

// Endpoint conditions, as EndpointSlices report them.
func readyEP(ap string) model.Endpoint { return makeEndpoint(ap, true, true, false) }
func servingTerminatingEP(ap string) model.Endpoint {
	return makeEndpoint(ap, false, true, true)
}
func notReadyEP(ap string) model.Endpoint { return makeEndpoint(ap, false, false, false) }
func terminatingNotServingEP(ap string) model.Endpoint {
	return makeEndpoint(ap, false, false, true)
}

func makeEndpoint(ap string, isReady, serving, terminating bool) model.Endpoint {
	a := netip.MustParseAddrPort(ap)
	return model.Endpoint{Addr: a.Addr(), Port: a.Port(), Ready: isReady, Serving: serving, Terminating: terminating}
}

// flowCluster returns a State with the cluster's pod CIDRs and the services.
func flowCluster(sps ...*model.ServicePort) *model.State {
	return &model.State{
		NodeName:     "node-a",
		NodeIPs:      []netip.Addr{netip.MustParseAddr(flowNode)},
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("fd00:1::/64")},
		Services:     sps,
	}
}

func TestFlowClusterIP(t *testing.T) {
	st := flowCluster(
		servicePort(1, "ns/web:http", "tcp", 80, "172.30.0.10", readyEP("10.1.0.2:8080"), readyEP("10.1.0.3:8080")),
		servicePort(2, "ns/web:https", "tcp", 443, "172.30.0.10", readyEP("10.1.0.2:8443"), readyEP("10.1.0.3:8443")),
		servicePort(3, "kube-system/dns:dns-tcp", "tcp", 53, "172.30.0.53", readyEP("10.1.0.20:1053")),
		servicePort(4, "kube-system/dns:dns", "udp", 53, "172.30.0.53", readyEP("10.1.0.20:2053"), readyEP("10.1.0.21:2053")),
		servicePort(5, "ns/sig", "sctp", 3868, "172.30.0.20", readyEP("10.1.0.30:3868")),
	)
	checkPacketFlows(t, st, []packetFlow{
		{"TCP reaches every ready endpoint", podSends(flowClientPod, "tcp", "172.30.0.10:80"),
			"DNAT to 10.1.0.2:8080, 10.1.0.3:8080"},
		{"second port of a multi-port Service has its own endpoints", podSends(flowClientPod, "tcp", "172.30.0.10:443"),
			"DNAT to 10.1.0.2:8443, 10.1.0.3:8443"},
		{"UDP reaches the UDP endpoints", podSends(flowClientPod, "udp", "172.30.0.53:53"),
			"DNAT to 10.1.0.20:2053, 10.1.0.21:2053"},
		{"TCP on the same port number reaches the TCP endpoints", podSends(flowClientPod, "tcp", "172.30.0.53:53"),
			"DNAT to 10.1.0.20:1053"},
		{"SCTP", podSends(flowClientPod, "sctp", "172.30.0.20:3868"),
			"DNAT to 10.1.0.30:3868"},
		{"unknown port on a ClusterIP is untouched", podSends(flowClientPod, "tcp", "172.30.0.10:81"),
			"accept"},
		{"known port with another protocol is untouched", podSends(flowClientPod, "udp", "172.30.0.10:80"),
			"accept"},
		{"a non-service address is untouched", podSends(flowClientPod, "tcp", "10.1.0.2:8080"),
			"accept"},
		{"from the node (local out)", nodeSends("tcp", "172.30.0.10:80"),
			"DNAT to 10.1.0.2:8080, 10.1.0.3:8080 (masqueraded)"},
		{"from the node to a non-service address", nodeSends("tcp", "10.1.0.2:8080"),
			"accept"},
		{"to the node itself", makePacket(flowOutsider, "tcp", flowNode+":22", trace.ToLocal),
			"accept"},
	})
}

func TestFlowEndpointSelection(t *testing.T) {
	st := flowCluster(
		servicePort(1, "ns/none", "tcp", 80, "172.30.0.1"),
		servicePort(2, "ns/mixed", "tcp", 80, "172.30.0.2",
			readyEP("10.1.0.2:80"), servingTerminatingEP("10.1.0.3:80"), notReadyEP("10.1.0.4:80")),
		servicePort(3, "ns/draining", "tcp", 80, "172.30.0.3",
			servingTerminatingEP("10.1.0.2:80"), servingTerminatingEP("10.1.0.3:80"), notReadyEP("10.1.0.4:80")),
		servicePort(4, "ns/unready", "tcp", 80, "172.30.0.4",
			notReadyEP("10.1.0.2:80"), terminatingNotServingEP("10.1.0.3:80")),
		servicePort(5, "ns/none-udp", "udp", 53, "172.30.0.5"),
	)
	checkPacketFlows(t, st, []packetFlow{
		{"no endpoints: reject", podSends(flowClientPod, "tcp", "172.30.0.1:80"), "reject"},
		{"no endpoints, UDP: reject", podSends(flowClientPod, "udp", "172.30.0.5:53"), "reject"},
		{"no endpoints, from the node: reject", nodeSends("tcp", "172.30.0.1:80"), "reject"},
		{"no endpoints, other port: untouched", podSends(flowClientPod, "tcp", "172.30.0.1:81"), "accept"},
		{"ready endpoints only when some are ready", podSends(flowClientPod, "tcp", "172.30.0.2:80"),
			"DNAT to 10.1.0.2:80"},
		{"serving terminating endpoints when none is ready", podSends(flowClientPod, "tcp", "172.30.0.3:80"),
			"DNAT to 10.1.0.2:80, 10.1.0.3:80"},
		{"neither ready nor serving-terminating: reject", podSends(flowClientPod, "tcp", "172.30.0.4:80"),
			"reject"},
	})
}

func TestFlowMasquerade(t *testing.T) {
	web := func() *model.ServicePort {
		return servicePort(1, "ns/web", "tcp", 80, "172.30.0.10,fd00:30::10", readyEP("10.1.0.2:8080"), readyEP("[fd00:1::2]:8080"))
	}
	fromCluster := []packetFlow{
		{"from a pod: not masqueraded", podSends(flowClientPod, "tcp", "172.30.0.10:80"), "DNAT to 10.1.0.2:8080"},
		{"from a pod, IPv6: not masqueraded", podSends(flowClientPod6, "tcp", "[fd00:30::10]:80"), "DNAT to [fd00:1::2]:8080"},
	}
	fromElsewhere := []packetFlow{
		{"from outside the cluster: masqueraded", outsiderSends(flowOutsider, "tcp", "172.30.0.10:80"), "DNAT to 10.1.0.2:8080 (masqueraded)"},
		{"from outside, IPv6: masqueraded", outsiderSends(flowOutsider6, "tcp", "[fd00:30::10]:80"), "DNAT to [fd00:1::2]:8080 (masqueraded)"},
		{"from the node: masqueraded", nodeSends("tcp", "172.30.0.10:80"), "DNAT to 10.1.0.2:8080 (masqueraded)"},
	}
	t.Run("with cluster CIDRs", func(t *testing.T) {
		checkPacketFlows(t, flowCluster(web()), append(fromCluster, fromElsewhere...))
	})
	t.Run("masquerade-all", func(t *testing.T) {
		st := flowCluster(web())
		st.MasqueradeAll = true
		checkPacketFlows(t, st, []packetFlow{
			{"from a pod: masqueraded", podSends(flowClientPod, "tcp", "172.30.0.10:80"), "DNAT to 10.1.0.2:8080 (masqueraded)"},
			{"from a pod, IPv6: masqueraded", podSends(flowClientPod6, "tcp", "[fd00:30::10]:80"), "DNAT to [fd00:1::2]:8080 (masqueraded)"},
			{"from outside: masqueraded", outsiderSends(flowOutsider, "tcp", "172.30.0.10:80"), "DNAT to 10.1.0.2:8080 (masqueraded)"},
		})
	})
	t.Run("without cluster CIDRs", func(t *testing.T) {
		st := flowCluster(web())
		st.ClusterCIDRs = nil
		checkPacketFlows(t, st, []packetFlow{
			{"from outside: not masqueraded", outsiderSends(flowOutsider, "tcp", "172.30.0.10:80"), "DNAT to 10.1.0.2:8080"},
		})
	})
	t.Run("with an IPv4 cluster CIDR only", func(t *testing.T) {
		st := flowCluster(web())
		st.ClusterCIDRs = st.ClusterCIDRs[:1]
		checkPacketFlows(t, st, []packetFlow{
			{"from outside, IPv4: masqueraded", outsiderSends(flowOutsider, "tcp", "172.30.0.10:80"), "DNAT to 10.1.0.2:8080 (masqueraded)"},
			{"from outside, IPv6: not masqueraded", outsiderSends(flowOutsider6, "tcp", "[fd00:30::10]:80"), "DNAT to [fd00:1::2]:8080"},
		})
	})
}

// TestFlowHairpin: a pod of this node reaching itself through a Service is
// masqueraded. Only this node's endpoints are hairpin candidates (as
// upstream's hairpin set): a pod's Service traffic is DNATed on its own
// node.
func TestFlowHairpin(t *testing.T) {
	st := flowCluster(
		servicePort(1, "ns/solo", "tcp", 80, "172.30.0.10,fd00:30::10", localEP("10.1.0.2:8080"), localEP("[fd00:1::2]:8080")),
		servicePort(2, "ns/pair", "tcp", 80, "172.30.0.11", localEP("10.1.0.2:8080"), localEP("10.1.0.3:8080")),
		servicePort(3, "ns/remote", "tcp", 80, "172.30.0.12", remoteEP("10.1.0.4:8080")),
	)
	checkPacketFlows(t, st, []packetFlow{
		{"pod to its own Service: masqueraded", podSends("10.1.0.2", "tcp", "172.30.0.10:80"),
			"DNAT to 10.1.0.2:8080 (masqueraded)"},
		{"pod to its own Service, IPv6: masqueraded", podSends("fd00:1::2", "tcp", "[fd00:30::10]:80"),
			"DNAT to [fd00:1::2]:8080 (masqueraded)"},
		{"only the way back to the source is masqueraded", podSends("10.1.0.2", "tcp", "172.30.0.11:80"),
			"DNAT to 10.1.0.2:8080, 10.1.0.3:8080 (masqueraded to 10.1.0.2:8080)"},
		{"another pod is not hairpinned", podSends("10.1.0.3", "tcp", "172.30.0.10:80"),
			"DNAT to 10.1.0.2:8080"},
		{"another node's endpoint is no hairpin candidate", podSends("10.1.0.4", "tcp", "172.30.0.12:80"),
			"DNAT to 10.1.0.4:8080"},
	})
}

func TestFlowDualStack(t *testing.T) {
	st := flowCluster(
		servicePort(1, "ns/v6only", "tcp", 80, "fd00:30::1", readyEP("[fd00:1::2]:8080"), readyEP("[fd00:1::3]:8080")),
		servicePort(2, "ns/dual", "tcp", 80, "172.30.0.2,fd00:30::2",
			readyEP("10.1.0.2:8080"), readyEP("[fd00:1::2]:8080"), readyEP("10.1.0.3:8080")),
		servicePort(3, "ns/dual-v4-endpoints", "tcp", 80, "172.30.0.3,fd00:30::3", readyEP("10.1.0.2:8080")),
	)
	checkPacketFlows(t, st, []packetFlow{
		{"IPv6-only Service", podSends(flowClientPod6, "tcp", "[fd00:30::1]:80"),
			"DNAT to [fd00:1::2]:8080, [fd00:1::3]:8080"},
		{"IPv4 ClusterIP reaches only IPv4 endpoints", podSends(flowClientPod, "tcp", "172.30.0.2:80"),
			"DNAT to 10.1.0.2:8080, 10.1.0.3:8080"},
		{"IPv6 ClusterIP reaches only IPv6 endpoints", podSends(flowClientPod6, "tcp", "[fd00:30::2]:80"),
			"DNAT to [fd00:1::2]:8080"},
		{"IPv6 ClusterIP without IPv6 endpoints: reject", podSends(flowClientPod6, "tcp", "[fd00:30::3]:80"),
			"reject"},
		{"IPv4 ClusterIP of that Service still works", podSends(flowClientPod, "tcp", "172.30.0.3:80"),
			"DNAT to 10.1.0.2:8080"},
		{"IPv6 unknown port: untouched", podSends(flowClientPod6, "tcp", "[fd00:30::2]:81"),
			"accept"},
	})
}

// TestFlowEveryServiceIsReachable traces every ClusterIP and port of a
// larger generated State: none may error, and each must reach exactly its
// own endpoints.
func TestFlowEveryServiceIsReachable(t *testing.T) {
	var sps []*model.ServicePort
	protos := []string{"tcp", "udp", "sctp"}
	for i := 1; i <= 60; i++ {
		var eps []model.Endpoint
		for j := range i%4 + 1 {
			eps = append(eps, readyEP(fmt.Sprintf("10.1.%d.%d:%d", i, j+1, 8000+i)))
		}
		sps = append(sps, servicePort(uint32(i), fmt.Sprintf("ns/s%d", i), protos[i%3], uint16(80+i%2), fmt.Sprintf("172.30.1.%d", i), eps...))
	}
	rs := nftrules.Build(flowCluster(sps...))
	for _, sp := range sps {
		p := podSends(flowClientPod, strings.ToLower(string(sp.Protocol)), netip.AddrPortFrom(sp.ClusterIPs[0], sp.Port).String())
		r, err := trace.Trace(rs, p)
		if err != nil {
			t.Fatalf("Trace: %v", err)
		}
		if r.Outcome != trace.DNAT || len(r.Targets) != len(sp.Endpoints) {
			t.Errorf("%v: got %v, want DNAT to the %d endpoints of %s", p, r, len(sp.Endpoints), sp.Name)
			continue
		}
		for i, ep := range sp.Endpoints {
			if r.Targets[i] != ep.AddrPort() {
				t.Errorf("%v: target %d is %v, want %v", p, i, r.Targets[i], ep.AddrPort())
			}
		}
	}
}

// A first packet of a client without affinity yet may reach every endpoint,
// exactly as without affinity; masquerade and hairpin are unchanged. (The
// stickiness itself is kernel state, proven in TestKernelSessionAffinity.)
func TestFlowSessionAffinity(t *testing.T) {
	sticky := servicePort(1, "default/sticky", "tcp", 80, "172.30.0.40,fd00:30::40",
		localEP("10.1.0.2:8080"), localEP("10.1.0.3:8080"), localEP("[fd00:1::2]:8080"))
	sticky.SessionAffinityClientIP, sticky.AffinityTimeoutSeconds = true, 5
	checkPacketFlows(t, flowCluster(sticky), []packetFlow{
		{"pod to ClusterIP: any endpoint", podSends(flowClientPod, "tcp", "172.30.0.40:80"), "DNAT to 10.1.0.2:8080, 10.1.0.3:8080"},
		{"outsider to ClusterIP: any endpoint, masqueraded", outsiderSends(flowOutsider, "tcp", "172.30.0.40:80"), "DNAT to 10.1.0.2:8080, 10.1.0.3:8080 (masqueraded)"},
		{"IPv6: the IPv6 endpoint", podSends(flowClientPod6, "tcp", "[fd00:30::40]:80"), "DNAT to [fd00:1::2]:8080"},
		{"hairpin through an endpoint chain", podSends("10.1.0.2", "tcp", "172.30.0.40:80"), "DNAT to 10.1.0.2:8080, 10.1.0.3:8080 (masqueraded to 10.1.0.2:8080)"},
		{"other port: untouched", podSends(flowClientPod, "tcp", "172.30.0.40:81"), "accept"},
	})
}
