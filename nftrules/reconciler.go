package nftrules

import (
	"context"
	"fmt"
)

// Options configure a Reconciler.
type Options struct {
	// NetNSFd, when non-zero, is an fd of the network namespace to program
	// (tests use their own namespaces); zero means the current namespace.
	NetNSFd int
}

// SyncResult describes one applied transaction.
type SyncResult struct {
	// Full is true when live state was read from the kernel for this sync.
	Full bool
	// Ops counts the verbs in the transaction (0: nothing to do).
	Ops int
	// Messages counts the netlink messages sent.
	Messages int
}

// Reconciler keeps our tables in the kernel equal to a desired Ruleset.
// It is the only code in nftproxy that talks to nftables.
type Reconciler struct {
	opts Options
}

// NewReconciler returns a reconciler for the namespace in opts.
func NewReconciler(opts Options) (*Reconciler, error) {
	return &Reconciler{opts: opts}, nil
}

// Sync makes the kernel match desired in one atomic transaction. With full
// set (or when no transaction has been applied yet) it first reads our
// tables back from the kernel; otherwise the last applied ruleset stands in
// for the live state.
func (r *Reconciler) Sync(ctx context.Context, desired *Ruleset, full bool) (SyncResult, error) {
	return SyncResult{}, fmt.Errorf("not implemented yet")
}

// ReadLive reads our tables back from the kernel.
func (r *Reconciler) ReadLive() (*Ruleset, error) {
	return nil, fmt.Errorf("not implemented yet")
}

// Close releases the netlink connection.
func (r *Reconciler) Close() error { return nil }
