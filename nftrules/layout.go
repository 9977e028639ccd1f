package nftrules

import (
	"strings"

	"k8s.io/klog/v2"

	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// NewReconciler returns a reconciler of nftproxy's tables (see
// nft.NewReconciler), logging through klog unless opts has a Logger.
func NewReconciler(opts nft.Options) (*nft.Reconciler, error) {
	if opts.Logger.GetSink() == nil {
		opts.Logger = klog.Background()
	}
	return nft.NewReconciler(layout{}, opts)
}

// layout tells the reconciler the sets this package makes (nft.Layout).
type layout struct{}

func (layout) Set(f nft.Family, name string) (*nft.Set, bool) {
	if isShardMap(name) {
		return newShardMap(f, name), true
	}
	skeleton := nft.NewRuleset().Table(f)
	buildSkeleton(skeleton, &model.State{})
	s, ok := skeleton.Sets[name]
	return s, ok
}

func (layout) PacketPathSet(name string) bool { return strings.HasPrefix(name, affinitySetPrefix) }
