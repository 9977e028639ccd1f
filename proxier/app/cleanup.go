package app

import (
	"errors"
	"fmt"
	"io"

	"k8s.io/klog/v2"

	"github.com/nftproxy/nftproxy/nftrules/instance"
	"github.com/nftproxy/nftproxy/proxier/localnet"
)

// runCleanup removes our tables from the current network namespace and
// restores net.ipv4.conf.all.route_localnet if nftproxy changed it (as
// recorded in stateDir). It is idempotent and touches nothing but `table
// ip nftproxy` and `table ip6 nftproxy` (upstream kube-proxy's tables, and
// everyone else's, stay).
//
// It takes the instance lock, so that no proxy starts meanwhile; while a
// proxy holds it, cleaning up is refused (the proxy would recreate the
// tables at once) unless force is set.
func runCleanup(out io.Writer, stateDir string, force bool) error {
	lock, err := instance.TryAcquire(instance.RoleCleanup, "")
	var held *instance.HeldError
	switch {
	case errors.As(err, &held) && !force:
		return fmt.Errorf("cleanup refused: %s is running in this network namespace and would recreate its tables at once; "+
			"stop it first (delete the DaemonSet, or stop the process), or pass --force to delete them anyway", held.Holder)
	case held != nil:
		fmt.Fprintf(out, "warning: %s is running in this network namespace; deleting its tables anyway (--force): it recreates them within a second\n", held.Holder)
	case err != nil:
		return fmt.Errorf("cleanup: %w", err)
	}
	defer lock.Release()
	rec := openNftables()
	defer closeNftables(rec)
	return cleanupWith(out, rec, stateDir)
}

// cleanupWith deletes the tables rec manages, after restoring
// route_localnet (so that it is never 1 without the guard rule).
func cleanupWith(out io.Writer, rec ourTables, stateDir string) error {
	live, err := rec.ReadLive()
	if err != nil {
		return fmt.Errorf("cleanup: read our tables: %w", err)
	}
	// A failure to restore is reported (exit 1), the tables go anyway.
	localnetErr := localnet.Cleanup(out, live, stateDir)
	if err := rec.Cleanup(); err != nil {
		return fmt.Errorf("cleanup: %w", errors.Join(err, localnetErr))
	}
	if len(live.Tables) == 0 {
		fmt.Fprintln(out, "no nftproxy tables: nothing to clean up")
		return localnetErr
	}
	for _, f := range live.SortedFamilies() {
		t := live.Tables[f]
		klog.InfoS("Deleted table", "family", f, "table", t.Name, "chains", t.Chains.Len(), "sets", t.Sets.Len())
		fmt.Fprintf(out, "deleted table %s %s (%d chains, %d sets)\n", f, t.Name, t.Chains.Len(), t.Sets.Len())
	}
	return localnetErr
}
