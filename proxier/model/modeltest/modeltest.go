// Package modeltest builds model values from short strings, for the tests
// of the packages that consume the model (nftrules, nftrules/dump,
// proxier/app).
package modeltest

import (
	"net/netip"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/nftproxy/nftproxy/proxier/model"
)

// ServicePort returns the service port name ("ns/name:portname", the
// ":portname" optional) with the given ID, protocol, port, comma-separated
// ClusterIPs and endpoints.
func ServicePort(id uint32, name string, proto v1.Protocol, port uint16, clusterIPs string, eps ...model.Endpoint) *model.ServicePort {
	nsName, portName, _ := strings.Cut(name, ":")
	ns, n, _ := strings.Cut(nsName, "/")
	sp := &model.ServicePort{
		Name:      model.ServicePortName{NamespacedName: types.NamespacedName{Namespace: ns, Name: n}, Port: portName, Protocol: proto},
		ID:        id,
		Port:      port,
		Protocol:  proto,
		Endpoints: eps,
	}
	for _, ip := range strings.Split(clusterIPs, ",") {
		sp.ClusterIPs = append(sp.ClusterIPs, netip.MustParseAddr(ip))
	}
	return sp
}

// Ready returns a ready (and serving) endpoint at ap ("10.0.0.1:80",
// "[fd00::1]:80").
func Ready(ap string) model.Endpoint {
	return ReadyAt(netip.MustParseAddrPort(ap))
}

// ReadyAt is Ready for an address and port already parsed.
func ReadyAt(ap netip.AddrPort) model.Endpoint {
	return model.Endpoint{Addr: ap.Addr(), Port: ap.Port(), Ready: true, Serving: true}
}
