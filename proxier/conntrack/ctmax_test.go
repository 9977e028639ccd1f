package conntrack

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// net.netfilter.nf_conntrack_max is one value for the whole machine (read
// only inside a network namespace on this kernel, 6.18), so a table of a
// million entries in a test namespace needs the host's limit raised. The
// limit is counted per namespace, so raising it gives no other namespace
// fewer entries; it is restored exactly when the test ends, and a run
// killed before it could restore is repaired by the next run from the
// saved value.
const (
	ctMaxPath  = "/proc/sys/net/netfilter/nf_conntrack_max"
	ctMaxSaved = "/tmp/nftproxy-conntrack-max.saved"
)

// raiseConntrackMax makes room for at least n entries per namespace until
// the end of tb.
func raiseConntrackMax(tb testing.TB, n int) {
	tb.Helper()
	restoreSavedConntrackMax(tb)
	cur, err := readInt(ctMaxPath)
	if err != nil {
		tb.Fatal(err)
	}
	if cur >= n {
		return
	}
	if err := os.WriteFile(ctMaxSaved, []byte(strconv.Itoa(cur)), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(ctMaxPath, []byte(strconv.Itoa(n)), 0o644); err != nil {
		tb.Fatalf("raise nf_conntrack_max to %d: %v", n, err)
	}
	tb.Logf("nf_conntrack_max raised from %d to %d for this test", cur, n)
	tb.Cleanup(func() { restoreSavedConntrackMax(tb) })
}

// restoreSavedConntrackMax puts back a value an earlier run saved.
func restoreSavedConntrackMax(tb testing.TB) {
	b, err := os.ReadFile(ctMaxSaved)
	if os.IsNotExist(err) {
		return
	}
	if err != nil {
		tb.Fatal(err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		tb.Fatalf("%s: %v", ctMaxSaved, err)
	}
	if err := os.WriteFile(ctMaxPath, []byte(strconv.Itoa(v)), 0o644); err != nil {
		tb.Fatalf("restore nf_conntrack_max to %d: %v", v, err)
	}
	if err := os.Remove(ctMaxSaved); err != nil {
		tb.Fatal(err)
	}
	tb.Logf("nf_conntrack_max restored to %d", v)
}
