package conntrack

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestKernelRefusedFilterFallsBackToUnfiltered: a filter the kernel
// refuses (here a tuple filter without an address family, which it
// answers with EOPNOTSUPP) does not stop cleanups: the walk is redone
// without a filter, and later walks send none.
func TestKernelRefusedFilterFallsBackToUnfiltered(t *testing.T) {
	ns, cr := testNamespace(t, "nftk-cti-node")
	if err := cr.Create([]Entry{{Proto: unix.IPPROTO_UDP, OrigSrc: ap("10.0.0.1:1000"), OrigDst: ap("10.96.0.10:53"), DNAT: ap("10.244.1.2:53")}}); err != nil {
		t.Fatal(err)
	}
	c, err := NewCleaner(ns.FD(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	refused := Query{Proto: unix.IPPROTO_UDP, OrigDst: addr("10.96.0.10")}
	if err := c.dumpConn.dump(refused, func(*Flow) {}); err == nil {
		t.Fatal("control: the kernel accepted a tuple filter without a family")
	}
	seen := 0
	walks, err := c.walk(refused, func(*Flow) { seen++ })
	if err != nil || walks != 2 || seen != 1 || !c.unfiltered {
		t.Fatalf("walk: %d walks, %d entries seen, unfiltered %v, err %v; want 2, 1, true, nil", walks, seen, c.unfiltered, err)
	}
	seen = 0
	if walks, err := c.walk(refused, func(*Flow) { seen++ }); err != nil || walks != 1 || seen != 1 {
		t.Fatalf("next walk: %d walks, %d entries seen, err %v; want 1, 1, nil", walks, seen, err)
	}
}
