// Package metrics exposes nftproxy's Prometheus metrics: kube-proxy's names
// and types where the meaning is the same (so existing dashboards and alerts
// keep working), plus nftproxy's own under the nftproxy_ prefix.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/nftproxy/nftproxy/informers"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/proxier"
)

// ChangeSource reports recorded API changes; *informers.Tracker is one.
type ChangeSource interface {
	Stats() informers.Stats
	Pending() (services, endpoints int)
}

// Metrics holds the collectors. Its methods are safe for concurrent use.
type Metrics struct {
	reg   *prometheus.Registry
	local localCounts

	syncDuration        prometheus.Histogram
	fullSyncDuration    prometheus.Histogram
	partialSyncDuration prometheus.Histogram
	networkProgramming  prometheus.Histogram
	lastSync            prometheus.Gauge
	syncFailures        prometheus.Counter
	noLocalEndpoints    *prometheus.GaugeVec
	healthz, livez      *prometheus.CounterVec

	objects, messages prometheus.Histogram
	servicePorts      prometheus.Gauge
	conntrackDeleted  prometheus.Counter
	overLimit         prometheus.Gauge

	repairs, foreignChanges prometheus.Counter
	repairDelay             prometheus.Histogram
	checks                  *prometheus.CounterVec
	checkLockHold           prometheus.Histogram
}

// syncBuckets are kube-proxy's buckets for sync durations (1 ms to 16 s).
var syncBuckets = prometheus.ExponentialBuckets(0.001, 2, 15)

// New registers every metric in a new registry (with the Go and process
// collectors). changes feeds the change counters and gauges; it may be nil
// in tests that do not need them.
func New(changes ChangeSource) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		syncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kubeproxy_sync_proxy_rules_duration_seconds",
			Help:    "Duration of every sync attempt (full or partial), in seconds: conversion, rule building and the kernel transaction.",
			Buckets: syncBuckets,
		}),
		fullSyncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kubeproxy_sync_full_proxy_rules_duration_seconds",
			Help:    "Duration of full sync attempts (which re-read the kernel and repair drift), in seconds.",
			Buckets: syncBuckets,
		}),
		partialSyncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kubeproxy_sync_partial_proxy_rules_duration_seconds",
			Help:    "Duration of partial (incremental) sync attempts, in seconds.",
			Buckets: syncBuckets,
		}),
		networkProgramming: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "kubeproxy_network_programming_duration_seconds",
			Help: "Time from the oldest change seen by nftproxy's informers to the successful sync that programmed it, in seconds. " +
				"Unlike kube-proxy, it starts when the change reaches this proxy, not at the EndpointSlice trigger time.",
			Buckets: networkProgrammingBuckets(),
		}),
		lastSync: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
			Help: "The last time a sync succeeded (Unix seconds).",
		}),
		syncFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubeproxy_sync_proxy_rules_nftables_sync_failures_total",
			Help: "Failed nftables transactions (full and partial syncs; kube-proxy counts partial ones only).",
		}),
		noLocalEndpoints: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kubeproxy_sync_proxy_rules_no_local_endpoints_total",
			Help: "Service ports with a Local traffic policy and no usable local endpoint, by traffic_policy (internal, external), at the last sync.",
		}, []string{"traffic_policy"}),
		healthz: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubeproxy_proxy_healthz_total",
			Help: "Answers of /healthz by HTTP status code.",
		}, []string{"code"}),
		livez: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubeproxy_proxy_livez_total",
			Help: "Answers of /livez by HTTP status code.",
		}, []string{"code"}),
		objects: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "nftproxy_sync_transaction_objects",
			Help:    "Kernel objects (tables, chains, rules, sets, elements) touched per sync transaction; 0 when the kernel already matched.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 10),
		}),
		messages: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "nftproxy_sync_transaction_netlink_messages",
			Help:    "Netlink messages per sync transaction (one batch per sync).",
			Buckets: prometheus.ExponentialBuckets(1, 4, 10),
		}),
		servicePorts: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nftproxy_service_ports",
			Help: "Service ports in the desired state of the last sync.",
		}),
		conntrackDeleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nftproxy_conntrack_entries_deleted_total",
			Help: "Stale UDP conntrack entries deleted after syncs (flows whose backend is no longer an endpoint the rules send to).",
		}),
		overLimit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nftproxy_endpoints_over_limit",
			Help: "Usable endpoints not programmed at the last sync because their service port has more than 16384 in one family (each such Service gets a TooManyEndpoints Event).",
		}),
		repairs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nftproxy_repairs_total",
			Help: "Successful full syncs that repaired changes other processes made to nftproxy's tables.",
		}),
		foreignChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nftproxy_foreign_changes_total",
			Help: "nftables transactions of other processes that changed nftproxy's tables, counted when repaired.",
		}),
		repairDelay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "nftproxy_repair_delay_seconds",
			Help:    "Time from the first unrepaired change another process made to nftproxy's tables to the end of the sync that repaired it, in seconds.",
			Buckets: syncBuckets,
		}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nftproxy_kernel_checks_total",
			Help: "Periodic checks of nftproxy's tables in the kernel against the rules applied, by result: same, differs (a full sync repairs it), unchecked (a part changed by nftproxy's own syncs too much to be compared; checked again soon) or error.",
		}, []string{"result"}),
		checkLockHold: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "nftproxy_kernel_check_lock_hold_seconds",
			Help:    "Longest time a periodic check held syncs back while it re-read objects that nftproxy's syncs changed during its reads, per check that did, in seconds.",
			Buckets: syncBuckets,
		}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.syncDuration, m.fullSyncDuration, m.partialSyncDuration, m.networkProgramming,
		m.lastSync, m.syncFailures, m.noLocalEndpoints, m.healthz, m.livez,
		m.objects, m.messages, m.servicePorts, m.conntrackDeleted, m.overLimit,
		m.repairs, m.foreignChanges, m.repairDelay, m.checks, m.checkLockHold,
	)
	// Both label values exist from the start, as in kube-proxy.
	m.noLocalEndpoints.WithLabelValues("internal")
	m.noLocalEndpoints.WithLabelValues("external")
	for _, r := range []string{"same", "differs", "unchecked", "error"} {
		m.checks.WithLabelValues(r)
	}
	if changes != nil {
		m.reg.MustRegister(changeCollectors(changes)...)
	}
	return m
}

// networkProgrammingBuckets are kube-proxy's: 0.25 s steps up to 0.5 s,
// then 1 s steps to 59 s, 5 s steps to 115 s and 30 s steps to 5 min.
func networkProgrammingBuckets() []float64 {
	b := prometheus.LinearBuckets(0.25, 0.25, 2)
	b = append(b, prometheus.LinearBuckets(1, 1, 59)...)
	b = append(b, prometheus.LinearBuckets(60, 5, 12)...)
	return append(b, prometheus.LinearBuckets(120, 30, 7)...)
}

func changeCollectors(c ChangeSource) []prometheus.Collector {
	stat := func(f func(informers.Stats) float64) func() float64 {
		return func() float64 { return f(c.Stats()) }
	}
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
			Help: "The last time a change was queued for a sync (Unix seconds; 0 before the first).",
		}, stat(func(s informers.Stats) float64 { return unixSeconds(s.LastChange) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "kubeproxy_sync_proxy_rules_service_changes_total",
			Help: "Service changes recorded.",
		}, stat(func(s informers.Stats) float64 { return float64(s.ServiceChanges) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "kubeproxy_sync_proxy_rules_endpoint_changes_total",
			Help: "EndpointSlice changes recorded.",
		}, stat(func(s informers.Stats) float64 { return float64(s.EndpointChanges) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "kubeproxy_sync_proxy_rules_service_changes_pending",
			Help: "Services with changes not yet taken by a sync.",
		}, func() float64 { s, _ := c.Pending(); return float64(s) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "kubeproxy_sync_proxy_rules_endpoint_changes_pending",
			Help: "Services with EndpointSlice changes not yet taken by a sync.",
		}, func() float64 { _, e := c.Pending(); return float64(e) }),
	}
}

func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

// ObserveCheck records one check of the kernel; use it as
// proxier.Config.OnCheck.
func (m *Metrics) ObserveCheck(res nft.VerifyResult, err error) {
	if err != nil {
		m.checks.WithLabelValues("error").Inc()
		return
	}
	m.checks.WithLabelValues(res.Outcome.String()).Inc()
	if res.Confirmed > 0 {
		m.checkLockHold.Observe(res.Held.Seconds())
	}
}

// ObserveSync records one sync attempt; use it as (or from)
// proxier.Config.OnSync.
func (m *Metrics) ObserveSync(info proxier.SyncInfo) {
	d := info.Duration.Seconds()
	m.syncDuration.Observe(d)
	if info.Full {
		m.fullSyncDuration.Observe(d)
	} else {
		m.partialSyncDuration.Observe(d)
	}
	if info.Err != nil {
		m.syncFailures.Inc()
		return
	}
	end := info.Start.Add(info.Duration)
	m.lastSync.Set(unixSeconds(end))
	if !info.OldestChange.IsZero() {
		m.networkProgramming.Observe(end.Sub(info.OldestChange).Seconds())
	}
	if info.ForeignChanges > 0 {
		m.repairs.Inc()
		m.foreignChanges.Add(float64(info.ForeignChanges))
		m.repairDelay.Observe(end.Sub(info.ForeignSince).Seconds())
	}
	m.objects.Observe(float64(info.Result.Objects))
	m.messages.Observe(float64(info.Result.Messages))
	if info.State != nil {
		m.servicePorts.Set(float64(info.State.Len()))
		m.overLimit.Set(float64(info.EndpointsOverLimit))
		internal, external := m.local.update(info.State)
		m.noLocalEndpoints.WithLabelValues("internal").Set(float64(internal))
		m.noLocalEndpoints.WithLabelValues("external").Set(float64(external))
	}
}

// ConntrackDeleted counts deleted conntrack entries (the conntrack
// cleaner reports each run, from its own goroutine).
func (m *Metrics) ConntrackDeleted(n int) {
	if n > 0 {
		m.conntrackDeleted.Add(float64(n))
	}
}

// HealthServed counts an answer of the health server; path is "/healthz"
// or "/livez".
func (m *Metrics) HealthServed(path string, code int) {
	c := strconv.Itoa(code)
	switch path {
	case "/healthz":
		m.healthz.WithLabelValues(c).Inc()
	case "/livez":
		m.livez.WithLabelValues(c).Inc()
	}
}

// Registry returns the registry holding every metric.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves /metrics in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}
