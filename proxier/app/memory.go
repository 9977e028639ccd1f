package app

import (
	"runtime/debug"

	"k8s.io/klog/v2"
)

// defaultGCPercent is the collector's pacing once the caches have synced,
// unless the operator set GOGC. Go's default (100) lets the heap grow to
// twice what is live before it collects, and a proxy that allocates with
// every change reaches that mark sooner or later: at 10,000 Services × 10
// endpoints, ~55 MB live became 138–152 MB of RSS over a bench-compare
// run; at 50, 122–126 MB (docs/performance.md, "Memory, sixth pass"). A
// proxy runs on every node, so its memory is paid once per node.
const defaultGCPercent = 50

// setGCDefault applies defaultGCPercent unless the environment sets GOGC
// (Go's own knob; GOGC=off with GOMEMLIMIT is how an operator trades the
// other way). GOMEMLIMIT alone does not stop it: the DaemonSet sets it
// from the container's memory limit, as a ceiling, not as pacing. run
// calls it once the caches have synced: while the initial lists arrive
// the heap grows from nothing, and collecting that growth at 50 cost
// CPU before the first sync for a heap that is not the run's largest.
// It reports whether it applied the default.
func setGCDefault(getenv func(string) string) bool {
	if v := getenv("GOGC"); v != "" {
		klog.V(2).InfoS("Garbage collector pacing set by the environment", "GOGC", v)
		return false
	}
	debug.SetGCPercent(defaultGCPercent)
	klog.V(2).InfoS("Garbage collector pacing set", "GOGC", defaultGCPercent)
	return true
}
