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
	ns := netkit.NewTestNS(t, "nftdump-view")
	rec := nftrules.NewReconciler(nft.Options{NetNSFd: ns.FD()})
	checkViewOfLiveTables(t, rec)
}
