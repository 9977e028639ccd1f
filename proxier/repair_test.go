package proxier

import (
	"testing"

	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/nftrules/nft/nftfake"
)

// TestProxierRepairsForeignChanges: another process deleting our
// dispatch elements is reported by the watcher, and the proxier repairs
// it at once with a full sync that counts the change (the kernel test
// TestKernelRepair* shows the same with nft and packets).
func TestProxierRepairsForeignChanges(t *testing.T) {
	rec := nftfake.New()
	e := newEnvWith(t, 0, rec, func(c *Config) { c.Watcher = rec })
	e.create(service("a", "10.96.0.1"), slice("a-1", "a", "10.244.1.1"))
	e.recorded(1, 1)
	e.run()
	e.eventually("initial sync", func() bool { return e.syncCount() >= 1 })
	programmed := nftrules.Build(e.lastSync().State)

	live, err := rec.ReadLive()
	if err != nil {
		t.Fatal(err)
	}
	dispatch := live.Tables[nft.IPv4].Sets.Get(nftrules.SetServiceIPs)
	if dispatch.Len() == 0 {
		t.Fatal("nothing in service-ips to delete")
	}
	syncs := e.syncCount()
	del := &nft.Transaction{Ops: []nft.Op{{Kind: nft.OpDelElements, Family: nft.IPv4, Set: dispatch, Elements: dispatch.SortedElements()}}}
	if err := rec.Foreign(nft.ForeignChange{PortID: 99, PID: 4711, Command: "nft"}, del); err != nil {
		t.Fatal(err)
	}
	e.eventually("repair", func() bool { return e.syncCount() > syncs })
	repair := e.lastSync()
	if !repair.Full || repair.ForeignChanges != 1 || repair.Err != nil || repair.Result.Objects != dispatch.Len() {
		t.Errorf("repair sync: full %v, foreign changes %d, objects %d, err %v; want a full sync of the %d deleted elements, 1 foreign change",
			repair.Full, repair.ForeignChanges, repair.Result.Objects, repair.Err, dispatch.Len())
	}
	if err := rec.Compare(programmed); err != nil {
		t.Errorf("not repaired: %v", err)
	}
}
