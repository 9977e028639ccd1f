package nftrules

import (
	"maps"
	"strings"
	"sync"

	"k8s.io/klog/v2"

	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// NewReconciler returns a reconciler of nftproxy's tables (see
// nft.NewReconciler), logging through klog unless opts has a Logger.
func NewReconciler(opts nft.Options) *nft.Reconciler {
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
	s, ok := skeletonSets()[f][name]
	if !ok {
		return nil, false
	}
	c := *s
	return &c, true
}

// skeletonSets are the sets every table of ours starts with, per family.
var skeletonSets = sync.OnceValue(func() map[nft.Family]map[string]*nft.Set {
	rs := nft.NewRuleset()
	out := map[nft.Family]map[string]*nft.Set{}
	for _, f := range nft.Families {
		buildSkeleton(rs.Table(f), &model.State{})
		out[f] = maps.Collect(rs.Tables[f].Sets.All())
	}
	return out
})

func (layout) PacketPathSet(name string) bool { return strings.HasPrefix(name, affinitySetPrefix) }
