package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/nftproxy/nftproxy/informers"
	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/dump"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/proxier"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// apiTimeout bounds the API reads of --dump (list and sync the informers).
const apiTimeout = 30 * time.Second

// dumpMemoryLimit is the heap size at which --dump starts collecting
// garbage (see runDump).
const dumpMemoryLimit = 128 << 20

// runDump prints our live tables in the current network namespace.
func runDump(ctx context.Context, out io.Writer, o *opsOptions, opts *options) error {
	// A one-shot command whose heap is mostly live until it prints (the
	// kernel's objects, then their view): collecting as it grows cost a
	// fifth of its CPU at 10k Services (0.50-0.56 s against 0.39-0.43 s
	// with GOGC=off) and freed little (peak RSS 84 MB against 101 MB).
	// Collect only near a bound, which the text view at 10k stays under
	// and the JSON and nft formats (150-250 MB allocated) reach: their
	// peak RSS stays at 150 MB.
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(dumpMemoryLimit))
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	rec := openNftables()
	defer closeNftables(rec)
	return dumpTo(ctx, out, o, rec, func(ctx context.Context) (*model.State, error) { return desiredFromAPI(ctx, opts) })
}

// dumpTo prints the tables rec reads; desired returns what the API says
// the node should program (nil: no API, kernel view only). The kernel is
// read first, so that the output shows the rules as they were before any
// slow API call.
func dumpTo(ctx context.Context, out io.Writer, o *opsOptions, rec ourTables, desired func(context.Context) (*model.State, error)) error {
	start := time.Now()
	var live *nft.Ruleset
	var err error
	if o.dumpFormat == "nft" {
		live, err = rec.ReadLive()
	} else {
		// The per-Service view has no use for the hairpin set's elements
		// (this node's endpoints, repeated).
		live, err = rec.ReadLiveWithoutElements(nftrules.SetHairpin)
	}
	if err != nil {
		return fmt.Errorf("dump: read our tables: %w", err)
	}
	klog.V(2).InfoS("Read live tables", "duration", time.Since(start))
	if o.dumpFormat == "nft" {
		if _, err := io.WriteString(out, dump.RenderNFT(live)); err != nil {
			return fmt.Errorf("write dump: %w", err)
		}
		return nil
	}

	st, err := desired(ctx)
	if err != nil {
		return err
	}
	var names dump.Names
	if st != nil {
		names = dump.NamesOf(st)
	}
	d := dump.FromRuleset(live, names)
	for i := range d.Tables {
		d.Tables[i].UnreadSets = []string{nftrules.SetHairpin}
	}
	if st != nil {
		dump.Compare(d, dump.FromRuleset(nftrules.Build(st), names), st, o.masqueradeConfigured)
	}
	if o.dumpService != "" {
		ns, name, _ := strings.Cut(o.dumpService, "/")
		d.Filter(ns, name)
	}
	defer func() { klog.V(2).InfoS("Dump done", "duration", time.Since(start), "servicePorts", len(d.Services)) }()
	if o.dumpFormat == "json" {
		return d.WriteJSON(out)
	}
	return d.WriteText(out)
}

// desiredFromAPI returns the State the proxier would program from the API
// objects, or nil when there is no API to ask: no --kubeconfig/--master and
// not running in a cluster. With explicit API flags, failing to read the
// API is an error; with the implicit in-cluster configuration, a warning.
func desiredFromAPI(ctx context.Context, opts *options) (*model.State, error) {
	explicit := opts.kubeconfig != "" || opts.master != ""
	cfg, err := restConfig(opts.kubeconfig, opts.master)
	if err != nil {
		if !explicit {
			klog.V(1).InfoS("No API access; printing the kernel view only", "reason", err)
			return nil, nil
		}
		return nil, err
	}
	st, err := readDesired(ctx, cfg, opts)
	if err != nil {
		if !explicit {
			klog.ErrorS(err, "Cannot compare with the API; printing the kernel view only")
			return nil, nil
		}
		return nil, fmt.Errorf("dump: compare with the API: %w", err)
	}
	return st, nil
}

func readDesired(ctx context.Context, cfg *rest.Config, opts *options) (*model.State, error) {
	client, pages, err := newClients(cfg, "nftproxy-dump")
	if err != nil {
		return nil, err
	}
	return desiredFromClient(ctx, client, pages, opts)
}

// desiredFromClient lists the objects the proxier watches (same informers,
// same label filter) and converts them as the proxier does.
func desiredFromClient(ctx context.Context, client, pages kubernetes.Interface, opts *options) (*model.State, error) {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	inf, err := informers.New(client, informers.Config{NodeName: opts.nodeName, ServiceProxyName: opts.serviceProxyName, Pages: pages}, informers.NewTracker(clock.RealClock{}))
	if err != nil {
		return nil, err
	}
	inf.Start(ctx)
	defer func() {
		cancel()
		inf.Shutdown()
	}()
	if err := inf.WaitForSync(ctx); err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("API objects not listed within %v: %w", apiTimeout, err)
		}
		return nil, err
	}
	return proxier.DesiredState(proxier.Config{
		NodeName:      opts.nodeName,
		ClusterCIDRs:  opts.podRanges,
		MasqueradeAll: opts.masqueradeAll,

		DenyExternalIPsOnNodeAddresses: opts.denyNodeAddressExternalIPs,
	}, inf)
}
