package nft

import (
	"encoding/binary"
	"testing"

	"golang.org/x/net/bpf"
)

// TestOwnFilter runs the socket filter on notification headers: those of
// our port IDs are dropped, everyone else's are kept whole.
func TestOwnFilter(t *testing.T) {
	header := func(pid uint32) []byte {
		b := make([]byte, 20) // nlmsghdr (16) + nfgenmsg (4)
		binary.NativeEndian.PutUint32(b[12:], pid)
		return b
	}
	for _, tc := range []struct {
		own  []uint32
		keep map[uint32]bool
	}{
		{nil, map[uint32]bool{0: true, 4711: true}},
		{[]uint32{4711}, map[uint32]bool{4711: false, 0: true, 4712: true, 0x67110000: true}},
		{[]uint32{4711, 0x80000001, 9}, map[uint32]bool{4711: false, 0x80000001: false, 9: false, 0: true, 10: true}},
	} {
		prog, err := ownFilter(tc.own)
		if err != nil {
			t.Fatal(err)
		}
		insns := make([]bpf.Instruction, len(prog))
		for i, r := range prog {
			insns[i] = r.Disassemble()
		}
		vm, err := bpf.NewVM(insns)
		if err != nil {
			t.Fatal(err)
		}
		for pid, keep := range tc.keep {
			n, err := vm.Run(header(pid))
			if err != nil {
				t.Fatal(err)
			}
			if (n > 0) != keep || (keep && n < 20) {
				t.Errorf("own %v: pid %d kept %d bytes, want keep=%v", tc.own, pid, n, keep)
			}
		}
	}
}
