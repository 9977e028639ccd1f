package dump_test

import (
	"context"
	"io"
	"net/netip"
	"testing"

	"github.com/nftproxy/nftproxy/e2e/netkit"
	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/dump"
	"github.com/nftproxy/nftproxy/nftrules/internal/fixture"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// scaleState is the scale of nftrules' benchmarks (fixture.ScaleState).
func scaleState(n, eps int) *model.State {
	return fixture.ScaleState(n, eps, []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")})
}

// programmed10kx10 programs 10k Services x 10 endpoints into a fresh
// network namespace and returns a reconciler reading it.
func programmed10kx10(b *testing.B) (*nft.Reconciler, *model.State) {
	b.Helper()
	ns := netkit.NewTestNS(b, "nftdump-bench")
	rec := nftrules.NewReconciler(nft.Options{NetNSFd: ns.FD()})
	st := scaleState(10000, 10)
	if _, err := rec.Sync(context.Background(), nftrules.Build(st), true); err != nil {
		b.Fatal(err)
	}
	return rec, st
}

// BenchmarkKernelDump10kx10 is `nftproxy --dump` at 10k Services x 10
// endpoints, from the kernel read to the last byte written: text (the
// default), json and nft formats, read as the command reads them (the
// per-Service formats skip the hairpin set's elements).
func BenchmarkKernelDump10kx10(b *testing.B) {
	rec, st := programmed10kx10(b)
	check := func(d *dump.Dump) {
		eps := 0
		for _, sp := range d.Services {
			for _, fe := range sp.Frontends {
				eps += len(fe.Endpoints)
			}
		}
		if len(d.Services) != len(st.Services) || eps != 10*len(st.Services) {
			b.Fatalf("dump has %d service ports and %d endpoints", len(d.Services), eps)
		}
	}
	b.Run("text", func(b *testing.B) {
		for b.Loop() {
			live, err := rec.ReadLiveWithoutElements(nftrules.SetHairpin)
			if err != nil {
				b.Fatal(err)
			}
			d := dump.FromRuleset(live, nil)
			check(d)
			if err := d.WriteText(io.Discard); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json", func(b *testing.B) {
		for b.Loop() {
			live, err := rec.ReadLiveWithoutElements(nftrules.SetHairpin)
			if err != nil {
				b.Fatal(err)
			}
			if err := dump.FromRuleset(live, nil).WriteJSON(io.Discard); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("nft", func(b *testing.B) {
		for b.Loop() {
			live, err := rec.ReadLive()
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.WriteString(io.Discard, dump.RenderNFT(live)); err != nil {
				b.Fatal(err)
			}
		}
	})
	// With API comparison: the desired side (Build of the API's State and
	// its view) on top of the kernel view.
	b.Run("text+compare", func(b *testing.B) {
		for b.Loop() {
			live, err := rec.ReadLiveWithoutElements(nftrules.SetHairpin)
			if err != nil {
				b.Fatal(err)
			}
			names := dump.NamesOf(st)
			d := dump.FromRuleset(live, names)
			dump.Compare(d, dump.FromRuleset(nftrules.Build(st), names), st, true)
			for _, sp := range d.Services {
				if len(sp.Drift) > 0 {
					b.Fatalf("drift %v", sp.Drift)
				}
			}
			if err := d.WriteText(io.Discard); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkView10kx10 is the reconstruction alone (no kernel).
func BenchmarkView10kx10(b *testing.B) {
	rs := nftrules.Build(scaleState(10000, 10))
	b.ReportAllocs()
	for b.Loop() {
		dump.FromRuleset(rs, nil)
	}
}
