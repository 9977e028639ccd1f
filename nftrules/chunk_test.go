package nftrules

import (
	"bytes"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/nftproxy/nftproxy/proxier/model"
)

// AffinityPortBase is the target port of endpoint 0 of MaxNamesState's
// affinity Service; endpoint i listens on AffinityPortBase+i.
const AffinityPortBase = 10000

// maxName returns prefix padded with 'x' to n characters.
func maxName(prefix string, n int) string { return prefix + strings.Repeat("x", n-len(prefix)) }

// MaxNamesState is the worst case for netlink message sizes: services
// dual-stack TCP Services whose namespace (63), name (63) and port name (15)
// have the longest legal length (so every chain name has the longest
// readable part we make), each with a NodePort and two endpoints per family
// on the pods (pods4[i], pods6[i]), port 8080; and one dual-stack
// ClientIP-affinity Service with the same name lengths and affinityEndpoints
// endpoints per family, endpoint i on pod i%len(pods4), port
// AffinityPortBase+i (ClusterIPs 10.97.0.1 and fd97::1, port 80). Service i
// has ClusterIPs 10.96.0.1+i and fd96::1+i, port 80, NodePort 30000+i, ID
// i+1. The caller sets the node fields (NodeName, ClusterCIDRs, NodePortIPs).
// Exported for the kernel test in package nftrules_test.
func MaxNamesState(services, affinityEndpoints int, pods4, pods6 []netip.Addr) *model.State {
	st := &model.State{}
	name := func(i int) model.ServicePortName {
		return model.ServicePortName{
			NamespacedName: types.NamespacedName{
				Namespace: maxName(fmt.Sprintf("ns-%02d-", i%40), 63),
				Name:      maxName(fmt.Sprintf("svc-%05d-", i), 63),
			},
			Port:     maxName("port-", 15),
			Protocol: v1.ProtocolTCP,
		}
	}
	addr := func(base netip.Addr, i int) netip.Addr {
		for ; i > 0; i-- {
			base = base.Next()
		}
		return base
	}
	for i := 0; i < services; i++ {
		sp := &model.ServicePort{
			Name:       name(i),
			ID:         uint32(i + 1),
			ClusterIPs: []netip.Addr{addr(netip.MustParseAddr("10.96.0.1"), i), addr(netip.MustParseAddr("fd96::1"), i)},
			Port:       80,
			Protocol:   v1.ProtocolTCP,
			NodePort:   uint16(30000 + i),
		}
		for _, p := range []int{i % len(pods4), (i + 1) % len(pods4)} {
			for _, a := range []netip.Addr{pods4[p], pods6[p]} {
				sp.Endpoints = append(sp.Endpoints, model.Endpoint{Addr: a, Port: 8080, Ready: true, Serving: true})
			}
		}
		st.Services = append(st.Services, sp)
	}
	aff := &model.ServicePort{
		Name:                    name(services),
		ID:                      uint32(services + 1),
		ClusterIPs:              []netip.Addr{netip.MustParseAddr("10.97.0.1"), netip.MustParseAddr("fd97::1")},
		Port:                    80,
		Protocol:                v1.ProtocolTCP,
		SessionAffinityClientIP: true,
	}
	aff.Name.Name = maxName("sticky-", 63)
	for i := 0; i < affinityEndpoints; i++ {
		for _, a := range []netip.Addr{pods4[i%len(pods4)], pods6[i%len(pods6)]} {
			aff.Endpoints = append(aff.Endpoints, model.Endpoint{Addr: a, Port: uint16(AffinityPortBase + i), Ready: true, Serving: true})
		}
	}
	for _, sp := range append(st.Services, aff) {
		slices.SortFunc(sp.Endpoints, func(a, b model.Endpoint) int {
			if c := a.Addr.Compare(b.Addr); c != 0 {
				return c
			}
			return int(a.Port) - int(b.Port)
		})
	}
	st.Services = append(st.Services, aff)
	slices.SortFunc(st.Services, func(a, b *model.ServicePort) int {
		if a.Name.Less(b.Name) {
			return -1
		}
		return 1
	})
	return st
}

// queueForTest queues tx on a connection without a socket, as apply does,
// and returns the queued messages.
func queueForTest(t *testing.T, tx *Transaction) []netlink.Message {
	t.Helper()
	c, err := nftables.New() // not lasting: no socket until Flush
	if err != nil {
		t.Fatal(err)
	}
	if _, err := queueTx(c, tx); err != nil {
		t.Fatal(err)
	}
	return *queuedMessages(c)
}

// elemListAttr returns the set name of an element message and the length
// its NFTA_SET_ELEM_LIST_ELEMENTS attribute declares and really has
// (google/nftables puts it last, so it runs to the end of the message).
func elemListAttr(t *testing.T, data []byte) (set string, declared, actual int) {
	t.Helper()
	b := data[4:] // nfgenmsg
	for len(b) >= 4 {
		l, typ := int(nlUint16(b[0:2])), nlUint16(b[2:4])&^unix.NLA_F_NESTED
		switch typ {
		case unix.NFTA_SET_ELEM_LIST_ELEMENTS:
			return set, l, len(b)
		case unix.NFTA_SET_ELEM_LIST_SET:
			set = strings.TrimRight(string(b[4:l]), "\x00")
		}
		b = b[(l+3)&^3:]
	}
	t.Fatalf("element message without element list")
	return
}

// TestElementMessagesFitNetlinkAttributes queues the cold start of the
// worst case (longest names, IPv6, verdict maps to long chains, an affinity
// Service with 2,000 endpoints) and decodes what google/nftables would
// send: no element list may overflow netlink's 16-bit attribute length, and
// the elements across messages must be exactly the transaction's.
func TestElementMessagesFitNetlinkAttributes(t *testing.T) {
	pods4 := []netip.Addr{netip.MustParseAddr("10.244.1.10"), netip.MustParseAddr("10.244.1.11"), netip.MustParseAddr("10.244.1.12")}
	pods6 := []netip.Addr{netip.MustParseAddr("fd44::10"), netip.MustParseAddr("fd44::11"), netip.MustParseAddr("fd44::12")}
	st := MaxNamesState(2000, 2000, pods4, pods6)
	st.NodeName, st.NodePortIPs = "node", []netip.Addr{netip.MustParseAddr("192.168.50.1"), netip.MustParseAddr("fd50::1")}
	tx := Diff(nil, Build(st))

	type setKey struct {
		f    Family
		name string
	}
	want := map[setKey][]Element{}
	sets := map[setKey]*Set{}
	for _, op := range tx.Ops {
		if op.Kind == OpAddElements {
			k := setKey{op.Family, op.Set.Name}
			want[k] = append(want[k], op.Elements...)
			sets[k] = op.Set
		}
	}
	got := map[setKey][]Element{}
	perMessage := map[setKey][]int{}
	listBytes := map[setKey]int{} // largest element list attribute

	for i, m := range queueForTest(t, tx) {
		if len(m.Data) > math.MaxUint16 {
			t.Errorf("message %d (type %d): payload of %d bytes", i, m.Header.Type&0xff, len(m.Data))
		}
		if m.Header.Type&0xff != unix.NFT_MSG_NEWSETELEM {
			continue
		}
		f := IPv4
		if m.Data[0] == unix.NFPROTO_IPV6 {
			f = IPv6
		}
		name, declared, actual := elemListAttr(t, m.Data)
		k := setKey{f, name}
		if declared != actual || actual > math.MaxUint16 {
			t.Errorf("%s %s: element list attribute of %d bytes declares %d", f, name, actual, declared)
			continue
		}
		var nes []nftables.SetElement
		if err := eachElement(m.Data[4:], func(key, val []byte) error {
			nes = append(nes, nftables.SetElement{Key: bytes.Clone(key), Val: bytes.Clone(val)})
			return nil
		}); err != nil {
			t.Fatalf("%s %s: %v", f, name, err)
		}
		for _, ne := range nes {
			e, err := elementFromNL(sets[k], ne)
			if err != nil {
				t.Fatalf("%s %s: %v", f, name, err)
			}
			got[k] = append(got[k], e)
		}
		perMessage[k] = append(perMessage[k], len(nes))
		if actual > listBytes[k] {
			listBytes[k] = actual
		}
	}
	for k, w := range want {
		g := got[k]
		if len(g) != len(w) {
			t.Errorf("%s %s: %d elements queued, want %d", k.f, k.name, len(g), len(w))
			continue
		}
		for i := range w {
			if !g[i].Equal(w[i]) {
				t.Errorf("%s %s: element %d is %s : %s, want %s : %s", k.f, k.name, i, g[i].KeyString(), g[i].ValueString(), w[i].KeyString(), w[i].ValueString())
				break
			}
		}
	}
	for _, k := range []setKey{{IPv6, SetServiceIPs}, {IPv4, SetServiceIPs}, {IPv6, SetServiceNodePorts}, {IPv6, EndpointChainsMapName(2001)}, {IPv6, EndpointMapName(TCP, 1)}} {
		n := perMessage[k][0]
		t.Logf("%s %s: %d elements in messages of %v; first message: %d bytes per element, list attribute %d bytes (largest of the set)",
			k.f, k.name, len(got[k]), perMessage[k], (listBytes[k]-nlaHeaderLen)/max(n, 1), listBytes[k])
	}
}

// TestElementMessagesMatchLibrary: the element messages we encode
// (elemmsg.go) are byte for byte what google/nftables v0.3.0 queues for
// the same elements, for every kind of set we program, both families, add
// and delete.
func TestElementMessagesMatchLibrary(t *testing.T) {
	long := strings.Repeat("c", 110)
	for _, f := range Families {
		addr := netip.MustParseAddr("10.0.0.1")
		if f == IPv6 {
			addr = netip.MustParseAddr("fd00::1")
		}
		goTo := &Verdict{Kind: Goto, Chain: long}
		sets := []struct {
			set *Set
			els []Element
		}{
			{&Set{Name: SetClusterIPs, Key: []Datatype{AddrType(f)}}, []Element{{Key: []Value{AddrValue(addr)}}}},
			{&Set{Name: SetHairpin, Key: []Datatype{AddrType(f), AddrType(f)}}, []Element{{Key: []Value{AddrValue(addr), AddrValue(addr)}}}},
			{&Set{Name: SetServiceIPs, Key: []Datatype{AddrType(f), TypeInetProto, TypeInetService}, Verdict: true}, []Element{
				{Key: dispatchKey(addr, TCP, 80), Verdict: goTo},
				{Key: dispatchKey(addr, UDP, 53), Verdict: &Verdict{Kind: Goto, Chain: "svc-x"}},
				{Key: dispatchKey(addr, SCTP, 9), Verdict: &Verdict{Kind: Drop}},
			}},
			{&Set{Name: SetServiceNodePorts, Key: []Datatype{TypeInetProto, TypeInetService}, Verdict: true}, []Element{
				{Key: []Value{NumValue(uint32(TCP)), NumValue(30080)}, Verdict: &Verdict{Kind: Goto, Chain: ChainReject}}}},
			{newEndpointMap(f, TCP, EndpointMapName(TCP, 3)), []Element{
				{Key: []Value{NumValue(3 << IndexBits)}, Data: []Value{AddrValue(addr), NumValue(8080)}},
				{Key: []Value{NumValue(3<<IndexBits + 1)}, Data: []Value{AddrValue(addr), NumValue(1)}}}},
			{newEndpointChainsMap(EndpointChainsMapName(3)), []Element{{Key: []Value{NumValue(7)}, Verdict: goTo}}},
		}
		for _, tc := range sets {
			for _, kind := range []OpKind{OpAddElements, OpDelElements} {
				ours, _ := nftables.New()
				if err := queueElements(ours, Op{Kind: kind, Family: f, Set: tc.set, Elements: tc.els}); err != nil {
					t.Fatal(err)
				}
				lib, _ := nftables.New()
				ns, err := nlSet(f, tc.set)
				if err != nil {
					t.Fatal(err)
				}
				var nes []nftables.SetElement
				for _, e := range tc.els {
					ne, err := nlElement(tc.set, e)
					if err != nil {
						t.Fatal(err)
					}
					nes = append(nes, ne)
				}
				if kind == OpAddElements {
					err = lib.SetAddElements(ns, nes)
				} else {
					err = lib.SetDeleteElements(ns, nes)
				}
				if err != nil {
					t.Fatal(err)
				}
				got, want := *queuedMessages(ours), *queuedMessages(lib)
				if len(got) != 1 || len(want) != 1 || got[0].Header != want[0].Header || !bytes.Equal(got[0].Data, want[0].Data) {
					t.Errorf("%s %s %s:\nours    %v %x\nlibrary %v %x", kind, f, tc.set.Name, got[0].Header, got[0].Data, want[0].Header, want[0].Data)
				}
			}
		}
	}
}

// TestOversizedMessagesAreErrors: an element or a rule too large for one
// netlink message is an error naming it, never a truncated message.
func TestOversizedMessagesAreErrors(t *testing.T) {
	set := &Set{Name: "m", Key: []Datatype{TypeIndex}, Verdict: true}
	huge := Element{Key: []Value{NumValue(1)}, Verdict: &Verdict{Kind: Goto, Chain: strings.Repeat("c", maxElemListBytes)}}
	chain := &Chain{Name: "long"}
	var stmts []Stmt
	for i := 0; i < 5000; i++ {
		stmts = append(stmts, Counter{})
	}
	for _, tc := range []struct {
		op   Op
		want string
	}{
		{Op{Kind: OpAddElements, Family: IPv4, Set: set, Elements: []Element{huge}}, "add elements ip set m: element 1 : goto ccc"},
		{Op{Kind: OpDelElements, Family: IPv6, Set: set, Elements: []Element{huge}}, "delete elements ip6 set m: element 1 : goto ccc"},
		{Op{Kind: OpAddRule, Family: IPv4, Chain: chain, Rule: &Rule{Stmts: stmts}}, "add rule ip chain long rule \"counter counter"},
	} {
		c, _ := nftables.New()
		_, err := queueTx(c, &Transaction{Ops: []Op{tc.op}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got error %.300v, want one containing %q", tc.op.Kind, err, tc.want)
		}
	}
}
