// Command nftproxy is a kube-proxy replacement that programs nftables
// directly over netlink. It runs on every node (a DaemonSet).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/nftproxy/nftproxy/informers"
	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/instance"
	"github.com/nftproxy/nftproxy/proxier"
	"github.com/nftproxy/nftproxy/proxier/conntrack"
	"github.com/nftproxy/nftproxy/proxier/healthcheck"
	"github.com/nftproxy/nftproxy/proxier/model"
)

func main() {
	cmd := newCommand()
	if isPlugin(os.Args[0]) { // installed as kubectl-nftproxy: kubectl nftproxy ...
		cmd = newPluginCommand()
	}
	err := cmd.Execute()
	klog.Flush()
	if err != nil {
		os.Exit(1)
	}
}

func newCommand() *cobra.Command { return newCommandWith(newOptions(), newServeOptions()) }

// newCommandWith binds the flags to o and srv (tests read them back).
func newCommandWith(o *options, srv *serveOptions) *cobra.Command {
	ops := newOpsOptions()
	cmd := &cobra.Command{
		Use:          "nftproxy",
		Short:        "Kubernetes Service proxy programming nftables over netlink",
		Args:         ops.validate, // positional arguments only for --trace
		SilenceUsage: true,         // a runtime error is not a usage error
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := srv.resolve(cmd.Flags()); err != nil { // --config first: flags override it
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
				return ops.run(cmd.Context(), cmd.OutOrStdout(), o, args)
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

// run wires informers -> change tracker -> proxier -> nftrules reconciler
// and blocks until ctx ends. Rules are left in place on exit, so that
// traffic keeps flowing while the proxy restarts or is upgraded.
func run(ctx context.Context, o *options, srv *serveOptions) error {
	klog.InfoS("Starting nftproxy", "node", o.nodeName, "clusterCIDRs", o.podRanges,
		"masqueradeAll", o.masqueradeAll, "minSyncPeriod", o.minSyncPeriod, "syncPeriod", o.syncPeriod)
	cfg, err := restConfig(o.kubeconfig, o.master)
	if err != nil {
		return err
	}
	shortDial(cfg)
	client, err := kubernetes.NewForConfig(rest.AddUserAgent(cfg, "nftproxy"))
	if err != nil {
		return fmt.Errorf("creating Kubernetes client: %w", err)
	}
	// One instance per network namespace owns our tables; another one
	// (a rolling update overlapping, a manual run next to the DaemonSet)
	// waits here, before it binds any port or touches the kernel.
	lock, err := instance.Acquire(ctx, instance.RoleProxy, o.nodeName, lockLogEvery, func(h instance.Holder) {
		klog.InfoS("Waiting: another instance owns this network namespace's nftables tables; taking over when it exits",
			"holder", h.String(), "lock", instance.Name)
	})
	if err != nil {
		if ctx.Err() != nil {
			klog.InfoS("Stopped while waiting for the other instance to exit")
			return nil
		}
		return err
	}
	defer lock.Release()
	klog.InfoS("This instance owns the nftables tables", "lock", instance.Name)

	tracker := informers.NewTracker(clock.RealClock{})
	inf, err := informers.New(client, informers.Config{NodeName: o.nodeName, ServiceProxyName: o.serviceProxyName}, tracker)
	if err != nil {
		return err
	}
	ob, err := startObservers(ctx, srv, o, client, tracker, inf) // metrics, healthz, Events
	if err != nil {
		return err
	}
	defer ob.stop()
	rec, err := nftrules.NewReconciler(nftrules.Options{})
	if err != nil {
		return fmt.Errorf("opening nftables: %w", err)
	}
	defer func() {
		if err := rec.Close(); err != nil {
			klog.ErrorS(err, "Closing nftables connection")
		}
	}()
	cleaner, err := conntrack.NewCleaner(0, conntrack.Options{
		OnResult: func(r conntrack.Result) { ob.metrics.ConntrackDeleted(r.Deleted) },
	})
	if err != nil {
		return err
	}
	defer cleaner.Close()
	onSync := ob.onSync
	if o.nodePorts.NeedsRouteLocalnet() {
		// Set once the guard rule is in the kernel (localnet.go).
		rl := newRouteLocalnet(o.stateDir)
		onSync = func(info proxier.SyncInfo) { ob.onSync(info); rl.afterSync(info) }
	} else if _, err := restoreRouteLocalnet(io.Discard, o.stateDir); err != nil {
		klog.ErrorS(err, "Localhost NodePorts are off but route_localnet, set by an earlier run, could not be restored")
	}
	hcs := healthcheck.New(healthcheck.Options{
		Healthy: ob.health.Healthy,
		OnListenError: func(svc types.NamespacedName, port uint16, err error) {
			ob.events.Reject(model.Rejection{Kind: "Service", Namespace: svc.Namespace, Name: svc.Name, Invalid: true,
				Reason: "HealthCheckNodePortUnavailable", Message: fmt.Sprintf("cannot serve healthCheckNodePort %d: %v", port, err)})
		},
	})
	defer hcs.Close()
	p, err := proxier.New(proxier.Config{
		NodePortAddresses: o.nodePorts,
		HealthChecks:      hcs,
		Conntrack:         cleaner,
		NodeName:          o.nodeName,
		ClusterCIDRs:      o.podRanges,
		MasqueradeAll:     o.masqueradeAll,
		NoIPv6:            !ipv6Available(),
		MinSyncPeriod:     o.minSyncPeriod,
		SyncPeriod:        o.syncPeriod,
		OnSync:            onSync,
		OnReject:          ob.events.Reject,
		Watcher:           rec, // repair what other processes change in our tables
		ConntrackSysctls:  &o.conntrack,

		DenyExternalIPsOnNodeAddresses: o.denyNodeAddressExternalIPs,
	}, inf, tracker, rec)
	if err != nil {
		return err
	}

	inf.Start(ctx)
	// Shutdown waits for the informers, which stop once ctx is done.
	defer inf.Shutdown()
	if err := inf.WaitForSync(ctx); err != nil {
		if ctx.Err() != nil {
			klog.InfoS("Stopped before the informers synced")
			return nil
		}
		return err
	}
	klog.InfoS("Informers synced, programming rules")
	ob.health.Started()
	if err := p.Run(ctx); err != nil {
		return err
	}
	klog.InfoS("Shutting down; rules are left in place")
	return nil
}

// lockLogEvery is how often a waiting instance says again who it waits for.
const lockLogEvery = 30 * time.Second

// apiDialTimeout bounds one connection attempt to the apiserver. client-go
// waits 30 s; in a silent partition a pending attempt sends its next SYN
// up to 16 s after the partition ends, while a new attempt (the informers
// retry at once, see informers/retry.go) sends one at once.
const apiDialTimeout = 5 * time.Second

// shortDial makes cfg dial with apiDialTimeout (unless it has a dialer).
func shortDial(cfg *rest.Config) {
	if cfg.Dial == nil {
		cfg.Dial = (&net.Dialer{Timeout: apiDialTimeout, KeepAlive: 30 * time.Second}).DialContext
	}
}

// restConfig builds the API client configuration: from --kubeconfig and/or
// --master when given, else the in-cluster service account.
func restConfig(kubeconfig, master string) (*rest.Config, error) {
	if kubeconfig == "" && master == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			if errors.Is(err, rest.ErrNotInCluster) {
				return nil, fmt.Errorf("not running in a cluster: set --kubeconfig or --master: %w", err)
			}
			return nil, fmt.Errorf("in-cluster configuration: %w", err)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags(master, kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig %q (master %q): %w", kubeconfig, master, err)
	}
	return cfg, nil
}
