package model

import (
	"fmt"
	"math"
	"strings"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// fuzzInput decodes API objects from the fuzzer's bytes. Every choice takes
// one byte (past the end: zero, the first choice), so a short input is a
// small object and each byte the fuzzer flips changes one field. Values are
// drawn from pools of hostile spellings (bad, mapped, zoned, legacy and
// special addresses, out-of-range ports, unknown protocols, names of the
// maximum length) or, for strings, taken raw from the input.
type fuzzInput struct{ b []byte }

func (in *fuzzInput) byte() byte {
	if len(in.b) == 0 {
		return 0
	}
	c := in.b[0]
	in.b = in.b[1:]
	return c
}

func (in *fuzzInput) intn(n int) int { return int(in.byte()) % n }

// raw returns up to 24 bytes of the input as a string (any bytes at all).
func (in *fuzzInput) raw() string {
	n := min(in.intn(25), len(in.b))
	s := string(in.b[:n])
	in.b = in.b[n:]
	return s
}

// pick returns one of pool, or (for the choice just past it) raw input.
func (in *fuzzInput) pick(pool []string) string {
	i := in.intn(len(pool) + 1)
	if i == len(pool) {
		return in.raw()
	}
	return pool[i]
}

// fuzzPtr returns nil or a pointer to a value decode chooses.
func fuzzPtr[T any](in *fuzzInput, decode func() T) *T {
	if in.intn(4) == 0 {
		return nil
	}
	v := decode()
	return &v
}

var (
	fuzzIPs = []string{
		"10.96.0.10", "fd00::10", "10.0.0.1", "10.0.0.2", "fd00:1::1", "fd00:1::2",
		"203.0.113.7", "2001:db8::7", "10.96.0.11", "fd00::11",
		"010.096.000.010", "10.0.0.01", "::ffff:10.0.0.1", "::ffff:10.96.0.10", "::ffff:a00:1",
		"0.0.0.0", "::", "127.0.0.1", "::1", "224.0.0.1", "ff02::1", "169.254.0.1", "fe80::1",
		"fe80::1%eth0", "fd00::1%1", "255.255.255.255", "None", "", " 10.0.0.1", "10.0.0.256",
		"1.2.3", "1.2.3.4.5", "10.0.0.1/32", "0x0a000001", "::ffff:0.0.0.0", "FD00::10",
	}
	fuzzCIDRs = []string{
		"10.0.0.0/8", "192.168.1.7/24", " 10.0.0.0/8 ", "0.0.0.0/0", "::/0", "fd00::/8",
		"010.000.000.000/08", "10.0.0.0/+8", "::ffff:10.0.0.0/104", "::ffff:10.0.0.0/64",
		"10.0.0.0/33", "fd00::/129", "10.0.0.0", "bogus", "", "fe80::/10%eth0", "10.0.0.0/-1",
	}
	fuzzNames     = []string{"", "http", "dns", "a-b", "HTTP", "p", strings.Repeat("x", 15), strings.Repeat("n", 63), strings.Repeat("l", 253)}
	fuzzProtocols = []string{"", "TCP", "UDP", "SCTP", "tcp", "ICMP", "TCP "}
	fuzzInt32s    = []int32{0, 1, 53, 80, 443, 8080, 30000, 32767, 65535, 65536, -1, math.MinInt32, math.MaxInt32}
	fuzzNodes     = []string{"node", "other", ""}
)

func (in *fuzzInput) int32() int32 {
	i := in.intn(len(fuzzInt32s) + 1)
	if i == len(fuzzInt32s) {
		return int32(in.byte())<<8 | int32(in.byte())
	}
	return fuzzInt32s[i]
}

func (in *fuzzInput) bool() bool { return in.byte()&1 == 1 }

// count returns a small count, or now and then a large one (up to ~1000).
func (in *fuzzInput) count(small int) int {
	c := in.byte()
	if c&0x80 != 0 {
		return int(c&0x7f) * 8
	}
	return int(c) % (small + 1)
}

func (in *fuzzInput) ips(small int) []string {
	var out []string
	for n := in.intn(small + 1); n > 0; n-- {
		out = append(out, in.pick(fuzzIPs))
	}
	return out
}

// service decodes a Service (nil now and then).
func (in *fuzzInput) service() *v1.Service {
	if in.intn(32) == 31 {
		return nil
	}
	svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{
		Namespace: in.pick([]string{"ns", "", strings.Repeat("m", 63)}),
		Name:      in.pick([]string{"svc", "", strings.Repeat("s", 63)}),
	}}
	s := &svc.Spec
	s.Type = v1.ServiceType(in.pick([]string{"ClusterIP", "NodePort", "LoadBalancer", "ExternalName", ""}))
	s.ClusterIPs = in.ips(3)
	if in.bool() {
		s.ClusterIP = in.pick(fuzzIPs)
	}
	for n := in.count(5); n > 0; n-- {
		s.Ports = append(s.Ports, v1.ServicePort{
			Name: in.pick(fuzzNames), Protocol: v1.Protocol(in.pick(fuzzProtocols)),
			Port: in.int32(), NodePort: in.int32(),
		})
	}
	s.ExternalIPs = in.ips(4)
	for n := in.intn(4); n > 0; n-- {
		ing := v1.LoadBalancerIngress{IP: in.pick(fuzzIPs)}
		ing.IPMode = fuzzPtr(in, func() v1.LoadBalancerIPMode {
			return v1.LoadBalancerIPMode(in.pick([]string{"VIP", "Proxy", ""}))
		})
		svc.Status.LoadBalancer.Ingress = append(svc.Status.LoadBalancer.Ingress, ing)
	}
	for n := in.intn(4); n > 0; n-- {
		s.LoadBalancerSourceRanges = append(s.LoadBalancerSourceRanges, in.pick(fuzzCIDRs))
	}
	s.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicy(in.pick([]string{"Cluster", "Local", ""}))
	s.InternalTrafficPolicy = fuzzPtr(in, func() v1.ServiceInternalTrafficPolicy {
		return v1.ServiceInternalTrafficPolicy(in.pick([]string{"Cluster", "Local"}))
	})
	s.SessionAffinity = v1.ServiceAffinity(in.pick([]string{"None", "ClientIP", ""}))
	s.SessionAffinityConfig = fuzzPtr(in, func() v1.SessionAffinityConfig {
		return v1.SessionAffinityConfig{ClientIP: fuzzPtr(in, func() v1.ClientIPConfig {
			return v1.ClientIPConfig{TimeoutSeconds: fuzzPtr(in, func() int32 {
				return []int32{0, -1, 1, 10800, 86400, 86401, math.MaxInt32}[in.intn(7)]
			})}
		})}
	})
	s.HealthCheckNodePort = in.int32()
	return svc
}

// slices decodes the EndpointSlices offered with svc: mostly its own, some
// of another Service or namespace, some nil. Names are unique, as in the
// API.
func (in *fuzzInput) slices(svc *v1.Service) []*discovery.EndpointSlice {
	ns, name := "ns", "svc"
	if svc != nil {
		ns, name = svc.Namespace, svc.Name
	}
	var out []*discovery.EndpointSlice
	for i := in.intn(5); i > 0; i-- {
		if in.intn(16) == 0 {
			out = append(out, nil)
			continue
		}
		sl := &discovery.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("slice-%d", i)}}
		switch in.intn(8) {
		case 0:
			sl.Namespace = "other"
		case 1:
			sl.Labels = map[string]string{LabelServiceName: "other"}
		case 2: // no labels
		default:
			sl.Labels = map[string]string{LabelServiceName: name}
		}
		sl.AddressType = discovery.AddressType(in.pick([]string{"IPv4", "IPv6", "FQDN", ""}))
		for n := in.intn(4); n > 0; n-- {
			sl.Ports = append(sl.Ports, discovery.EndpointPort{
				Name:     fuzzPtr(in, func() string { return in.pick(fuzzNames) }),
				Protocol: fuzzPtr(in, func() v1.Protocol { return v1.Protocol(in.pick(fuzzProtocols)) }),
				Port:     fuzzPtr(in, in.int32),
			})
		}
		sl.Endpoints = in.endpoints()
		out = append(out, sl)
	}
	return out
}

// endpoints decodes a few endpoints one by one, or many generated from a
// few bytes (addresses from a small range, so duplicates are common).
func (in *fuzzInput) endpoints() []discovery.Endpoint {
	n := in.count(4)
	if n > 4 {
		base, span := in.byte(), 1+in.intn(255)
		out := make([]discovery.Endpoint, n)
		for i := range out {
			k := (int(base) + i) % span
			addr := fmt.Sprintf("10.244.%d.%d", k/256, k%256)
			if base&1 == 1 {
				addr = fmt.Sprintf("fd00:244::%x", k)
			}
			out[i] = discovery.Endpoint{Addresses: []string{addr}, Conditions: discovery.EndpointConditions{Ready: ptr.To(i%3 != 0)}}
		}
		return out
	}
	out := make([]discovery.Endpoint, n)
	for i := range out {
		e := &out[i]
		e.Addresses = in.ips(2)
		cond := func() bool { return in.bool() }
		e.Conditions = discovery.EndpointConditions{Ready: fuzzPtr(in, cond), Serving: fuzzPtr(in, cond), Terminating: fuzzPtr(in, cond)}
		e.NodeName = fuzzPtr(in, func() string { return in.pick(fuzzNodes) })
		e.Zone = fuzzPtr(in, func() string { return in.pick([]string{"z1", "z2", ""}) })
		if in.intn(3) == 0 {
			e.Hints = &discovery.EndpointHints{}
			for k := in.intn(3); k > 0; k-- {
				e.Hints.ForZones = append(e.Hints.ForZones, discovery.ForZone{Name: in.pick([]string{"z2", "z1", ""})})
				e.Hints.ForNodes = append(e.Hints.ForNodes, discovery.ForNode{Name: in.pick(fuzzNodes)})
			}
		}
	}
	return out
}
