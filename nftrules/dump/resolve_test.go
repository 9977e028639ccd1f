package dump

import (
	"net/netip"
	"testing"

	"github.com/nftproxy/nftproxy/nftrules/nft"
)

// TestEntriesUsedCountsEachEntryOnce: the entries of an endpoint map that
// chains read are counted once however the ranges meet (so that "holds N
// entries no service chain uses" is right).
func TestEntriesUsedCountsEachEntryOnce(t *testing.T) {
	m := &nft.Set{Name: "endpoints-tcp-0", Key: []nft.Datatype{nft.TypeIndex}, Data: []nft.Datatype{nft.TypeIPv4Addr, nft.TypeInetService}}
	for _, k := range []uint32{0, 1, 2, 10, 11, 12, 13} { // 3..9 missing
		m.Put(nft.Element{Key: []nft.Value{nft.NumValue(k)}, Data: []nft.Value{nft.AddrValue(netip.MustParseAddr("10.0.0.1")), nft.NumValue(80)}})
	}
	for _, tc := range []struct {
		name  string
		spans []walkedSpan
		want  int
	}{
		{"none", nil, 0},
		{"disjoint", []walkedSpan{{10, 2, 2}, {0, 3, 3}}, 5},
		{"one block read twice", []walkedSpan{{0, 3, 3}, {0, 3, 3}, {10, 4, 4}}, 7},
		{"a range past the entries", []walkedSpan{{0, 5, 3}}, 3},
		{"overlapping", []walkedSpan{{0, 2, 2}, {1, 11, 4}}, 5},
		{"nested", []walkedSpan{{10, 4, 4}, {11, 1, 1}, {0, 1, 1}}, 5},
	} {
		if got := entriesUsed(m, tc.spans); got != tc.want {
			t.Errorf("%s: %d entries used, want %d", tc.name, got, tc.want)
		}
	}
}
