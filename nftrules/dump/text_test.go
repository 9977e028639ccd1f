package dump_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/dump"
)

var updateGolden = flag.Bool("update", false, "rewrite nftrules/dump/testdata golden files from the current output")

// TestTextOfRichState pins the text an admin reads for every kind of
// frontend, status and problem (testdata/rich.txt; -update rewrites it):
// the view of the rich State with the API comparison, and of a broken
// live ruleset.
func TestTextOfRichState(t *testing.T) {
	st := richState()
	d := dump.FromRuleset(nftrules.Build(st), dump.NamesOf(st))
	dump.Compare(d, dump.FromRuleset(nftrules.Build(st), dump.NamesOf(st)), st, true)
	var b strings.Builder
	if err := d.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	b.WriteString("\n--- a broken live ruleset, kernel view only ---\n")
	if err := dump.FromRuleset(brokenLive(t), nil).WriteText(&b); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "rich.txt")
	if *updateGolden {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test -run TestTextOfRichState -update writes it)", err)
	}
	if b.String() != string(want) {
		t.Errorf("text differs from %s:\n%s", golden, b.String())
	}
}
