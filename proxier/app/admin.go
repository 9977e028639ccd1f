package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/nft"
)

// opsOptions are the one-shot admin commands: --dump, --trace, --cleanup.
// Each reads (or removes) our tables in the current network namespace,
// prints, and exits instead of running the proxy.
type opsOptions struct {
	dump        bool
	dumpFormat  string
	dumpService string
	trace       string
	tracePath   string
	cleanup     bool
	force       bool

	// masqueradeConfigured: --cluster-cidr or --masquerade-all was set (on
	// the command line or by --config), so --dump can compare the
	// masquerade policy too. Set by run.
	masqueradeConfigured bool
}

func newOpsOptions() *opsOptions {
	return &opsOptions{dumpFormat: "text", tracePath: "auto"}
}

func (o *opsOptions) addFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.dump, "dump", o.dump, "Print the Service ports programmed in this node's nftables (read from the kernel) and exit. With API access (--kubeconfig, --master or in-cluster), ports whose rules differ from what the API says are flagged.")
	fs.StringVar(&o.dumpFormat, "dump-format", o.dumpFormat, "Output of --dump: text (per Service port), json (docs/dump-schema.md) or nft (our tables in nft syntax, accepted by nft -f).")
	fs.StringVar(&o.dumpService, "dump-service", o.dumpService, "Limit --dump to one Service, given as namespace/name (text and json formats).")
	fs.StringVar(&o.trace, "trace", o.trace, "Explain from the live rules where a new connection would go, and exit: --trace SRC DST:PORT/PROTO (PROTO tcp, udp or sctp; IPv6 as [ADDR]:PORT/PROTO).")
	fs.StringVar(&o.tracePath, "trace-path", o.tracePath, "Path of the traced packet: forwarded (from a pod or another host), local (sent by the node itself), to-local (arriving for the node), or auto (local when SRC is an address of this host, else forwarded).")
	fs.BoolVar(&o.cleanup, "cleanup", o.cleanup, "Remove nftproxy's nftables tables (table ip nftproxy, table ip6 nftproxy) and exit 0; nothing else is touched. Refused while an nftproxy runs in this network namespace (it would recreate them), unless --force.")
	fs.BoolVar(&o.force, "force", o.force, "With --cleanup: delete the tables even while another nftproxy runs in this network namespace (it recreates them within a second).")
}

// active reports whether a one-shot command was asked for.
func (o *opsOptions) active() bool { return o.dump || o.trace != "" || o.cleanup }

// validate checks the combination of flags and positional arguments: only
// --trace takes one (DST:PORT/PROTO), unless its value holds both.
func (o *opsOptions) validate(cmd *cobra.Command, args []string) error {
	n := 0
	for _, on := range []bool{o.dump, o.trace != "", o.cleanup} {
		if on {
			n++
		}
	}
	if n > 1 {
		return errors.New("--dump, --trace and --cleanup are exclusive")
	}
	fs := cmd.Flags()
	if !o.dump && (fs.Changed("dump-format") || fs.Changed("dump-service")) {
		return errors.New("--dump-format and --dump-service need --dump")
	}
	if o.trace == "" && fs.Changed("trace-path") {
		return errors.New("--trace-path needs --trace")
	}
	if o.force && !o.cleanup {
		return errors.New("--force needs --cleanup")
	}
	switch o.dumpFormat {
	case "text", "json", "nft":
	default:
		return fmt.Errorf("--dump-format %q: want text, json or nft", o.dumpFormat)
	}
	if o.dumpService != "" {
		if ns, name, ok := strings.Cut(o.dumpService, "/"); !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return fmt.Errorf("--dump-service %q: want namespace/name", o.dumpService)
		}
		if o.dumpFormat == "nft" {
			return errors.New("--dump-service applies to the text and json formats, not nft")
		}
	}
	if o.trace != "" {
		if _, err := o.traceRequest(args); err != nil {
			return err
		}
		return nil
	}
	if len(args) > 0 {
		return fmt.Errorf("unexpected arguments %q", args)
	}
	return nil
}

// run executes the one-shot command asked for; fs are the command's flags,
// --config applied.
func (o *opsOptions) run(ctx context.Context, out io.Writer, opts *options, fs *pflag.FlagSet, args []string) error {
	o.masqueradeConfigured = fs.Changed("cluster-cidr") || fs.Changed("masquerade-all")
	switch {
	case o.cleanup:
		return runCleanup(out, opts.stateDir, o.force)
	case o.dump:
		return runDump(ctx, out, o, opts)
	case o.trace != "":
		req, err := o.traceRequest(args)
		if err != nil {
			return err
		}
		return runTrace(out, req)
	}
	return errors.New("no command")
}

// ourTables is what the one-shot commands read (or remove) our tables
// through: *nft.Reconciler, or in tests an nftfake.Fake.
type ourTables interface {
	ReadLive() (*nft.Ruleset, error)
	ReadLiveWithoutElements(sets ...string) (*nft.Ruleset, error)
	Cleanup() error
}

// openNftables returns what a one-shot command reads (or cleans) our
// tables with; its netlink sockets open at first use, and closeNftables
// closes them when the command ends.
func openNftables() *nft.Reconciler { return nftrules.NewReconciler(nft.Options{}) }

func closeNftables(rec *nft.Reconciler) {
	if err := rec.Close(); err != nil {
		klog.ErrorS(err, "Closing nftables connection")
	}
}
