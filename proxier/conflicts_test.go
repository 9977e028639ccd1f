package proxier

import (
	"net/netip"
	"testing"

	v1 "k8s.io/api/core/v1"

	"github.com/nftproxy/nftproxy/proxier/model"
)

func TestConflictingExternalAddressesKeepTheFirstOwner(t *testing.T) {
	var rejections []model.Rejection
	p := &Proxier{cfg: Config{OnReject: func(r model.Rejection) { rejections = append(rejections, r) }}}
	ip := netip.MustParseAddr("192.0.2.10")
	port := func(name string, proto v1.Protocol, n uint16, ext ...netip.Addr) *model.ServicePort {
		sp := &model.ServicePort{Protocol: proto, Port: n, ExternalIPs: ext}
		sp.Name.Namespace, sp.Name.Name, sp.Name.Protocol = "ns", name, proto
		return sp
	}
	a := port("a", v1.ProtocolTCP, 80, ip)
	b := port("b", v1.ProtocolTCP, 80, ip, netip.MustParseAddr("192.0.2.11"))
	otherPort := port("c", v1.ProtocolTCP, 81, ip)
	otherProto := port("d", v1.ProtocolUDP, 80, ip)
	flat := []*model.ServicePort{a, b, otherPort, otherProto}

	got := p.withoutAddressConflicts(flat)
	if got[0] != a || got[2] != otherPort || got[3] != otherProto {
		t.Error("service ports without a conflict were replaced")
	}
	if got[1] == b || len(got[1].ExternalIPs) != 1 || got[1].ExternalIPs[0] != netip.MustParseAddr("192.0.2.11") {
		t.Errorf("the later claimant kept %v, want only 192.0.2.11", got[1].ExternalIPs)
	}
	if len(b.ExternalIPs) != 2 {
		t.Error("the original service port was modified")
	}
	if len(rejections) != 1 || rejections[0].Name != "b" || rejections[0].Reason != "DuplicateExternalAddress" {
		t.Errorf("rejections %+v, want one for b", rejections)
	}
	// The next sync with the same input: the same copy, no new report.
	again := p.withoutAddressConflicts(flat)
	if again[1] != got[1] || len(rejections) != 1 {
		t.Error("a repeated sync made a new copy or reported again")
	}
	// The conflict gone: the original value is programmed again.
	if now := p.withoutAddressConflicts([]*model.ServicePort{b}); now[0] != b {
		t.Error("without the conflict the original service port is not used")
	}
}
