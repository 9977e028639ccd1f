package nftfake

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/nftproxy/nftproxy/nftrules/nft"
)

// Fake is an in-memory nftables kernel holding our tables, driven like
// *nft.Reconciler. It is safe for concurrent use.
type Fake struct {
	// BeforeSync, if set, is called at the start of every Sync without the
	// Fake's lock: it may block (a test holding a sync back) and an error
	// from it fails the Sync. Set it before the Fake is used.
	BeforeSync func(ctx context.Context) error

	mu     sync.Mutex
	kernel kernel
	// applied is the ruleset of the last successful Sync, which stands in
	// for the live state at the next partial Sync, as in the reconciler.
	// nil after a failure, Apply or Cleanup: the next Sync reads the state.
	applied  *nft.Ruleset
	failures []error
	records  []Record
	watchers map[int]func(nft.ForeignChange)
	watchID  int
}

// Record is one call that committed, or tried to commit, a transaction.
type Record struct {
	// Desired and Full are the arguments of a Sync (nil and false for
	// Apply, Cleanup and Foreign).
	Desired *nft.Ruleset
	Full    bool
	// Foreign marks a change made by Foreign (another process).
	Foreign bool
	// Tx is the transaction, committed or refused; nil when the call
	// failed before making one (FailNext, BeforeSync), or for a Sync that
	// found nothing to do (Result.Objects 0).
	Tx *nft.Transaction
	// Result is what a Sync returned; for the other calls Objects and
	// Messages of the transaction.
	Result nft.SyncResult
	Err    error
}

// New returns a Fake with no tables.
func New() *Fake { return &Fake{watchers: map[int]func(nft.ForeignChange){}} }

// Sync makes the fake kernel match desired in one transaction, like
// (*nft.Reconciler).Sync: with full set, or after a failure, Apply or
// Cleanup, the diff starts from the fake kernel's state; otherwise from
// the last synced ruleset (so that the Builder's incremental Diff is what
// the fake kernel checks). The transaction is applied atomically: refused
// by the rules of the kernel (see the package comment), it changes
// nothing and Sync returns the reason. SyncResult.Messages counts one
// message per op (the reconciler splits large element lists further).
func (f *Fake) Sync(ctx context.Context, desired *nft.Ruleset, full bool) (nft.SyncResult, error) {
	rec := Record{Desired: desired, Full: full}
	var err error
	if f.BeforeSync != nil {
		err = f.BeforeSync(ctx)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		rec.Result, rec.Tx, err = f.sync(ctx, desired, full)
	} else {
		rec.Result.Full = full || f.applied == nil
	}
	if err != nil {
		f.applied = nil
	}
	rec.Err = err
	f.records = append(f.records, rec)
	return rec.Result, err
}

func (f *Fake) sync(ctx context.Context, desired *nft.Ruleset, full bool) (nft.SyncResult, *nft.Transaction, error) {
	res := nft.SyncResult{Full: full || f.applied == nil}
	if err := f.takeFailure(); err != nil {
		return res, nil, err
	}
	live := f.applied
	if res.Full {
		live = f.kernel.ruleset(true, nil)
	}
	if err := ctx.Err(); err != nil {
		return res, nil, err
	}
	tx := nft.Diff(live, desired)
	res.Objects = tx.Objects()
	if tx.Empty() {
		f.applied = desired
		return res, nil, nil
	}
	res.Messages = len(tx.Ops)
	if err := f.commit(tx); err != nil {
		return res, tx, fmt.Errorf("apply transaction of %d objects: %w", res.Objects, err)
	}
	f.applied = desired
	return res, tx, nil
}

// Apply commits a transaction as it is, atomically, for tests that make
// their own (Diff of two rulesets). The next Sync then reads the state.
func (f *Fake) Apply(tx *nft.Transaction) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = nil
	return f.record(Record{}, tx)
}

// record commits tx (or fails it with an injected failure) and records it.
func (f *Fake) record(rec Record, tx *nft.Transaction) error {
	err := f.takeFailure()
	if err == nil {
		rec.Tx = tx
		rec.Result = nft.SyncResult{Objects: tx.Objects(), Messages: len(tx.Ops)}
		err = f.commit(tx)
	}
	rec.Err = err
	f.records = append(f.records, rec)
	return err
}

// commit applies every op of tx in order, and undoes them all if the
// kernel refuses one.
func (f *Fake) commit(tx *nft.Transaction) error {
	x := f.kernel.begin()
	for i, op := range tx.Ops {
		if err := x.apply(op); err != nil {
			x.rollback()
			return fmt.Errorf("op %d of %d (%s): %w", i+1, len(tx.Ops), describe(op), err)
		}
	}
	return nil
}

// describe names an op in errors: "delete chain (table ip, chain x)".
func describe(op nft.Op) string {
	switch {
	case op.Set != nil:
		return fmt.Sprintf("%s (table %s, set %s)", op.Kind, op.Family, op.Set.Name)
	case op.Chain != nil:
		return fmt.Sprintf("%s (table %s, chain %s)", op.Kind, op.Family, op.Chain.Name)
	}
	return fmt.Sprintf("%s %s", op.Kind, op.Family)
}

// FailNext makes the next Sync, Apply, Cleanup or Foreign call fail with
// err without changing anything (a batch the kernel refused as a whole, a
// lost connection). Each call queues one failure.
func (f *Fake) FailNext(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failures = append(f.failures, err)
}

func (f *Fake) takeFailure() error {
	if len(f.failures) == 0 {
		return nil
	}
	err := f.failures[0]
	f.failures = f.failures[1:]
	return err
}

// Verify reports whether the state still equals the last synced ruleset,
// like (*nft.Reconciler).Verify: VerifyDiffers when it differs (a Foreign
// change) or nothing is synced. The fake compares everything at once, so
// it never leaves a step unchecked.
func (f *Fake) Verify(context.Context) (nft.VerifyResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.applied == nil || f.kernel.compare(f.applied) != nil {
		return nft.VerifyResult{Outcome: nft.VerifyDiffers, Step: "tables"}, nil
	}
	return nft.VerifyResult{Outcome: nft.VerifySame}, nil
}

// ReadLive returns our tables as the reconciler reads them back from a
// kernel: rules by their identity (one Opaque statement each, the text the
// reconciler stores in the rule's user data), sets flat, without the
// elements of dynamic sets (the packet path's).
func (f *Fake) ReadLive() (*nft.Ruleset, error) { return f.ReadLiveWithoutElements() }

// ReadLiveWithoutElements is ReadLive with the named sets left empty, as
// (*nft.Reconciler).ReadLiveWithoutElements.
func (f *Fake) ReadLiveWithoutElements(sets ...string) (*nft.Ruleset, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	skip := map[string]bool{}
	for _, s := range sets {
		skip[s] = true
	}
	return f.kernel.ruleset(true, skip), nil
}

// Ruleset returns the state for assertions: rules as committed (typed
// statements), sets with all their elements. The tables, chains and sets
// are new; rules and elements share their values with the transactions
// that added them and must not be modified in place.
func (f *Fake) Ruleset() *nft.Ruleset {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.kernel.ruleset(false, nil)
}

// Dump renders the state in nft syntax (nft's Ruleset.Render: what
// --dump-format=nft prints, accepted by nft -f).
func (f *Fake) Dump() string { return f.Ruleset().Render() }

// Compare returns nil if the state holds exactly want (chains with their
// rules by identity, sets with their type and elements, the elements of
// dynamic sets aside), else an error listing the differences.
func (f *Fake) Compare(want *nft.Ruleset) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.kernel.compare(want)
}

// Cleanup deletes our tables in one transaction, like
// (*nft.Reconciler).Cleanup; without tables it does nothing.
func (f *Fake) Cleanup() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = nil
	tx := &nft.Transaction{}
	for _, fam := range slices.Sorted(maps.Keys(f.kernel.tables)) {
		tx.Ops = append(tx.Ops, nft.Op{Kind: nft.OpDelTable, Family: fam})
	}
	return f.record(Record{}, tx)
}

// Records returns every call that committed or tried to commit a
// transaction, oldest first.
func (f *Fake) Records() []Record {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.records)
}

// WatchForeign calls notify for every change made by Foreign until ctx
// ends, like (*nft.Reconciler).WatchForeign.
func (f *Fake) WatchForeign(ctx context.Context, notify func(nft.ForeignChange)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := f.watchID
	f.watchID++
	f.watchers[id] = notify
	context.AfterFunc(ctx, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.watchers, id)
	})
	return nil
}

// Foreign commits tx as another process would (an admin's nft, a
// firewall restart): atomically, by the same rules, and without telling
// Sync, whose next partial diff still starts from the last synced
// ruleset; Verify sees the difference. If the transaction is committed,
// every watcher is then told c (its Objects counted from tx when zero),
// from the calling goroutine.
func (f *Fake) Foreign(c nft.ForeignChange, tx *nft.Transaction) error {
	f.mu.Lock()
	err := f.record(Record{Foreign: true}, tx)
	var notify []func(nft.ForeignChange)
	for _, id := range slices.Sorted(maps.Keys(f.watchers)) {
		notify = append(notify, f.watchers[id])
	}
	f.mu.Unlock()
	if err != nil {
		return err
	}
	if c.Objects == 0 {
		c.Objects = tx.Objects()
	}
	for _, n := range notify {
		n(c)
	}
	return nil
}
