// Package healthz serves /healthz and /livez with kube-proxy's semantics:
// both fail (503) once a change has waited longer than the timeout (kube-
// proxy uses twice the sync period) without a successful sync; /healthz
// also fails while this node's Node is being deleted or is tainted
// ToBeDeletedByClusterAutoscaler, so that load balancers drain it.
package healthz

import (
	"fmt"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/nftproxy/nftproxy/proxier"
)

// ToBeDeletedTaint is the taint the cluster autoscaler puts on a node it is
// about to remove.
const ToBeDeletedTaint = "ToBeDeletedByClusterAutoscaler"

// Config of a Server.
type Config struct {
	// Timeout is how long a change may stay unprogrammed (or syncs keep
	// failing) before the proxy counts as unhealthy.
	Timeout time.Duration
	// Clock defaults to the real clock.
	Clock clock.PassiveClock
	// Pending, if set, returns when the oldest change not yet taken by a
	// sync was recorded (zero if none): informers.Tracker.Stats().Oldest.
	Pending func() time.Time
	// Node, if set, returns this node's Node (nil if unknown).
	Node func() (*v1.Node, error)
	// OnServe, if set, is called with the path and status of each answer
	// (metrics).
	OnServe func(path string, code int)
}

// Server tracks sync health. Feed it with Started and SyncDone; serve its
// Handler.
type Server struct {
	cfg   Config
	clock clock.PassiveClock

	mu          sync.Mutex
	started     bool
	lastUpdated time.Time
	// queued is when the first sync was requested (Started), until a sync
	// succeeds.
	queued time.Time
	// failingSince is the oldest change (or the start) of the syncs that
	// have failed since the last success.
	failingSince time.Time
}

// New returns a Server; cfg.Timeout must be positive.
func New(cfg Config) (*Server, error) {
	if cfg.Timeout <= 0 {
		return nil, fmt.Errorf("healthz: timeout %v must be positive", cfg.Timeout)
	}
	clk := cfg.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Server{cfg: cfg, clock: clk, lastUpdated: clk.Now()}, nil
}

// Started records that the proxier is about to program its first sync
// (the informers have synced). Until then the proxy counts as healthy, as
// kube-proxy does while it starts up.
func (s *Server) Started() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.started = true
	s.queued = s.clock.Now()
}

// SyncDone records one sync attempt (use it from proxier.Config.OnSync).
func (s *Server) SyncDone(info proxier.SyncInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if info.Err == nil {
		s.lastUpdated = info.Start.Add(info.Duration)
		s.queued, s.failingSince = time.Time{}, time.Time{}
		return
	}
	since := info.OldestChange
	if since.IsZero() {
		since = info.Start
	}
	s.failingSince = earliest(s.failingSince, since)
}

// status is the proxier's health and its last successful sync.
func (s *Server) status(now time.Time) (healthy bool, lastUpdated time.Time) {
	s.mu.Lock()
	started, pending, last := s.started, earliest(s.queued, s.failingSince), s.lastUpdated
	s.mu.Unlock()
	if !started {
		return true, last
	}
	if s.cfg.Pending != nil {
		pending = earliest(pending, s.cfg.Pending())
	}
	return pending.IsZero() || now.Sub(pending) < s.cfg.Timeout, last
}

// Healthy reports the proxier's health as /livez does (ignoring the Node).
func (s *Server) Healthy() bool {
	h, _ := s.status(s.clock.Now())
	return h
}

// nodeEligible is false while the Node is being deleted or tainted for
// deletion by the cluster autoscaler. An unknown Node is eligible.
func (s *Server) nodeEligible() bool {
	if s.cfg.Node == nil {
		return true
	}
	n, err := s.cfg.Node()
	if err != nil {
		klog.V(2).InfoS("Cannot read Node for health check; assuming it is eligible", "err", err)
		return true
	}
	if n == nil {
		return true
	}
	if n.DeletionTimestamp != nil {
		return false
	}
	for _, t := range n.Spec.Taints {
		if t.Key == ToBeDeletedTaint {
			return false
		}
	}
	return true
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}
