package trace_test

import (
	"fmt"
	"net/netip"

	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/nftrules/trace"
)

func ExampleTrace() {
	rs := natRuleset(netip.MustParseAddrPort("10.1.0.2:80"), netip.MustParseAddrPort("10.1.0.3:80"))
	r, err := trace.Trace(rs, trace.Packet{
		Src:     netip.MustParseAddr("10.1.0.2"),
		Dst:     netip.MustParseAddr("172.30.0.10"),
		Proto:   nft.TCP,
		DstPort: 80,
		Path:    trace.FromPod,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(r)
	// Output: DNAT to 10.1.0.2:80, 10.1.0.3:80 (masqueraded to 10.1.0.2:80)
}
