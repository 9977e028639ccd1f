package nft

import (
	"context"
	"fmt"
	"time"

	"github.com/google/nftables"
)

// VerifyOutcome is what a check of the kernel (Verify) found.
type VerifyOutcome int

const (
	// VerifySame: every step was compared and nothing differs.
	VerifySame VerifyOutcome = iota
	// VerifyDiffers: something differs (or nothing is applied yet); a full
	// Sync repairs it.
	VerifyDiffers
	// VerifyUnchecked: a step could not be compared (VerifyResult.Step);
	// the steps that were compared found no difference. The caller checks
	// again soon rather than one period later.
	VerifyUnchecked
)

func (o VerifyOutcome) String() string {
	switch o {
	case VerifySame:
		return "same"
	case VerifyDiffers:
		return "differs"
	default:
		return "unchecked"
	}
}

// VerifyResult is the outcome of one check and what it cost the syncs.
type VerifyResult struct {
	Outcome VerifyOutcome
	// Step is where the difference was found, or the first step left
	// unchecked: "tables" (chains, rules, set definitions) or a set's
	// family and name.
	Step string
	// Confirmed counts the objects re-read under the lock (see confirm);
	// Held is the longest the lock was held for one chunk of them, the
	// longest a sync waited for the check.
	Confirmed int
	Held      time.Duration
}

// Verify checks that our tables in the kernel still equal the last
// applied ruleset, without holding Syncs back for long: a full Sync reads
// and diffs everything under the lock (seconds at 50,000 Services, during
// which every change waits). Verify reads in steps — the tables' skeleton
// (chains, rules, set definitions), then the elements of one set at a
// time — without the lock. A read is trusted if no commit of ours that
// could change what it read came between: for the skeleton, no
// transaction with more than element changes and no full or failed Sync
// (epoch); for a set, no commit at all (the kernel resumes a set's dump by
// skipping as many elements as it sent, so a dump a commit interrupts can
// miss elements). A trusted read is compared as it is.
//
// Under sustained churn no read is trusted (at 50,000 Services the
// skeleton read takes 10-20 s and some endpoint flips within it every
// time). Verify then does not give up (it used to, reporting "same"
// having compared nothing): after optimisticReads reads it compares the
// last one with the applied ruleset, and re-reads under the lock only the
// objects that differ — the suspects: the objects our syncs changed
// meanwhile, those the interrupted dump got wrong, and real drift — one
// object per request, confirmChunk objects per hold of the lock, each
// chunk compared with the ruleset applied while it was read. The syncs
// wait for one chunk (milliseconds), not for a whole read (seconds); see
// docs/design.md. An object the interrupted read showed as applied is
// taken as such: drift hidden by the dump's own skipping (a foreign rule
// or element skipped at a message boundary) is found by a later check,
// as the boundaries move. Only more than maxSuspects suspects leave a
// step unchecked (VerifyUnchecked), which the caller retries soon.
//
// Another process's change is also seen at once by the table monitor
// (WatchForeign). Applied rulesets are never modified, except the
// reference counts of shared keys, which Verify does not read.
func (r *Reconciler) Verify(ctx context.Context) (VerifyResult, error) {
	var res VerifyResult
	c, err := r.readConn()
	if err != nil {
		return res, err
	}
	defer func() { _ = c.CloseLasting() }()
	er, err := r.newElementReader()
	if err != nil {
		return res, err
	}
	defer er.Close()

	res.Step = "tables"
	live, applied, sets, trusted, err := r.readSkeleton(c)
	if err != nil {
		return res, fmt.Errorf("verify: read tables: %w", err)
	}
	if applied == nil {
		res.Outcome = VerifyDiffers // nothing applied yet, or a Sync failed
		return res, nil
	}
	sus := skeletonSuspects(live, applied)
	if sus.tables || (trusted && sus.n() > 0) {
		res.Outcome = VerifyDiffers
		return res, nil
	}
	if sus.n() > 0 {
		if res.Outcome, err = r.confirmSkeleton(c, er, sus, &res); res.Outcome != VerifySame || err != nil {
			return res, err
		}
	}
	for _, s := range sets {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		res.Step = fmt.Sprintf("set %s %s", s.family, s.name)
		have, want, trusted, err := r.readAppliedSet(er, s)
		if err != nil {
			return res, err
		}
		if want == nil {
			continue // deleted since: the skeleton's business
		}
		keys, over := diffRawKeys(have, want, maxSuspects)
		switch {
		case len(keys) == 0:
			continue
		case trusted:
			res.Outcome = VerifyDiffers
		case over:
			res.Outcome = VerifyUnchecked
		default:
			res.Outcome, err = r.confirmElements(er, s, keys, &res)
		}
		if res.Outcome != VerifySame || err != nil {
			return res, err
		}
	}
	res.Step = ""
	return res, nil
}

// readSkeleton reads everything but the elements of the applied sets
// (see Verify), and returns it with the applied ruleset it is to be
// compared with (nil after a failed Sync), the sets whose elements are
// ours to compare, and whether the read can be trusted.
func (r *Reconciler) readSkeleton(c *nftables.Conn) (live, applied *Ruleset, sets []setRef, trusted bool, err error) {
	for range optimisticReads {
		r.mu.Lock()
		var epoch, changes uint64
		applied, epoch, changes = r.applied, r.epoch, r.skeletonCommits
		r.mu.Unlock()
		if applied == nil {
			return nil, nil, nil, false, nil
		}
		var skip map[string]bool
		skip, sets = appliedSets(applied)
		if live, err = r.readLiveWith(c, skip); err != nil {
			return nil, nil, nil, false, err
		}
		r.afterVerifyRead()
		r.mu.Lock()
		trusted = r.epoch == epoch && r.skeletonCommits == changes
		if !trusted {
			applied = r.applied // the closest to what the read saw
		}
		r.mu.Unlock()
		if trusted || applied == nil {
			break
		}
		_, sets = appliedSets(applied)
	}
	return live, applied, sets, trusted, nil
}

// optimisticReads is how often Verify reads a step without the lock before
// it confirms the suspects of the last read under the lock.
const optimisticReads = 2

// afterVerifyRead calls the test seam Options.AfterVerifyRead, if set.
func (r *Reconciler) afterVerifyRead() {
	if r.opts.AfterVerifyRead != nil {
		r.opts.AfterVerifyRead()
	}
}

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

// readAppliedSet reads the kernel's elements of an applied set, and
// returns them with the applied set they are to be compared with (nil:
// the set is gone, or nothing is applied after a failed Sync, whose full
// Sync will read everything anyway) and whether the read is trusted (no
// commit came between, see Verify); untrusted, want is the set applied
// after the last read.
func (r *Reconciler) readAppliedSet(er *elementReader, s setRef) (have, want *Set, trusted bool, err error) {
	current := func() *Set {
		if r.applied == nil || r.applied.Tables[s.family] == nil {
			return nil
		}
		return r.applied.Tables[s.family].Sets.Get(s.name)
	}
	for range optimisticReads {
		r.mu.Lock()
		var commits uint64
		want, commits = current(), r.commits
		r.mu.Unlock()
		if want == nil {
			return nil, nil, false, nil
		}
		if have, err = readSetRaw(er, s, want); err != nil {
			return nil, nil, false, err
		}
		r.afterVerifyRead()
		r.mu.Lock()
		trusted = r.commits == commits
		if !trusted {
			want = current()
		}
		r.mu.Unlock()
		if trusted || want == nil {
			break
		}
	}
	return have, want, trusted, nil
}

func readSetRaw(er *elementReader, s setRef, want *Set) (*Set, error) {
	have := &Set{Name: want.Name, Key: want.Key, Data: want.Data, Verdict: want.Verdict, Proto: want.Proto}
	ns := &nftables.Set{Table: &nftables.Table{Name: TableName, Family: nlFamily(s.family)}, Name: s.name}
	if err := readRaw(er, ns, have); err != nil {
		return nil, fmt.Errorf("verify: elements of %s %s: %w", s.family, s.name, err)
	}
	return have, nil
}
