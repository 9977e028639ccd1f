package e2e

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/nftproxy/nftproxy/e2e/lab"
	"github.com/nftproxy/nftproxy/nftrules/dump"
)

// The hostile and malformed input catalogue of
// ../shared/reference/kube-proxy-behaviour.md and the address conflicts of
// proxier/claims, as objects for TestFaultHostileInput. What the apiserver
// stores is created through it; what its validation refuses is stored in
// a valid form and changed on the way to node-1's nftproxy (patchAnnotation,
// applied by the lab's API rewriter).

// patchAnnotation holds a JSON merge patch (RFC 7386) that the API
// rewriter applies to the object before node-1's nftproxy sees it.
const patchAnnotation = "faults.nftproxy.test/patch"

// hostile is one catalogue entry.
type hostile struct {
	entry  string // the catalogue's words
	svc    *corev1.Service
	slices []*discoveryv1.EndpointSlice
	// The Warning Event (and log line) nftproxy must emit: on the object
	// of kind eventKind named eventObj, with reason. Empty reason: valid
	// input handled by design (no Warning).
	eventKind, eventObj, reason string
	// logs, if set, is a log line nftproxy must write instead (input it
	// ignores without an Event).
	logs string
	// check inspects node-1's kernel once everything is processed and
	// returns what is wrong ("" if nothing).
	check func(r *hostileRun, d *dump.Dump) string
}

// patched marks an object to be changed on the way to node-1's proxy.
func patched(meta *metav1.ObjectMeta, patch string) {
	if meta.Annotations == nil {
		meta.Annotations = map[string]string{}
	}
	meta.Annotations[patchAnnotation] = patch
}

// wantEndpoints checks that Service name's ClusterIP (port 80/TCP) sends
// node-1's traffic to exactly the given pods' addresses.
func wantEndpoints(ns, name string, pods ...string) func(*hostileRun, *dump.Dump) string {
	return func(r *hostileRun, d *dump.Dump) string {
		var want []string
		for _, p := range pods {
			want = append(want, r.l.Pod(p).IPv4.String())
		}
		slices.Sort(want)
		ip := r.clusterIP(ns, name)
		if got := endpointAddrs(frontend(d, ip, lab.SvcPort, "TCP")); !slices.Equal(got, want) {
			return fmt.Sprintf("%s/%s (%s) has endpoints %v, want %v", ns, name, ip, got, want)
		}
		return ""
	}
}

// wantFrontend checks the kernel status of addr:port/TCP ("" for absent).
func wantFrontend(addr func(*hostileRun) string, port uint16, status string) func(*hostileRun, *dump.Dump) string {
	return func(r *hostileRun, d *dump.Dump) string {
		a := addr(r)
		got := ""
		if fe := frontend(d, a, port, "TCP"); fe != nil {
			got = fe.Status
		}
		if got != status {
			return fmt.Sprintf("%s:%d is %q in the kernel, want %q", a, port, got, status)
		}
		return ""
	}
}

func all(checks ...func(*hostileRun, *dump.Dump) string) func(*hostileRun, *dump.Dump) string {
	return func(r *hostileRun, d *dump.Dump) string {
		var bad []string
		for _, c := range checks {
			if msg := c(r, d); msg != "" {
				bad = append(bad, msg)
			}
		}
		return strings.Join(bad, "; ")
	}
}

func fixed(a string) func(*hostileRun) string { return func(*hostileRun) string { return a } }

// Addresses the catalogue uses as external IPs (TEST-NET-3: they exist
// nowhere; the DNAT on node-1 is what answers).
const (
	extDup    = "203.0.113.10"
	extValid  = "203.0.113.20"
	ingressIP = "203.0.113.30"
	proxyIP   = "203.0.113.40"
)

// longNS and longName are at the API's maximum lengths.
var (
	longNS   = "ns-" + strings.Repeat("n", 60)
	longName = "svc-" + strings.Repeat("s", 59)
)

// hostileCatalogue builds the cases; pods web-0 and web-1 serve, evil-0
// is the pod of the Services that try to take others' addresses.
func hostileCatalogue(r *hostileRun) []hostile {
	web0, web1 := r.l.Pod("web-0").IPv4.String(), r.l.Pod("web-1").IPv4.String()
	v4 := discoveryv1.AddressTypeIPv4
	tcpName := ptr.To("tcp")
	lbService := func(name string) *corev1.Service {
		s := lab.ServiceFor(name, "web", false)
		s.Spec.Type = corev1.ServiceTypeLoadBalancer
		return s
	}
	var cs []hostile
	add := func(h hostile) { cs = append(cs, h) }

	// EndpointSlices the apiserver stores as they are.
	add(hostile{entry: "same address:port in two slices of one Service (used once)",
		svc:    manualService("default", "dup-endpoint"),
		slices: []*discoveryv1.EndpointSlice{handSlice("default", "dup-endpoint-a", "dup-endpoint", v4, tcpName, web0), handSlice("default", "dup-endpoint-b", "dup-endpoint", v4, tcpName, web0, web1)},
		check:  wantEndpoints("default", "dup-endpoint", "web-0", "web-1")})
	nilPort := handSlice("default", "nil-port-a", "nil-port", v4, tcpName, web0)
	nilPort.Ports[0].Port = nil
	add(hostile{entry: "slice port with nil port",
		svc:       manualService("default", "nil-port"),
		slices:    []*discoveryv1.EndpointSlice{nilPort, handSlice("default", "nil-port-b", "nil-port", v4, tcpName, web1)},
		eventKind: "EndpointSlice", eventObj: "nil-port-a", reason: "InvalidPort",
		check: wantEndpoints("default", "nil-port", "web-1")})
	unnamed := manualService("default", "nil-name")
	unnamed.Spec.Ports[0].Name = ""
	add(hostile{entry: "slice port with nil name (the Service's unnamed port)",
		svc: unnamed, slices: []*discoveryv1.EndpointSlice{handSlice("default", "nil-name-a", "nil-name", v4, nil, web0)},
		check: wantEndpoints("default", "nil-name", "web-0")})
	add(hostile{entry: "slice without the kubernetes.io/service-name label (ignored)",
		slices: []*discoveryv1.EndpointSlice{handSlice("default", "no-label", "", v4, tcpName, web0)},
		logs:   `label: it belongs to no Service" endpointSlice="default/no-label"`})
	add(hostile{entry: "slice naming a Service that does not exist (ignored until it does)",
		slices: []*discoveryv1.EndpointSlice{handSlice("default", "ghost-a", "ghost", v4, tcpName, web0)},
		check: func(r *hostileRun, d *dump.Dump) string {
			if !r.ghostCreated {
				return "" // checked again once the Service exists
			}
			return wantEndpoints("default", "ghost", "web-0")(r, d)
		}})
	fqdn := handSlice("default", "fqdn-a", "fqdn", discoveryv1.AddressTypeFQDN, tcpName, "backend.example.com")
	add(hostile{entry: "FQDN slice (ignored)",
		svc: manualService("default", "fqdn"), slices: []*discoveryv1.EndpointSlice{fqdn},
		check: wantFrontend(func(r *hostileRun) string { return r.clusterIP("default", "fqdn") }, lab.SvcPort, dump.StatusNoEndpoints)})
	var big []*discoveryv1.EndpointSlice
	for i := range 5 {
		var addrs []string
		for j := range 1000 {
			addrs = append(addrs, fmt.Sprintf("10.245.%d.%d", i*4+j/250, j%250+1))
		}
		big = append(big, handSlice("default", fmt.Sprintf("big-%d", i), "big", v4, tcpName, addrs...))
	}
	add(hostile{entry: "a Service of 5 slices × 1,000 endpoints",
		svc: manualService("default", "big"), slices: big,
		check: func(r *hostileRun, d *dump.Dump) string {
			if n := len(frontend(d, r.clusterIP("default", "big"), lab.SvcPort, "TCP").Endpoints); n != 5000 {
				return fmt.Sprintf("big has %d endpoints in the kernel, want 5000", n)
			}
			return ""
		}})
	long := manualService(longNS, longName)
	long.Spec.Ports[0].Name = "p" + strings.Repeat("o", 13) + "t"
	add(hostile{entry: "namespace and name of 63 characters, port name of 15",
		svc:    long,
		slices: []*discoveryv1.EndpointSlice{handSlice(longNS, "long-a", longName, v4, ptr.To(long.Spec.Ports[0].Name), web0)},
		check:  wantEndpoints(longNS, longName, "web-0")})

	// Service fields the apiserver stores as they are.
	lbHost := lbService("lb-hostname")
	lbHost.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{Hostname: "lb.example.com"}}
	add(hostile{entry: "load-balancer ingress with only a hostname", svc: lbHost,
		check: wantEndpoints("default", "lb-hostname", "web-0", "web-1")})
	lbProxy := lbService("ipmode-proxy")
	lbProxy.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: proxyIP, IPMode: ptr.To(corev1.LoadBalancerIPModeProxy)}}
	add(hostile{entry: "ipMode Proxy (no VIP rules)", svc: lbProxy,
		check: all(wantEndpoints("default", "ipmode-proxy", "web-0", "web-1"), wantFrontend(fixed(proxyIP), lab.SvcPort, ""))})
	noNP := lbService("no-nodeport")
	noNP.Spec.AllocateLoadBalancerNodePorts = ptr.To(false)
	noNP.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ingressIP}}
	add(hostile{entry: "LoadBalancer without node ports (nodePort 0)", svc: noNP,
		check: func(r *hostileRun, d *dump.Dump) string {
			for _, sp := range d.Services {
				for _, fe := range sp.Frontends {
					if fe.Kind == dump.KindNodePort && fe.Port == 0 {
						return "a node port 0 is programmed"
					}
				}
			}
			return wantFrontend(fixed(ingressIP), lab.SvcPort, dump.StatusActive)(r, d)
		}})

	// Address conflicts (proxier/claims), all stored by the apiserver.
	taker := lab.ServiceFor("cip-taker", "evil", false)
	taker.Spec.ExternalIPs = []string{r.clusterIP("default", "victim")}
	npTaker := lab.ServiceFor("np-taker", "evil", false)
	npTaker.Spec.Ports = []corev1.ServicePort{{Name: "tcp", Protocol: corev1.ProtocolTCP, Port: int32(r.nodePort), TargetPort: intstr.FromInt32(lab.PodPort)}}
	npTaker.Spec.ExternalIPs = []string{r.l.Node("node-1").IPv4.String()}
	add(hostile{entry: "externalIP equal to another Service's ClusterIP", svc: taker,
		eventKind: "Service", eventObj: "cip-taker", reason: "ExternalAddressIsClusterIP",
		check: func(r *hostileRun, d *dump.Dump) string { return r.onlyWeb(r.clusterIP("default", "victim")) }})
	for _, n := range []string{"dup-ext-a", "dup-ext-b"} {
		app := "web"
		if n == "dup-ext-b" {
			app = "evil"
		}
		s := lab.ServiceFor(n, app, false)
		s.Spec.ExternalIPs = []string{extDup}
		h := hostile{entry: "two Services with the same external IP and port", svc: s}
		if n == "dup-ext-b" {
			h.eventKind, h.eventObj, h.reason = "Service", n, "DuplicateExternalAddress"
			h.check = func(r *hostileRun, d *dump.Dump) string { return r.onlyWeb(extDup) }
		}
		add(h)
	}
	add(hostile{entry: "externalIP on a node address at a NodePort's port", svc: npTaker,
		eventKind: "Service", eventObj: "np-taker", reason: "ExternalAddressOnNodePort",
		check: func(r *hostileRun, d *dump.Dump) string {
			return r.onlyWebAt(r.l.Node("node-1").IPv4.String(), r.nodePort)
		}})

	// What the apiserver's validation refuses: changed on the way.
	for _, c := range []struct{ name, entry, reason, patch string }{
		{"bad-addr", "slice endpoint address that does not parse", "InvalidEndpoint",
			`{"endpoints":[{"addresses":["not-an-ip"],"conditions":{"ready":true}},{"addresses":["` + web1 + `"],"conditions":{"ready":true}}]}`},
		{"wrong-family", "slice endpoint of the other family than addressType", "InvalidEndpoint",
			`{"endpoints":[{"addresses":["fd44::99"],"conditions":{"ready":true}},{"addresses":["` + web1 + `"],"conditions":{"ready":true}}]}`},
		{"port-zero", "slice port 0", "InvalidPort", `{"ports":[{"name":"tcp","port":0,"protocol":"TCP"}]}`},
		{"bad-proto", "slice port with an unknown protocol", "UnknownProtocol", `{"ports":[{"name":"tcp","port":8080,"protocol":"ICMP"}]}`},
	} {
		bad := handSlice("default", c.name+"-a", c.name, v4, tcpName, web0, web1)
		patched(&bad.ObjectMeta, c.patch)
		want := []string{"web-1"}
		if c.name == "port-zero" || c.name == "bad-proto" {
			// the whole slice is out; the other slice still serves web-1
			bad.Endpoints = bad.Endpoints[:1]
		}
		add(hostile{entry: c.entry + " (through the rewriter)", svc: manualService("default", c.name),
			slices:    []*discoveryv1.EndpointSlice{bad, handSlice("default", c.name+"-b", c.name, v4, tcpName, web1)},
			eventKind: "EndpointSlice", eventObj: c.name + "-a", reason: c.reason,
			check: wantEndpoints("default", c.name, want...)})
	}
	svcPatches := []struct{ name, entry, reason, patch string }{
		{"mixed-families", "clusterIPs of a family ipFamilies does not list", "InvalidClusterIP",
			`{"spec":{"clusterIPs":["CLUSTERIP","fd96::ffff"],"ipFamilies":["IPv4"]}}`},
		{"bad-extip", "externalIPs that do not parse", "InvalidIP",
			`{"spec":{"externalIPs":["300.1.1.1","` + extValid + `"]}}`},
		{"bad-ranges", "invalid loadBalancerSourceRanges entry", "InvalidSourceRange",
			`{"spec":{"loadBalancerSourceRanges":["10.0.0.0/8","not-a-cidr"]}}`},
		{"all-bad-ranges", "loadBalancerSourceRanges all invalid", "InvalidSourceRange",
			`{"spec":{"loadBalancerSourceRanges":["nope","10.0.0.300/8"]}}`},
		// Inconsistent API data: another Service's ClusterIP, a NodePort
		// already allocated. The first by namespace/name keeps it.
		{"zz-dup-cip", "two Services with the same ClusterIP", "DuplicateClusterIP",
			`{"spec":{"clusterIP":"` + r.clusterIP("default", "victim") + `","clusterIPs":["` + r.clusterIP("default", "victim") + `"]}}`},
		{"zz-dup-np", "two Services with the same NodePort", "DuplicateNodePort",
			`{"spec":{"ports":[{"name":"tcp","port":80,"protocol":"TCP","targetPort":8080,"nodePort":` + fmt.Sprint(r.nodePort) + `}]}}`},
		{"bad-svc-port", "Service port with an unknown protocol", "UnknownProtocol",
			`{"spec":{"ports":[{"name":"tcp","port":80,"protocol":"TCP","targetPort":8080},{"name":"icmp","port":81,"protocol":"ICMP","targetPort":8081}]}}`},
		{"bad-nodeport", "nodePort out of range", "InvalidNodePort",
			`{"spec":{"ports":[{"name":"tcp","port":80,"protocol":"TCP","targetPort":8080,"nodePort":70000}]}}`},
	}
	for _, c := range svcPatches {
		s := lab.ServiceFor(c.name, "web", false)
		s.Spec.Ports = s.Spec.Ports[:1]
		check := wantEndpoints("default", c.name, "web-0", "web-1")
		switch c.name {
		case "bad-ranges", "all-bad-ranges":
			s.Spec.Type = corev1.ServiceTypeLoadBalancer
		case "zz-dup-cip":
			s.Spec.Selector = map[string]string{"app": "evil"}
			check = func(r *hostileRun, d *dump.Dump) string { return r.onlyWeb(r.clusterIP("default", "victim")) }
		case "zz-dup-np":
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.Selector = map[string]string{"app": "evil"}
			check = func(r *hostileRun, d *dump.Dump) string {
				return r.onlyWebAt(r.l.Node("node-1").IPv4.String(), r.nodePort)
			}
		case "bad-nodeport":
			s.Spec.Type = corev1.ServiceTypeNodePort
			check = nil // the port itself is refused
		case "bad-extip":
			check = all(check, wantFrontend(fixed(extValid), lab.SvcPort, dump.StatusActive))
		case "mixed-families":
			check = all(check, wantFrontend(fixed("fd96::ffff"), lab.SvcPort, ""))
		}
		patched(&s.ObjectMeta, c.patch)
		add(hostile{entry: c.entry + " (through the rewriter)", svc: s,
			eventKind: "Service", eventObj: c.name, reason: c.reason, check: check})
	}
	return cs
}
