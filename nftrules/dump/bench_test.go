package dump_test

import (
	"context"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

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
func programmed10kx10(b *testing.B) (*nft.Reconciler, *model.State, *netkit.NS) {
	b.Helper()
	ns := netkit.NewTestNS(b, "nftdump-bench")
	rec := nftrules.NewReconciler(nft.Options{NetNSFd: ns.FD()})
	st := scaleState(10000, 10)
	if _, err := rec.Sync(context.Background(), nftrules.Build(st), true); err != nil {
		b.Fatal(err)
	}
	return rec, st, ns
}

// BenchmarkKernelDump10kx10 is `nftproxy --dump` at 10k Services x 10
// endpoints, from the kernel read to the last byte written: text (the
// default), json and nft formats, read as the command reads them (the
// per-Service formats skip the hairpin set's elements).
func BenchmarkKernelDump10kx10(b *testing.B) {
	rec, st, ns := programmed10kx10(b)
	nsFd := ns.FD()
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
		defer reportCPU(b)()
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
	// The text view of a ruleset read once: our share of the text dump
	// without the kernel's (reading leaves the sets raw, so every round
	// decodes them again).
	b.Run("text-view-only", func(b *testing.B) {
		live, err := rec.ReadLiveWithoutElements(nftrules.SetHairpin)
		if err != nil {
			b.Fatal(err)
		}
		defer reportCPU(b)()
		for b.Loop() {
			d := dump.FromRuleset(live, nil)
			check(d)
			if err := d.WriteText(io.Discard); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json", func(b *testing.B) {
		defer reportCPU(b)()
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
		defer reportCPU(b)()
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
	// The command itself, as an admin runs it: a new process (the
	// nftproxy binary, built once) in the namespace, text to a pipe. With
	// NFTPROXY_DUMP_BINARIES=name=path,... it times those binaries
	// instead, one after the other on the same tables (command/name): a
	// before/after comparison under the same load.
	for _, bin := range dumpBinaries(b) {
		b.Run(bin.name, func(b *testing.B) {
			path := bin.path
			if path == "" {
				path = buildNftproxy(b)
			}
			for b.Loop() {
				out, err := ns.Exec(path, "--dump")
				if err != nil {
					b.Fatal(err)
				}
				if len(out) < 1<<20 {
					b.Fatalf("the dump is %d bytes", len(out))
				}
			}
		})
	}
	// The kernel's own time to dump what the text view reads (every set's
	// elements but the hairpin set's), with no parsing: the floor.
	b.Run("kernel-floor", func(b *testing.B) {
		live, err := rec.ReadLiveWithoutElements(nftrules.SetHairpin)
		if err != nil {
			b.Fatal(err)
		}
		sets := elementSets(b, live, nftrules.SetHairpin)
		d, err := newRawDumper(nsFd)
		if err != nil {
			b.Fatal(err)
		}
		defer d.nl.Close()
		var bytes, msgs int
		defer reportCPU(b)()
		for b.Loop() {
			if bytes, msgs, err = d.dumpTable(unix.AF_INET, sets); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(bytes), "bytes/dump")
		b.ReportMetric(float64(msgs), "msgs/dump")
	})
	// With API comparison: the desired side (Build of the API's State and
	// its view) on top of the kernel view.
	b.Run("text+compare", func(b *testing.B) {
		defer reportCPU(b)()
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

// reportCPU reports the process's CPU time (user and system, the
// kernel's work in our syscalls included) per operation from now until
// the returned function runs: on this shared machine wall time moves
// with the load, CPU time much less.
func reportCPU(b *testing.B) func() {
	var before unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &before)
	return func() {
		var after unix.Rusage
		_ = unix.Getrusage(unix.RUSAGE_SELF, &after)
		cpu := func(r unix.Rusage) float64 {
			return float64(r.Utime.Nano()+r.Stime.Nano()) / 1e9
		}
		if b.N > 0 {
			b.ReportMetric((cpu(after)-cpu(before))/float64(b.N), "cpu-s/op")
		}
	}
}

// buildNftproxy builds the nftproxy command into a temporary directory.
// namedBinary is a binary the command benchmark times ("" path: build
// this tree's).
type namedBinary struct{ name, path string }

// dumpBinaries are the binaries NFTPROXY_DUMP_BINARIES names, or this
// tree's as "command".
func dumpBinaries(b *testing.B) []namedBinary {
	env := os.Getenv("NFTPROXY_DUMP_BINARIES")
	if env == "" {
		return []namedBinary{{name: "command"}}
	}
	var out []namedBinary
	for _, nb := range strings.Split(env, ",") {
		name, path, ok := strings.Cut(nb, "=")
		if !ok || name == "" || path == "" {
			b.Fatalf("NFTPROXY_DUMP_BINARIES: %q is not name=path", nb)
		}
		out = append(out, namedBinary{name: "command/" + name, path: path})
	}
	return out
}

func buildNftproxy(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "nftproxy")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/nftproxy/nftproxy")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build nftproxy: %v\n%s", err, out)
	}
	return bin
}
