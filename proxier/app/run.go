package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/nftproxy/nftproxy/informers"
	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/instance"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/proxier"
	"github.com/nftproxy/nftproxy/proxier/conntrack"
	"github.com/nftproxy/nftproxy/proxier/healthcheck"
	"github.com/nftproxy/nftproxy/proxier/localnet"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// run wires informers -> change tracker -> proxier -> nftrules reconciler
// and blocks until ctx ends. Rules are left in place on exit, so that
// traffic keeps flowing while the proxy restarts or is upgraded.
func run(ctx context.Context, o *options, srv *serveOptions) error {
	start := newStartup()
	start.mark("configured")
	klog.InfoS("Starting nftproxy", "node", o.nodeName, "clusterCIDRs", o.podRanges,
		"masqueradeAll", o.masqueradeAll, "minSyncPeriod", minSyncLog(o.minSyncPeriod), "syncPeriod", o.syncPeriod)
	cfg, err := restConfig(o.kubeconfig, o.master)
	if err != nil {
		return err
	}
	shortDial(cfg)
	client, pages, err := newClients(cfg, "nftproxy")
	if err != nil {
		return err
	}
	start.mark("client")
	// The initial lists start first: at 10,000 Services they are most of
	// the time to the first sync, and nothing below needs them before it.
	tracker := informers.NewTracker(clock.RealClock{})
	inf, err := informers.New(client, informers.Config{NodeName: o.nodeName, ServiceProxyName: o.serviceProxyName, Pages: pages}, tracker)
	if err != nil {
		return err
	}
	start.inf = inf
	infCtx, stopInformers := context.WithCancel(ctx)
	inf.Start(infCtx)
	// Shutdown waits for the informers, which stop once infCtx is done.
	defer inf.Shutdown()
	defer stopInformers()
	start.mark("informersStarted")

	// One instance per network namespace owns our tables; another one
	// (a rolling update overlapping, a manual run next to the DaemonSet)
	// waits here, before it binds any port or touches the kernel; its
	// informers list meanwhile, so that it programs at once when the
	// other exits.
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
	start.mark("locked")

	ob, err := startObservers(ctx, srv, o, client, tracker, inf) // metrics, healthz, Events
	if err != nil {
		return err
	}
	defer ob.stop()
	rec := nftrules.NewReconciler(nft.Options{})
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
	gcPacing := gcDefaultAfterFirstSync(os.Getenv)
	onSync := func(info proxier.SyncInfo) { ob.onSync(info); start.synced(info); gcPacing(info) }
	if afterSync := localnet.Setup(o.nodePorts, o.stateDir); afterSync != nil {
		onSync = func(info proxier.SyncInfo) { ob.onSync(info); afterSync(info); start.synced(info); gcPacing(info) }
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
		MinSyncPeriod:     o.minSyncPeriod.value,
		AdaptiveSync:      !o.minSyncPeriod.set,
		SyncPeriod:        o.syncPeriod,
		OnSync:            onSync,
		OnCheck:           ob.metrics.ObserveCheck,
		OnReject:          ob.events.Reject,
		Watcher:           rec, // repair what other processes change in our tables
		ConntrackSysctls:  &o.conntrack,

		DenyExternalIPsOnNodeAddresses: o.denyNodeAddressExternalIPs,
	}, inf, tracker, rec)
	if err != nil {
		return err
	}

	if err := inf.WaitForSync(ctx); err != nil {
		if ctx.Err() != nil {
			klog.InfoS("Stopped before the informers synced")
			return nil
		}
		return err
	}
	start.mark("cachesSynced")
	klog.InfoS("Informers synced, programming rules")
	ob.health.Started()
	if err := p.Run(ctx); err != nil {
		return err
	}
	klog.InfoS("Shutting down; rules are left in place")
	return nil
}

// minSyncLog names the sync pacing for the start-up log line.
func minSyncLog(d optionalDuration) string {
	if !d.set {
		return "adaptive"
	}
	return d.value.String()
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
// newClients makes the API client and the one the informers read their
// initial lists' continuation pages through (informers.Config.Pages):
// the same but for client-go's QPS limit.
func newClients(cfg *rest.Config, agent string) (client, pages kubernetes.Interface, err error) {
	cfg = rest.AddUserAgent(cfg, agent)
	if client, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, nil, fmt.Errorf("creating Kubernetes client: %w", err)
	}
	unlimited := rest.CopyConfig(cfg)
	unlimited.QPS, unlimited.RateLimiter = -1, nil // client-go: a negative QPS sets no limiter
	if pages, err = kubernetes.NewForConfig(unlimited); err != nil {
		return nil, nil, fmt.Errorf("creating Kubernetes client for list pages: %w", err)
	}
	return client, pages, nil
}

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

// ipv6Available reports whether this node's kernel has IPv6. Without it
// nftproxy programs only the IPv4 table (an ip6 table could not work, and
// asking for it would fail every sync).
func ipv6Available() bool {
	if _, err := os.Stat("/proc/net/if_inet6"); err != nil {
		klog.InfoS("IPv6 is not available on this node; only IPv4 Service addresses are programmed", "reason", err)
		return false
	}
	return true
}
