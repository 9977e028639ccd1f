package nftrules

import (
	"context"
	"fmt"

	"github.com/google/nftables"
)

// Verify reports whether our tables in the kernel still equal the last
// applied ruleset, without holding Syncs back for long: a full Sync reads
// and diffs everything under the lock (seconds at 50,000 Services, during
// which every change waits), while Verify holds the lock only to read one
// step — the tables' skeleton (chains, rules, set definitions), then the
// elements of one set — and compares it after releasing the lock with the
// ruleset that was applied while it read. Syncs run between the steps and
// during the comparisons. It reports false, nil when something differs or
// nothing is applied yet; the caller then runs a full Sync, which repairs
// it.
//
// A read and the commits of Syncs never interleave (both hold the lock),
// so each comparison is exact; another process's change in the middle is
// seen by the step that reads it, or by the table monitor (WatchForeign).
// Applied rulesets are never modified (a Builder copies what it changes),
// except the reference counts of shared keys, which Verify does not read.
func (r *Reconciler) Verify(ctx context.Context) (bool, error) {
	r.mu.Lock()
	applied := r.applied
	live, sets, err := r.readSkeleton()
	r.mu.Unlock()
	if err != nil || applied == nil || !sameSkeletons(live, applied) {
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
		have, want, err := r.readAppliedSet(er, s.family, s.name)
		r.mu.Unlock()
		if err != nil || (want != nil && !sameRawElements(have, want)) {
			return false, err
		}
	}
	return true, nil
}

type setRef struct {
	family Family
	name   string
}

// readSkeleton reads everything but the elements of the applied sets, and
// names the applied sets whose elements are ours to compare. Call with
// r.mu held.
func (r *Reconciler) readSkeleton() (*Ruleset, []setRef, error) {
	if r.applied == nil {
		return nil, nil, nil
	}
	skip := map[string]bool{}
	var sets []setRef
	for _, f := range r.applied.SortedFamilies() {
		for _, s := range r.applied.Tables[f].SortedSets() {
			skip[s.Name] = true
			if !s.Dynamic { // filled by the packet path, not by us
				sets = append(sets, setRef{f, s.Name})
			}
		}
	}
	live, err := r.readLiveSkipping(skip)
	if err != nil {
		return nil, nil, fmt.Errorf("verify: read tables: %w", err)
	}
	return live, sets, nil
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

// readAppliedSet reads the kernel's elements of an applied set, returned
// with the applied set (nil, nil if a Sync deleted it meanwhile, or if a
// failed Sync left nothing applied: the caller's next full Sync reads
// everything anyway). Call with r.mu held.
func (r *Reconciler) readAppliedSet(er *elementReader, f Family, name string) (have, want *Set, _ error) {
	if r.applied == nil || r.applied.Tables[f] == nil {
		return nil, nil, nil
	}
	want = r.applied.Tables[f].Sets[name]
	if want == nil {
		return nil, nil, nil
	}
	have = &Set{Name: want.Name, Key: want.Key, Data: want.Data, Verdict: want.Verdict, Proto: want.Proto}
	ns := &nftables.Set{Table: &nftables.Table{Name: TableName, Family: nlFamily(f)}, Name: name}
	if err := readRaw(er, ns, have); err != nil {
		return nil, nil, fmt.Errorf("verify: elements of %s %s: %w", f, name, err)
	}
	return have, want, nil
}

// sameRawElements reports whether a set read raw holds exactly the
// elements of a built set. Unlike diffRaw it reads only want's element
// groups (never its lazily built index, nor its reference counts, which
// the next Build updates in place), so that it can run while a Builder
// derives the next ruleset from want's. It consumes have: each kernel
// element found is marked (keys several owners share are found again).
func sameRawElements(have, want *Set) bool {
	var kbuf, vbuf [80]byte
	same := true
	want.groups.each(func(_ string, els []Element) {
		for _, e := range els {
			if !same {
				return
			}
			k, err := appendValues(kbuf[:0], want.Key, e.Key)
			if err != nil {
				same = false
				return
			}
			r, ok := have.raw[string(k)]
			switch {
			case !ok:
				same = false // missing from the kernel
			case r.found():
			case !sameRawValue(want, e, r.val, vbuf[:0]):
				same = false
			default:
				have.raw[string(k)] = rawElement{val: foundMark}
			}
		}
	})
	if !same {
		return false
	}
	for _, r := range have.raw {
		if !r.found() {
			return false // in the kernel, not wanted
		}
	}
	return true
}

// foundMark replaces the value of a kernel element sameRawElements found.
var foundMark = []byte{0}

func (r rawElement) found() bool { return len(r.val) == 1 && &r.val[0] == &foundMark[0] }
