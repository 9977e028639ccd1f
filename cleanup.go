package main

import (
	"fmt"
	"io"

	"k8s.io/klog/v2"

	"github.com/nftproxy/nftproxy/nftrules"
)

// runCleanup removes our tables from the current network namespace. It is
// idempotent and touches nothing but `table ip nftproxy` and `table ip6
// nftproxy` (upstream kube-proxy's tables, and everyone else's, stay).
func runCleanup(out io.Writer) error {
	rec, err := nftrules.NewReconciler(nftrules.Options{})
	if err != nil {
		return fmt.Errorf("opening nftables: %w", err)
	}
	return cleanupWith(out, rec)
}

// cleanupWith deletes the tables rec manages.
func cleanupWith(out io.Writer, rec *nftrules.Reconciler) error {
	live, err := rec.ReadLive()
	if err != nil {
		return fmt.Errorf("cleanup: read our tables: %w", err)
	}
	if err := rec.Cleanup(); err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	if len(live.Tables) == 0 {
		fmt.Fprintln(out, "no nftproxy tables: nothing to clean up")
		return nil
	}
	for _, f := range live.SortedFamilies() {
		t := live.Tables[f]
		klog.InfoS("Deleted table", "family", f, "table", t.Name, "chains", len(t.Chains), "sets", len(t.Sets))
		fmt.Fprintf(out, "deleted table %s %s (%d chains, %d sets)\n", f, t.Name, len(t.Chains), len(t.Sets))
	}
	return nil
}
