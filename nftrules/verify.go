package nftrules

import (
	"context"
	"fmt"

	"github.com/google/nftables"
)

// Verify reports whether our tables in the kernel still equal the last
// applied ruleset, without holding Syncs back for long: a full Sync reads
// and diffs everything under the lock (seconds at 50,000 Services, during
// which every change waits), while Verify takes the lock for one step at a
// time — the tables' skeleton (chains, rules, set definitions), then the
// elements of one set — and compares each step with the ruleset applied at
// that moment. Syncs run between the steps. It reports false, nil when
// something differs or nothing is applied yet; the caller then runs a
// full Sync, which repairs it.
//
// A step and the commits of Syncs never interleave (both hold the lock),
// so each comparison is exact; another process's change in the middle is
// seen by the step that reads it, or by the table monitor (WatchForeign).
func (r *Reconciler) Verify(ctx context.Context) (bool, error) {
	r.mu.Lock()
	same, sets, err := r.verifySkeleton()
	r.mu.Unlock()
	if err != nil || !same {
		return false, err
	}
	er, err := r.newElementReader()
	if err != nil {
		return false, err
	}
	defer er.Close()
	for _, s := range sets {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		r.mu.Lock()
		same, err := r.verifySet(er, s.family, s.name)
		r.mu.Unlock()
		if err != nil || !same {
			return false, err
		}
	}
	return true, nil
}

type setRef struct {
	family Family
	name   string
}

// verifySkeleton compares everything but set elements with r.applied and
// returns the sets whose elements are ours to compare. Call with r.mu held.
func (r *Reconciler) verifySkeleton() (bool, []setRef, error) {
	applied := r.applied
	if applied == nil {
		return false, nil, nil
	}
	skip := map[string]bool{}
	var sets []setRef
	for _, f := range applied.SortedFamilies() {
		for _, s := range applied.Tables[f].SortedSets() {
			skip[s.Name] = true
			if !s.Dynamic { // filled by the packet path, not by us
				sets = append(sets, setRef{f, s.Name})
			}
		}
	}
	live, err := r.readLiveSkipping(skip)
	if err != nil {
		return false, nil, fmt.Errorf("verify: read tables: %w", err)
	}
	return sameSkeletons(live, applied), sets, nil
}

// sameSkeletons reports whether two rulesets have the same tables, sets
// (by shape) and chains with the same rules, elements aside.
func sameSkeletons(have, want *Ruleset) bool {
	if len(have.Tables) != len(want.Tables) {
		return false
	}
	for f, wt := range want.Tables {
		ht, ok := have.Tables[f]
		if !ok || len(ht.Sets) != len(wt.Sets) || len(ht.Chains) != len(wt.Chains) || !sameSkeleton(ht, wt) {
			return false
		}
		for name := range wt.Sets {
			if _, ok := ht.Sets[name]; !ok {
				return false
			}
		}
		for name, wc := range wt.Chains {
			hc, ok := ht.Chains[name]
			if !ok || !sameRules(f, hc, wc) {
				return false
			}
		}
	}
	return true
}

// verifySet compares the kernel's elements of one set with those of the
// applied ruleset. Call with r.mu held.
func (r *Reconciler) verifySet(er *elementReader, f Family, name string) (bool, error) {
	if r.applied == nil {
		return false, nil // a Sync failed meanwhile
	}
	t := r.applied.Tables[f]
	if t == nil {
		return false, nil
	}
	want := t.Sets[name]
	if want == nil {
		return true, nil // deleted by a Sync meanwhile: nothing to compare
	}
	have := &Set{Name: want.Name, Key: want.Key, Data: want.Data, Verdict: want.Verdict, Proto: want.Proto}
	ns := &nftables.Set{Table: &nftables.Table{Name: TableName, Family: nlFamily(f)}, Name: name}
	if err := readRaw(er, ns, have); err != nil {
		return false, fmt.Errorf("verify: elements of %s %s: %w", f, name, err)
	}
	add, del := diffRaw(have, want)
	return len(add) == 0 && len(del) == 0, nil
}
