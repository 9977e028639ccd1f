package app

import (
	"runtime/debug"
	"testing"
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
