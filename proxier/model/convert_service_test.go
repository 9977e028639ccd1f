package model

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	v1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

// netip values have unexported fields: compare them with ==.
var cmpAddrs = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
}

func TestServicePortsService(t *testing.T) {
	tcp, udp := v1.ProtocolTCP, v1.ProtocolUDP
	tests := []struct {
		name    string
		svc     *v1.Service
		want    []*ServicePort
		rejects []string
	}{
		{
			name: "plain ClusterIP",
			svc:  testService(),
			want: []*ServicePort{wantPort("http", tcp, 80)},
		},
		{
			name: "dual-stack keeps both families, primary first",
			svc: testService(func(s *v1.Service) {
				s.Spec.ClusterIPs = []string{"fd00::10", "10.96.0.10"}
			}),
			want: []*ServicePort{wantPort("http", tcp, 80, func(sp *ServicePort) {
				sp.ClusterIPs = addrs("fd00::10", "10.96.0.10")
			})},
		},
		{
			name: "legacy object with only spec.clusterIP",
			svc:  testService(func(s *v1.Service) { s.Spec.ClusterIPs = nil }),
			want: []*ServicePort{wantPort("http", tcp, 80)},
		},
		{
			name:    "ExternalName is skipped",
			svc:     testService(func(s *v1.Service) { s.Spec.Type = v1.ServiceTypeExternalName }),
			rejects: []string{"Service/svc:ExternalName:skip"},
		},
		{
			name: "headless is skipped",
			svc: testService(func(s *v1.Service) {
				s.Spec.ClusterIP, s.Spec.ClusterIPs = "None", []string{"None"}
			}),
			rejects: []string{"Service/svc:Headless:skip"},
		},
		{
			name: "no cluster IP yet is skipped",
			svc: testService(func(s *v1.Service) {
				s.Spec.ClusterIP, s.Spec.ClusterIPs = "", nil
			}),
			rejects: []string{"Service/svc:Headless:skip"},
		},
		{
			name: "bad secondary cluster IP is dropped, the rest kept",
			svc: testService(func(s *v1.Service) {
				s.Spec.ClusterIPs = []string{"10.96.0.10", "fd00::zz"}
			}),
			want:    []*ServicePort{wantPort("http", tcp, 80)},
			rejects: []string{"Service/svc:InvalidClusterIP:invalid"},
		},
		{
			name: "two cluster IPs of one family: second dropped",
			svc: testService(func(s *v1.Service) {
				s.Spec.ClusterIPs = []string{"10.96.0.10", "10.96.0.11"}
			}),
			want:    []*ServicePort{wantPort("http", tcp, 80)},
			rejects: []string{"Service/svc:InvalidClusterIP:invalid"},
		},
		{
			name: "cluster IP of a family ipFamilies does not list is dropped",
			svc: testService(func(s *v1.Service) {
				s.Spec.ClusterIPs = []string{"10.96.0.10", "fd00::10"}
				s.Spec.IPFamilies = []v1.IPFamily{v1.IPv4Protocol}
			}),
			want:    []*ServicePort{wantPort("http", tcp, 80)},
			rejects: []string{"Service/svc:InvalidClusterIP:invalid"},
		},
		{
			name: "cluster IPs in the other order than ipFamilies are dropped",
			svc: testService(func(s *v1.Service) {
				s.Spec.ClusterIPs = []string{"10.96.0.10", "fd00::10"}
				s.Spec.IPFamilies = []v1.IPFamily{v1.IPv6Protocol, v1.IPv4Protocol}
			}),
			rejects: []string{"Service/svc:InvalidClusterIP:invalid", "Service/svc:InvalidClusterIP:invalid", "Service/svc:NoValidClusterIP:invalid"},
		},
		{
			name: "dual-stack agreeing with ipFamilies",
			svc: testService(func(s *v1.Service) {
				s.Spec.ClusterIPs = []string{"fd00::10", "10.96.0.10"}
				s.Spec.IPFamilies = []v1.IPFamily{v1.IPv6Protocol, v1.IPv4Protocol}
			}),
			want: []*ServicePort{wantPort("http", tcp, 80, func(sp *ServicePort) {
				sp.ClusterIPs = addrs("fd00::10", "10.96.0.10")
			})},
		},
		{
			name: "no valid cluster IP at all",
			svc: testService(func(s *v1.Service) {
				s.Spec.ClusterIPs = []string{"bogus", "0.0.0.0"}
			}),
			rejects: []string{"Service/svc:InvalidClusterIP:invalid", "Service/svc:InvalidClusterIP:invalid", "Service/svc:NoValidClusterIP:invalid"},
		},
		{
			name: "ClientIP affinity defaults its timeout",
			svc:  testService(func(s *v1.Service) { s.Spec.SessionAffinity = v1.ServiceAffinityClientIP }),
			want: []*ServicePort{wantPort("http", tcp, 80, func(sp *ServicePort) {
				sp.SessionAffinityClientIP, sp.AffinityTimeoutSeconds = true, 10800
			})},
		},
		{
			name: "ClientIP affinity with explicit timeout",
			svc: testService(func(s *v1.Service) {
				s.Spec.SessionAffinity = v1.ServiceAffinityClientIP
				s.Spec.SessionAffinityConfig = &v1.SessionAffinityConfig{ClientIP: &v1.ClientIPConfig{TimeoutSeconds: ptr.To(int32(60))}}
			}),
			want: []*ServicePort{wantPort("http", tcp, 80, func(sp *ServicePort) {
				sp.SessionAffinityClientIP, sp.AffinityTimeoutSeconds = true, 60
			})},
		},
		{
			name: "out-of-range affinity timeout falls back to the default",
			svc: testService(func(s *v1.Service) {
				s.Spec.SessionAffinity = v1.ServiceAffinityClientIP
				s.Spec.SessionAffinityConfig = &v1.SessionAffinityConfig{ClientIP: &v1.ClientIPConfig{TimeoutSeconds: ptr.To(int32(0))}}
			}),
			want: []*ServicePort{wantPort("http", tcp, 80, func(sp *ServicePort) {
				sp.SessionAffinityClientIP, sp.AffinityTimeoutSeconds = true, 10800
			})},
			rejects: []string{"Service/svc:InvalidAffinityTimeout:invalid"},
		},
		{
			name: "timeout without ClientIP affinity is ignored",
			svc: testService(func(s *v1.Service) {
				s.Spec.SessionAffinityConfig = &v1.SessionAffinityConfig{ClientIP: &v1.ClientIPConfig{TimeoutSeconds: ptr.To(int32(60))}}
			}),
			want: []*ServicePort{wantPort("http", tcp, 80)},
		},
		{
			name: "LoadBalancer with everything",
			svc: testService(func(s *v1.Service) {
				s.Spec.Type = v1.ServiceTypeLoadBalancer
				s.Spec.Ports[0].NodePort = 30080
				s.Spec.ExternalIPs = []string{"192.0.2.9", "192.0.2.1", "192.0.2.9", "2001:db8::1", "nope"}
				s.Spec.LoadBalancerSourceRanges = []string{" 198.51.100.0/24", "10.0.0.0/8", "2001:db8::/32", "bad/99"}
				s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
				s.Spec.HealthCheckNodePort = 32000
				s.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{
					{IP: "203.0.113.7"},
					{IP: "203.0.113.5", IPMode: ptr.To(v1.LoadBalancerIPModeVIP)},
					{IP: "203.0.113.6", IPMode: ptr.To(v1.LoadBalancerIPModeProxy)},
					{Hostname: "lb.example.com"},
				}
			}),
			want: []*ServicePort{wantPort("http", tcp, 80, func(sp *ServicePort) {
				sp.NodePort = 30080
				sp.ExternalIPs = addrs("192.0.2.1", "192.0.2.9")
				sp.LoadBalancerIPs = addrs("203.0.113.5", "203.0.113.7")
				sp.SourceRanges = prefixes("10.0.0.0/8", "198.51.100.0/24", "2001:db8::/32")
				sp.ExternalPolicyLocal = true
				sp.HealthCheckNodePort = 32000
			})},
			rejects: []string{
				"Service/svc:IPFamilyMismatch:invalid", // 2001:db8::1 on a single-stack IPv4 Service
				"Service/svc:InvalidIP:invalid",
				"Service/svc:InvalidSourceRange:invalid",
			},
		},
		{
			name: "ETP Local on a purely internal Service has no effect",
			svc: testService(func(s *v1.Service) {
				s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
			}),
			want: []*ServicePort{wantPort("http", tcp, 80)},
		},
		{
			name: "ETP Local on ClusterIP with external IPs; no health check port",
			svc: testService(func(s *v1.Service) {
				s.Spec.ExternalIPs = []string{"192.0.2.1"}
				s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
				s.Spec.HealthCheckNodePort = 32000
			}),
			want: []*ServicePort{wantPort("http", tcp, 80, func(sp *ServicePort) {
				sp.ExternalIPs = addrs("192.0.2.1")
				sp.ExternalPolicyLocal = true
			})},
		},
		{
			name: "ITP Local",
			svc: testService(func(s *v1.Service) {
				s.Spec.InternalTrafficPolicy = ptr.To(v1.ServiceInternalTrafficPolicyLocal)
			}),
			want: []*ServicePort{wantPort("http", tcp, 80, func(sp *ServicePort) { sp.InternalPolicyLocal = true })},
		},
		{
			name: "bad ports are dropped, good ones kept and sorted by name",
			svc: testService(func(s *v1.Service) {
				s.Spec.Ports = []v1.ServicePort{
					{Name: "z", Port: 53, Protocol: udp},
					{Name: "a", Port: 53}, // protocol defaults to TCP
					{Name: "bad-proto", Port: 1, Protocol: "ICMP"},
					{Name: "zero", Port: 0, Protocol: tcp},
					{Name: "big", Port: 70000, Protocol: tcp},
					{Name: "bad-nodeport", Port: 2, Protocol: tcp, NodePort: -1},
					{Name: "a", Port: 54, Protocol: tcp},   // duplicate name
					{Name: "dup", Port: 53, Protocol: udp}, // duplicate number
				}
			}),
			want: []*ServicePort{wantPort("a", tcp, 53), wantPort("z", udp, 53)},
			rejects: []string{
				"Service/svc:UnknownProtocol:invalid", "Service/svc:InvalidPort:invalid",
				"Service/svc:InvalidPort:invalid", "Service/svc:InvalidNodePort:invalid",
				"Service/svc:DuplicatePort:invalid", "Service/svc:DuplicatePort:invalid",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, rj := ServicePorts(tc.svc, nil)
			if diff := cmp.Diff(tc.want, got, cmpAddrs, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("ports (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.rejects, summary(rj), cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
				t.Errorf("rejections (-want +got):\n%s\nall: %v", diff, rj)
			}
		})
	}
}

// Every source range invalid must not read as "no restriction".
func TestServicePortsSourceRangesFailClosed(t *testing.T) {
	got, rj := ServicePorts(testService(func(s *v1.Service) {
		s.Spec.Type = v1.ServiceTypeLoadBalancer
		s.Spec.LoadBalancerSourceRanges = []string{"bad", "10.0.0.0/40"}
	}), nil)
	if len(got) != 1 || got[0].SourceRanges == nil || len(got[0].SourceRanges) != 0 {
		t.Fatalf("SourceRanges = %#v, want non-nil empty", got[0].SourceRanges)
	}
	if len(rj) != 3 {
		t.Errorf("rejections = %v, want 2 bad ranges + fail-closed notice", rj)
	}
}

func TestServicePortsNil(t *testing.T) {
	if got, rj := ServicePorts(nil, nil); got != nil || rj != nil {
		t.Errorf("ServicePorts(nil) = %v, %v", got, rj)
	}
}
