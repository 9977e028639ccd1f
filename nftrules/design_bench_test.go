package nftrules_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/nftables"

	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// The benchmarks of this file are the evidence of decision records in
// docs/design.md: each compares the choice made with the alternative, on
// the same ruleset and the same kernel. They are small (2k or 1k Services)
// so that they run in seconds on a shared machine.

// BenchmarkKernelEndpointMapShards: endpoint maps of 64 service ports each
// (the layout) against one map for all, at 2k Services x 10 endpoints.
// cold-apply programs everything into empty tables; one-endpoint moves one
// endpoint; one-service adds a Service (10 endpoints), the next op removes
// it again.
func BenchmarkKernelEndpointMapShards(b *testing.B) {
	const services, eps = 2000, 10
	for _, c := range []struct {
		name   string
		perMap uint32
	}{
		{"sharded-64", nftrules.ServicePortsPerEndpointMap},
		{"one-map", nftrules.MaxServicePortID + 1},
	} {
		b.Run(c.name, func(b *testing.B) {
			defer nftrules.SetServicePortsPerEndpointMap(c.perMap)()
			tn := newTestNode(b, 0)
			rec := newReconciler(b, tn.node)
			all := scaleState(services+1, eps)
			st := *all
			st.Services = all.Services[:services]

			b.Run("cold-apply", func(b *testing.B) {
				coldApplies(b, rec, func() error {
					_, err := rec.Sync(context.Background(), nftrules.Build(&st), true)
					return err
				})
			})

			builder := syncedBuilder(b, rec, &st)
			b.Run("one-endpoint", func(b *testing.B) {
				round := 0
				for b.Loop() {
					round++
					changeOneEndpoint(&st, services/2, round)
					if _, err := rec.Sync(context.Background(), builder.Build(&st), false); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("one-service", func(b *testing.B) {
				for b.Loop() {
					if len(st.Services) == services {
						st.Services = all.Services[:services+1]
					} else {
						st.Services = all.Services[:services]
					}
					if _, err := rec.Sync(context.Background(), builder.Build(&st), false); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkKernelColdApplyNetlinkVsNft1kx10 programs the same ruleset (1k
// Services x 10 endpoints, as Build makes it) into empty tables through
// the Reconciler (one netlink batch) and through `nft -f` of its
// rendering (what a proxy shelling out to nft does, process start
// included).
func BenchmarkKernelColdApplyNetlinkVsNft1kx10(b *testing.B) {
	st := scaleState(1000, 10)
	tn := newTestNode(b, 0)
	rec := newReconciler(b, tn.node)
	rs := nftrules.Build(st)
	b.Run("netlink", func(b *testing.B) {
		coldApplies(b, rec, func() error {
			_, err := rec.Sync(context.Background(), rs, true)
			return err
		})
	})
	file := filepath.Join(b.TempDir(), "ruleset.nft")
	if err := os.WriteFile(file, []byte(rs.Render()), 0o644); err != nil {
		b.Fatal(err)
	}
	b.Run("nft-f", func(b *testing.B) {
		coldApplies(b, rec, func() error {
			if out, err := tn.node.Exec("nft", "-f", file); err != nil {
				return fmt.Errorf("nft -f: %w\n%s", err, out)
			}
			return nil
		})
	})
}

// BenchmarkKernelNetlinkConnection: one endpoint change at 1k Services x
// 10 endpoints on the Reconciler's lasting connection, against closing the
// connection after every sync (the next opens a new one), as a connection
// per sync would.
func BenchmarkKernelNetlinkConnection(b *testing.B) {
	const services = 1000
	for _, perSync := range []bool{false, true} {
		name := "lasting"
		if perSync {
			name = "per-sync"
		}
		b.Run(name, func(b *testing.B) {
			st := scaleState(services, 10)
			rec := newReconciler(b, newTestNode(b, 0).node)
			builder := syncedBuilder(b, rec, st)
			round := 0
			for b.Loop() {
				round++
				changeOneEndpoint(st, services/2, round)
				if _, err := rec.Sync(context.Background(), builder.Build(st), false); err != nil {
					b.Fatal(err)
				}
				if perSync {
					_ = rec.Close() // keeps the applied state: the next sync stays partial
				}
			}
		})
	}
}

// coldApplies times apply into empty tables: our tables are deleted,
// untimed, before each op.
func coldApplies(b *testing.B, rec *nft.Reconciler, apply func() error) {
	for b.Loop() {
		b.StopTimer()
		if err := rec.Cleanup(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := apply(); err != nil {
			b.Fatal(err)
		}
	}
}

// syncedBuilder returns a Builder whose ruleset for st rec has programmed.
func syncedBuilder(b *testing.B, rec *nft.Reconciler, st *model.State) *nftrules.Builder {
	builder := nftrules.NewBuilder()
	if _, err := rec.Sync(context.Background(), builder.Build(st), true); err != nil {
		b.Fatal(err)
	}
	return builder
}

// BenchmarkKernelReadRules2kx10 reads our IPv4 table back, as every full
// sync does, with 2k Services x 10 endpoints programmed: ReadLive (every
// chain, every rule by the identity in its user data, and every set
// element) against google/nftables' GetRules of every chain (rules only,
// every expression decoded), what matching rules by their bytecode would
// start from.
func BenchmarkKernelReadRules2kx10(b *testing.B) {
	tn := newTestNode(b, 0)
	rec := newReconciler(b, tn.node)
	syncedBuilder(b, rec, scaleState(2000, 10))
	b.Run("user-data-identity", func(b *testing.B) {
		for b.Loop() {
			if _, err := rec.ReadLive(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("GetRules-decoded", func(b *testing.B) {
		c, err := nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(tn.node.FD()))
		if err != nil {
			b.Fatal(err)
		}
		defer func() { _ = c.CloseLasting() }()
		table := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: nft.TableName}
		for b.Loop() {
			chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
			if err != nil {
				b.Fatal(err)
			}
			rules := 0
			for _, ch := range chains {
				if ch.Table.Name != nft.TableName {
					continue
				}
				rs, err := c.GetRules(table, ch)
				if err != nil {
					b.Fatal(err)
				}
				rules += len(rs)
			}
			b.ReportMetric(float64(rules), "rules")
		}
	})
}
