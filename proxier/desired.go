package proxier

import (
	"context"
	"fmt"
	"time"

	"k8s.io/utils/clock"

	"github.com/nftproxy/nftproxy/informers"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// DesiredState returns the State a proxier configured with cfg would
// program from what src serves now, without programming anything: the
// conversion, node facts and filtering are the proxier's own. `--dump`
// compares it with the kernel.
//
// IDs are allocated as at start-up (Services in sorted order), so they can
// differ from those of a long-running proxier: compare by content, not ID.
func DesiredState(cfg Config, src Source) (*model.State, error) {
	if cfg.SyncPeriod <= 0 {
		cfg.SyncPeriod = time.Second // never runs; validate wants one
	}
	if cfg.MinSyncPeriod > cfg.SyncPeriod {
		cfg.MinSyncPeriod = 0
	}
	p, err := New(cfg, src, informers.NewTracker(clock.RealClock{}), discardReconciler{})
	if err != nil {
		return nil, err
	}
	p.loadAll()
	return p.state(), nil
}

// discardReconciler satisfies New; DesiredState never syncs.
type discardReconciler struct{}

func (discardReconciler) Sync(context.Context, *nft.Ruleset, bool) (nft.SyncResult, error) {
	return nft.SyncResult{}, fmt.Errorf("proxier: DesiredState does not program rules")
}
