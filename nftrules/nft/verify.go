package nft

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/nftables"
)

// Verify reports whether our tables in the kernel still equal the last
// applied ruleset, without holding Syncs back for long: a full Sync reads
// and diffs everything under the lock (seconds at 50,000 Services, during
// which every change waits). Verify reads in steps — the tables' skeleton
// (chains, rules, set definitions), then the elements of one set at a
// time — first without the lock. A read is trusted if no commit of ours
// that could change what it read came between: for the skeleton, no
// transaction with more than element changes and no full or failed Sync
// (epoch); for a set, no commit at all (the kernel resumes a set's dump by
// skipping as many elements as it sent, so a dump a commit interrupts can
// miss elements). A step read optimisticReads times without being trusted
// is left for the next check (errKeptChanging): Verify never holds Syncs
// back. Comparisons run without the lock too. Verify reports true when it
// found no difference, and false, nil when something differs or nothing
// is applied yet;
// the caller then runs a full Sync, which repairs it. Another process's
// change is seen by the step that reads it, or by the table monitor
// (WatchForeign). Applied rulesets are never modified, except the
// reference counts of shared keys, which Verify does not read.
func (r *Reconciler) Verify(ctx context.Context) (bool, error) {
	c, err := r.readConn()
	if err != nil {
		return false, err
	}
	defer func() { _ = c.CloseLasting() }()
	er, err := r.newElementReader()
	if err != nil {
		return false, err
	}
	defer er.Close()

	live, applied, sets, err := r.readSkeleton(c)
	if errors.Is(err, errKeptChanging) {
		r.opts.Logger.V(2).Info("Check of the rules in the kernel left for the next period: they kept changing", "step", "tables")
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("verify: read tables: %w", err)
	}
	if applied == nil || !sameSkeletons(live, applied) {
		return false, nil
	}
	for _, s := range sets {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		have, want, err := r.readAppliedSet(er, s)
		if errors.Is(err, errKeptChanging) {
			r.opts.Logger.V(2).Info("Check of the rules in the kernel left for the next period: they kept changing", "set", s.name)
			continue
		}
		if err != nil || (want != nil && !sameRawElements(have, want)) {
			return false, err
		}
	}
	return true, nil
}

// readSkeleton reads everything but the elements of the applied sets
// (see Verify), and returns it with the applied ruleset it is to equal
// (nil after a failed Sync) and the sets whose elements are ours to
// compare.
func (r *Reconciler) readSkeleton(c *nftables.Conn) (live, applied *Ruleset, sets []setRef, err error) {
	for range optimisticReads {
		r.mu.Lock()
		applied, epoch, changes := r.applied, r.epoch, r.skeletonCommits
		r.mu.Unlock()
		if applied == nil {
			return nil, nil, nil, nil
		}
		skip, sets := appliedSets(applied)
		if live, err = r.readLiveWith(c, skip); err != nil {
			return nil, nil, nil, err
		}
		r.mu.Lock()
		trusted := r.epoch == epoch && r.skeletonCommits == changes
		r.mu.Unlock()
		if trusted {
			return live, applied, sets, nil
		}
	}
	return nil, nil, nil, errKeptChanging
}

// optimisticReads is how often Verify reads a step before leaving it for
// the next check.
const optimisticReads = 2

// readConn opens a connection for Verify's reads outside the lock (the
// lasting one belongs to whoever holds it).
func (r *Reconciler) readConn() (*nftables.Conn, error) {
	opts := []nftables.ConnOption{nftables.AsLasting()}
	if r.opts.NetNSFd != 0 {
		opts = append(opts, nftables.WithNetNSFd(r.opts.NetNSFd))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("verify: open nftables connection: %w", err)
	}
	return c, nil
}

type setRef struct {
	family Family
	name   string
}

// appliedSets names the sets of applied (whose elements the skeleton read
// skips) and those whose elements are ours to compare.
func appliedSets(applied *Ruleset) (map[string]bool, []setRef) {
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
	return skip, sets
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

// readAppliedSet reads the kernel's elements of an applied set, without
// the lock if no commit comes between (see Verify), and returns them with
// the applied set they are to equal (nil: the set is gone, or nothing is
// applied after a failed Sync, whose full Sync will read everything
// anyway).
func (r *Reconciler) readAppliedSet(er *elementReader, s setRef) (have, want *Set, err error) {
	current := func() *Set {
		if r.applied == nil || r.applied.Tables[s.family] == nil {
			return nil
		}
		return r.applied.Tables[s.family].Sets[s.name]
	}
	for range optimisticReads {
		r.mu.Lock()
		want, commits := current(), r.commits
		r.mu.Unlock()
		if want == nil {
			return nil, nil, nil
		}
		if have, err = readSetRaw(er, s, want); err != nil {
			return nil, nil, err
		}
		r.mu.Lock()
		trusted := r.commits == commits
		r.mu.Unlock()
		if trusted {
			return have, want, nil
		}
	}
	return nil, nil, errKeptChanging
}

// errKeptChanging: Syncs changed what a step read during each of its
// optimisticReads reads. The step is left for the next check rather than
// read holding the lock: reading a set of 500,000 elements (the hairpin
// set at 50,000 Services × 10) takes seconds, as the kernel resumes a hash
// set's dump by walking it again from the start for every message, and
// every change would wait for it.
var errKeptChanging = errors.New("changed by syncs during every read")

func readSetRaw(er *elementReader, s setRef, want *Set) (*Set, error) {
	have := &Set{Name: want.Name, Key: want.Key, Data: want.Data, Verdict: want.Verdict, Proto: want.Proto}
	ns := &nftables.Set{Table: &nftables.Table{Name: TableName, Family: nlFamily(s.family)}, Name: s.name}
	if err := readRaw(er, ns, have); err != nil {
		return nil, fmt.Errorf("verify: elements of %s %s: %w", s.family, s.name, err)
	}
	return have, nil
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
