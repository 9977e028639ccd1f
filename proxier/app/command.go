// Package app is the nftproxy command, as upstream's cmd/kube-proxy/app:
// the daemon's options (flags named as kube-proxy's, and --config), their
// validation, its run (informers -> proxier -> nftrules reconciler) and the
// HTTP servers and Event wiring that observe it.
//
// The one-shot admin commands (--dump, --trace, --cleanup: admin.go,
// dump.go, trace.go, cleanup.go) live here too, not in a package of their
// own: they are modes of the same command line, and read the daemon's
// resolved flags and --config (API access, --hostname-override,
// --cluster-cidr, --masquerade-all, --state-dir) to compare the kernel with
// what this node's proxy would program. What they call — reading,
// rendering and comparing our tables, tracing a packet — lives with the
// tables, in nftrules/dump and nftrules/trace. The kubectl plugin, a
// different program, is proxier/plugin.
package app

import (
	"github.com/nftproxy/nftproxy/proxier/conntrack"

	"flag"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"
)

// NewCommand returns the nftproxy command: the proxy, or one of the
// one-shot admin commands.
func NewCommand() *cobra.Command { return newCommandWith(newOptions(), newServeOptions()) }

// newCommandWith binds the flags to o and srv (tests read them back).
func newCommandWith(o *options, srv *serveOptions) *cobra.Command {
	ops := newOpsOptions()
	cmd := &cobra.Command{
		Use:          "nftproxy",
		Short:        "Kubernetes Service proxy programming nftables over netlink",
		Args:         ops.validate, // positional arguments only for --trace
		SilenceUsage: true,         // a runtime error is not a usage error
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.applyConfig(cmd.Flags()); err != nil { // --config first: flags override it
				return err
			}
			if err := srv.check(); err != nil {
				return err
			}
			if err := o.complete(); err != nil {
				return err
			}
			if o.setConntrackSysctls { // the init container: write and exit
				_, err := o.conntrack.Apply(conntrack.HostRoots())
				return err
			}
			if ops.active() { // --dump, --trace, --cleanup: print and exit
				return ops.run(cmd.Context(), cmd.OutOrStdout(), o, cmd.Flags(), args)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return run(ctx, o, srv)
		},
	}
	o.addFlags(cmd.Flags())
	ops.addFlags(cmd.Flags())
	srv.addFlags(cmd.Flags())
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	cmd.Flags().AddGoFlagSet(klogFlags)
	return cmd
}
