package dump_test

import (
	"testing"

	"github.com/nftproxy/nftproxy/e2e/netkit"
	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/nft"
)

// TestKernelViewMatchesBuild: checkViewOfLiveTables on tables read back
// from the kernel.
func TestKernelViewMatchesBuild(t *testing.T) {
	netkit.RequireRoot(t)
	name := "nftdump-view"
	_ = netkit.CleanupPrefix(name)
	ns, err := netkit.New(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Delete() })
	rec := nftrules.NewReconciler(nft.Options{NetNSFd: ns.FD()})
	checkViewOfLiveTables(t, rec)
}
