package app

import (
	"context"
	"fmt"
	"net/http"
	"net/http/pprof"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"

	"github.com/nftproxy/nftproxy/informers"
	"github.com/nftproxy/nftproxy/proxier"
	"github.com/nftproxy/nftproxy/proxier/events"
	"github.com/nftproxy/nftproxy/proxier/healthz"
	"github.com/nftproxy/nftproxy/proxier/metrics"
)

// observers are what reports on the proxier: metrics, health, Events.
type observers struct {
	metrics     *metrics.Metrics
	health      *healthz.Server
	events      *events.Recorder
	broadcaster record.EventBroadcaster
}

// startObservers starts the metrics and health servers and the Event
// broadcaster; they stop when ctx ends (call stop to flush Events).
func startObservers(ctx context.Context, s *serveOptions, o *options, client kubernetes.Interface,
	tracker *informers.Tracker, inf *informers.Informers) (*observers, error) {
	m := metrics.New(tracker)
	// kube-proxy's health timeout: twice the sync period.
	hs, err := healthz.New(healthz.Config{
		Timeout: 2 * o.syncPeriod,
		Pending: func() time.Time { return tracker.Stats().Oldest },
		Node:    inf.Node,
		OnServe: m.HealthServed,
	})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	mux.HandleFunc("/proxyMode", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, "nftables")
	})
	if s.profiling {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	if err := serveHTTP(ctx, "metrics", s.metricsBindAddress, mux, s.bindAddressHardFail); err != nil {
		return nil, err
	}
	if err := serveHTTP(ctx, "healthz", s.healthzBindAddress, hs.Handler(), s.bindAddressHardFail); err != nil {
		return nil, err
	}
	b, rec := events.StartBroadcaster(ctx, client, o.nodeName)
	return &observers{metrics: m, health: hs, events: events.New(rec, o.nodeName, inf.Service, nil), broadcaster: b}, nil
}

// onSync feeds every observer; it is proxier.Config.OnSync.
func (ob *observers) onSync(info proxier.SyncInfo) {
	ob.metrics.ObserveSync(info)
	ob.health.SyncDone(info)
	ob.events.SyncDone(info)
}

// stop flushes pending Events.
func (ob *observers) stop() { ob.broadcaster.Shutdown() }
