package netkit

import (
	"os"
	"path/filepath"
	"testing"
)

// NewTestNS is the namespace of one kernel test or benchmark: after
// RequireRoot, it removes the leftovers of a crashed run (namespaces whose
// name starts with name), creates name, and deletes it when t ends (unless
// KEEP is set, to look at it after a failure).
func NewTestNS(t testing.TB, name string) *NS {
	t.Helper()
	RequireRoot(t)
	return newTestNS(t, name)
}

// newTestNS is NewTestNS for callers that already called RequireRoot
// (RequireRoot records every call in the kernel test log).
func newTestNS(t testing.TB, name string) *NS {
	t.Helper()
	_ = CleanupPrefix(name)
	ns, err := New(name)
	if err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	if os.Getenv("KEEP") == "" {
		t.Cleanup(func() { _ = ns.Delete() })
	}
	return ns
}

// NftList returns the output of `nft list ARGS` in the namespace ("ruleset",
// or "table", "ip", "filter"), failing t if nft fails: the listing tests
// compare to show that a table was left exactly as its owner made it.
func (n *NS) NftList(t testing.TB, args ...string) string {
	t.Helper()
	out, err := n.Exec(append([]string{"nft", "list"}, args...)...)
	if err != nil {
		t.Fatalf("nft list %v in %s: %v\n%s", args, n.Name, err, out)
	}
	return string(out)
}

// NftLoad runs `nft -f` on ruleset in the namespace, failing t if nft
// refuses it: how the tests make the tables of a firewall or of another
// proxy that ours must leave alone.
func (n *NS) NftLoad(t testing.TB, ruleset string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "ruleset.nft")
	if err := os.WriteFile(file, []byte(ruleset), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := n.Exec("nft", "-f", file); err != nil {
		t.Fatalf("nft -f in %s: %v\n%s\n%s", n.Name, err, out, ruleset)
	}
}
