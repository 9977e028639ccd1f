package proxier

import (
	"context"
	"fmt"
	"time"

	"k8s.io/klog/v2"
)

// sync brings the kernel in line with the changes recorded so far. With
// full it also makes the reconciler re-read the kernel, repairing drift.
func (p *Proxier) sync(ctx context.Context, full bool) error {
	start := p.clock.Now()
	c := p.changes.Take()
	if !c.Oldest.IsZero() && (p.pendingSince.IsZero() || c.Oldest.Before(p.pendingSince)) {
		p.pendingSince = c.Oldest
	}
	converted := p.applyChanges(c)
	p.refreshNodePortIPs()
	full = full || p.needFull
	if !full && !p.dirty {
		// Changes that changed nothing (or no changes): done.
		klog.V(4).InfoS("Nothing to sync", "servicesConverted", converted)
		p.pendingSince = time.Time{}
		return nil
	}

	st := p.state()
	overLimit := p.checkEndpointLimits(st)
	foreign := p.takeForeign(full)
	built := p.clock.Now()
	rs := p.builder.Build(st)
	build := p.clock.Since(built)
	res, err := p.rec.Sync(ctx, rs, full)
	if err == nil {
		// Only once the new rules are in: the next packet of a flow
		// whose entry is deleted must meet them.
		p.cleanConntrack(st)
		if foreign.n > 0 && p.cfg.Conntrack != nil {
			p.cfg.Conntrack.Repaired(st)
		}
	}
	info := SyncInfo{
		State: st, Full: full, Result: res, Err: err, Start: start,
		Duration: p.clock.Since(start), Build: build, OldestChange: p.pendingSince, Converted: converted,
		EndpointsOverLimit: overLimit,
		ForeignChanges:     foreign.n, ForeignSince: foreign.first,
	}
	p.syncHealthChecks(st)
	if p.cfg.OnSync != nil {
		p.cfg.OnSync(info)
	}
	if err != nil {
		// What the kernel holds is now unknown: re-read it next time.
		p.needFull = true
		p.foreign.restore(foreign)
		return fmt.Errorf("syncing rules (full=%t, %d service ports): %w", full, st.Len(), err)
	}
	p.needFull, p.dirty, p.pendingSince = false, false, time.Time{}
	klog.V(2).InfoS("Synced rules", "full", full, "servicePorts", st.Len(),
		"servicesConverted", converted, "objects", res.Objects, "messages", res.Messages, "duration", info.Duration,
		"build", build, "read", res.Timing.Read, "diff", res.Timing.Diff, "encode", res.Timing.Encode, "send", res.Timing.Send)
	return nil
}
