package app

import (
	"runtime/debug"

	"k8s.io/klog/v2"

	"github.com/nftproxy/nftproxy/proxier"
)

// defaultGCPercent is the collector's pacing once the first rules are in
// the kernel, unless the operator set GOGC. Go's default (100) lets the heap grow to
// twice what is live before it collects, and a proxy that allocates with
// every change reaches that mark sooner or later: at 10,000 Services × 10
// endpoints, with ~55 MB live, a bench-compare run peaked at 138–152 MB
// of RSS; at 50, 125–132 MB for the same change latency
// (docs/performance.md, "Memory, sixth pass"). A proxy runs on every
// node, so its memory is paid once per node.
const defaultGCPercent = 50

// gcDefaultAfterFirstSync returns the sync callback that applies
// defaultGCPercent once the first sync has succeeded. Until then the
// heap grows from nothing (the initial lists, the first load, the cold
// Build and its batch): collecting that growth at 50 cost ~0.5 s more
// CPU before the first rules when applied from the start, and ~0.2 s
// when applied from the caches' sync, for a first-sync peak that is not
// the run's largest (docs/performance.md, "Memory, sixth pass").
func gcDefaultAfterFirstSync(getenv func(string) string) func(proxier.SyncInfo) {
	done := false
	return func(info proxier.SyncInfo) {
		if !done && info.Err == nil {
			done = true
			setGCDefault(getenv)
		}
	}
}

// setGCDefault applies defaultGCPercent unless the environment sets GOGC
// (Go's own knob; GOGC=off with GOMEMLIMIT is how an operator trades the
// other way). GOMEMLIMIT alone does not stop it: the DaemonSet sets it
// from the container's memory limit, as a ceiling, not as pacing.
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
