package dump_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/dump"
	"github.com/nftproxy/nftproxy/nftrules/nft"
)

// TestWriteJSONIsTheEncodersOutput: WriteJSON, which marshals Service
// ports one at a time, writes byte for byte what json.Encoder with a
// two-space indent writes for the whole dump: with no table, with no
// Service port, with ports, problems, drift and text that JSON escapes.
func TestWriteJSONIsTheEncodersOutput(t *testing.T) {
	st := testState()
	names := dump.NamesOf(st)
	compared := dump.FromRuleset(nftrules.Build(st), names)
	broken := nftrules.Build(st)
	for _, tb := range broken.Tables {
		tb.Sets.Delete(nftrules.SetClusterIPs)
	}
	dump.Compare(compared, dump.FromRuleset(broken, names), st, true)
	compared.Services[0].Problems = append(compared.Services[0].Problems, `<script>"&'`+"\n\u2028")
	onlyTables := dump.FromRuleset(nftrules.Build(st), nil)
	onlyTables.Services = nil
	for name, d := range map[string]*dump.Dump{
		"nothing":           dump.FromRuleset(nft.NewRuleset(), nil),
		"tables, no ports":  onlyTables,
		"ports":             dump.FromRuleset(nftrules.Build(st), nil),
		"compared, escaped": compared,
	} {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetIndent("", "  ")
		if err := enc.Encode(d); err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if err := d.WriteJSON(&got); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Errorf("%s: WriteJSON wrote\n%s\nwant\n%s", name, got.String(), want.String())
		}
	}
}
