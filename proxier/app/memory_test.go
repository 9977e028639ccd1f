package app

import (
	"errors"
	"runtime/debug"
	"testing"

	"github.com/nftproxy/nftproxy/proxier"
)

// The daemon collects at GOGC=50 unless the environment sets GOGC; a
// memory limit alone (the DaemonSet's) keeps the default.
func TestGCDefaultYieldsToTheEnvironment(t *testing.T) {
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })
	for _, c := range []struct {
		env  map[string]string
		want int
	}{
		{nil, defaultGCPercent},
		{map[string]string{"GOGC": "200"}, 100},
		{map[string]string{"GOGC": "off", "GOMEMLIMIT": "256MiB"}, 100},
		{map[string]string{"GOMEMLIMIT": "1GiB"}, defaultGCPercent},
	} {
		debug.SetGCPercent(100)
		applied := setGCDefault(func(k string) string { return c.env[k] })
		if got := debug.SetGCPercent(100); got != c.want || applied != (c.want == defaultGCPercent) {
			t.Errorf("env %v: GOGC %d (applied %v), want %d", c.env, got, applied, c.want)
		}
	}
}

// The default applies once, at the first successful sync: not before
// (the start's growing heap), not at a failed one.
func TestGCDefaultAppliesAtTheFirstSuccessfulSync(t *testing.T) {
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })
	onSync := gcDefaultAfterFirstSync(func(string) string { return "" })
	gogc := func() int { g := debug.SetGCPercent(100); debug.SetGCPercent(g); return g }
	onSync(proxier.SyncInfo{Err: errors.New("netlink: no buffer space")})
	if got := gogc(); got != 100 {
		t.Fatalf("GOGC %d after a failed first sync, want 100", got)
	}
	onSync(proxier.SyncInfo{})
	if got := gogc(); got != defaultGCPercent {
		t.Fatalf("GOGC %d after the first successful sync, want %d", got, defaultGCPercent)
	}
	debug.SetGCPercent(80) // later syncs leave the pacing alone
	onSync(proxier.SyncInfo{})
	if got := gogc(); got != 80 {
		t.Errorf("GOGC %d after a later sync, want 80 (applied once)", got)
	}
}
