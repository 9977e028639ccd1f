// Package proxier turns watched Services, EndpointSlices and the Node into
// the desired model.State of this node and keeps the kernel in line with it
// through an nftrules reconciler, paced by a bounded-frequency runner.
package proxier

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/nftproxy/nftproxy/informers"
	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/proxier/claims"
	"github.com/nftproxy/nftproxy/proxier/conntrack"
	"github.com/nftproxy/nftproxy/proxier/healthcheck"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// Source serves the watched objects; *informers.Informers implements it.
type Source interface {
	// Service returns a Service, or nil if it does not exist.
	Service(types.NamespacedName) (*v1.Service, error)
	// ServiceKeys lists the keys of all Services.
	ServiceKeys() []types.NamespacedName
	// EndpointSlices returns all slices of a Service.
	EndpointSlices(types.NamespacedName) ([]*discovery.EndpointSlice, error)
	// Node returns this node's Node, or nil if it does not exist.
	Node() (*v1.Node, error)
}

// Reconciler applies a ruleset; *nft.Reconciler implements it.
type Reconciler interface {
	Sync(ctx context.Context, desired *nft.Ruleset, full bool) (nft.SyncResult, error)
}

// verifier is implemented by *nftrules.Reconciler: a Reconciler with it
// gets its periodic full syncs as checks beside the partial syncs
// (runner.verify).
type verifier interface {
	Verify(ctx context.Context) (nft.VerifyResult, error)
}

// Config of a Proxier.
type Config struct {
	NodeName      string
	ClusterCIDRs  []netip.Prefix
	MasqueradeAll bool
	// NoIPv6: the node's kernel has no IPv6; only IPv4 is programmed.
	NoIPv6 bool
	// MinSyncPeriod is the least time between two syncs, with a burst of
	// two as kube-proxy's (0: no limit). Unused with AdaptiveSync.
	MinSyncPeriod time.Duration
	// AdaptiveSync paces syncs by their measured cost instead: changes are
	// programmed at once while syncs take less than a fifth of the time,
	// and never wait more than a second (see costFactor). The default
	// when the user sets no min sync period.
	AdaptiveSync bool
	// SyncPeriod is the interval of full syncs, which re-read the kernel
	// and repair drift (with a Reconciler that can Verify, of checks
	// beside the partial syncs, a full sync only when one finds a
	// difference), and the cap of the retry backoff.
	SyncPeriod time.Duration

	// Clock defaults to the real clock.
	Clock clock.Clock
	// OnSync, if set, is called after every attempted sync (metrics).
	OnSync func(SyncInfo)
	// OnCheck, if set, is called after every check of the kernel (see
	// SyncPeriod) with its outcome, or its error (metrics).
	OnCheck func(nft.VerifyResult, error)
	// OnReject, if set, is called for each piece of input that was left
	// out (Events). It runs on the sync goroutine and must not block.
	OnReject func(model.Rejection)
	// Conntrack, if set, is handed the UDP index after syncs that changed
	// UDP service ports, and the State after repairs, and deletes stale
	// conntrack entries in the background.
	Conntrack ConntrackCleaner
	// NodePortAddresses selects the addresses NodePorts are served on
	// (--nodeport-addresses); the zero value serves no NodePort.
	NodePortAddresses NodePortAddresses
	// LocalAddrs lists the node's interface addresses, consulted when
	// NodePortAddresses has CIDRs (default InterfaceAddrs).
	LocalAddrs func() ([]netip.Addr, error)
	// HealthChecks, if set, is told after every sync which health check
	// node ports to serve, on which addresses (the NodePort addresses, as
	// upstream) and how many ready local endpoints each has;
	// *healthcheck.Server implements it.
	HealthChecks HealthCheckSyncer
	// DenyExternalIPsOnNodeAddresses drops externalIPs and load-balancer
	// IPs equal to one of the node's addresses, on every port
	// (--deny-external-ips-on-node-addresses; see package claims).
	DenyExternalIPsOnNodeAddresses bool
	// Watcher, if set, reports changes other processes make to our
	// tables; each is repaired by a full sync, at once unless repairs
	// keep coming (see repairLimiter). Without it such changes wait for
	// the next periodic full sync.
	Watcher ForeignWatcher
	// ConntrackSysctls, if set, are written by New (kube-proxy does so
	// before creating its proxier) in the calling thread's network
	// namespace, i.e. the node's. A failure is logged, not fatal: the
	// rules work with the kernel's values, and a container without a
	// writable /proc/sys relies on the init container that wrote them
	// (manifests/daemonset.yaml); values already right are not written.
	ConntrackSysctls *conntrack.Sysctls
}

// HealthCheckSyncer serves health check node ports on the NodePort
// addresses.
type HealthCheckSyncer interface {
	Sync(addrs []netip.Addr, services []healthcheck.Service)
}

// SyncInfo describes one sync attempt.
type SyncInfo struct {
	// State is what was programmed. Shared and immutable: do not modify.
	State  *model.State
	Full   bool
	Result nft.SyncResult
	Err    error
	Start  time.Time
	// Duration covers conversion, Build and the kernel transaction;
	// Build is Build's part (Result.Timing has the reconciler's).
	Duration, Build time.Duration
	// OldestChange is when the oldest change this sync programs was seen
	// (zero when the sync programs no change, e.g. a periodic full sync).
	OldestChange time.Time
	// Converted counts the Services converted for this sync.
	Converted int
	// EndpointsOverLimit counts the usable endpoints not programmed
	// because their service port has more than nftrules.MaxEndpoints in a
	// family (each such service port is also reported as a Rejection).
	EndpointsOverLimit int
	// ForeignChanges counts the transactions of other processes that
	// changed our tables and that this (full) sync repairs; ForeignSince
	// is when the first of them was seen.
	ForeignChanges int
	ForeignSince   time.Time
}

func (c *Config) validate() error {
	var errs []error
	if c.NodeName == "" {
		errs = append(errs, errors.New("node name is required"))
	}
	if c.MinSyncPeriod < 0 {
		errs = append(errs, fmt.Errorf("min sync period %v is negative", c.MinSyncPeriod))
	}
	if c.SyncPeriod <= 0 {
		errs = append(errs, fmt.Errorf("sync period %v must be positive", c.SyncPeriod))
	}
	if c.SyncPeriod > 0 && c.MinSyncPeriod > c.SyncPeriod {
		errs = append(errs, fmt.Errorf("min sync period %v exceeds sync period %v", c.MinSyncPeriod, c.SyncPeriod))
	}
	for _, p := range c.ClusterCIDRs {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("invalid cluster CIDR %v", p))
		}
	}
	return errors.Join(errs...)
}

// Proxier owns this node's desired state. All its state is confined to the
// goroutine of Run.
type Proxier struct {
	cfg     Config
	clock   clock.Clock
	src     Source
	changes *informers.Tracker
	rec     Reconciler

	ids *idAllocator
	// builder turns States into rulesets, rebuilding only the service
	// ports whose values changed since the last State.
	builder *nftrules.Builder
	// services caches the converted ports of each Service, IDs assigned,
	// so that a change reconverts only the Services it touches.
	services map[types.NamespacedName][]*model.ServicePort
	// flat is State.List, patched or rebuilt only when services
	// changed; a patch makes a new list, so each State keeps its own.
	flat      *model.PortList
	flatStale bool
	// claims decides which service port keeps an address or NodePort
	// that several claim, and holds the ports to program instead of the
	// losers (see package claims).
	claims *claims.Resolver
	// changedKeys are the Services changed since flat was made.
	changedKeys map[types.NamespacedName]bool
	// stateGen is the Gen of the last State made, and stateNode that
	// State without its service ports (model.Delta).
	stateGen  uint64
	stateNode model.State
	// hcPorts are the service ports with a health check node port per
	// Service, as of the State with Gen hcSeen (syncHealthChecks).
	hcPorts map[types.NamespacedName][]*model.ServicePort
	hcSeen  uint64

	nodeZone string
	nodeIPs  []netip.Addr
	// nodeSeen: the Node has been read at least once (refreshNode).
	nodeSeen bool
	// nodePortIPs are the NodePort addresses (refreshNodePortIPs).
	nodePortIPs []netip.Addr

	// dirty: the desired state differs from the last one programmed.
	dirty bool
	// needFull: the kernel's state is unknown (e.g. after a failed sync).
	needFull bool
	// pendingSince is the oldest change not yet programmed.
	pendingSince time.Time
	// udp is what the last conntrack cleanup saw.
	udp udpState
	// retry holds Services whose lookup failed, to be converted next time.
	retry map[types.NamespacedName]struct{}
	// onIdle, if set (tests), is called whenever the sync loop is about to
	// block: everything it was woken for has been decided by then.
	onIdle func()
	// overLimit holds what was reported for each service port with more
	// endpoints than fit (checkEndpointLimits), to report changes only.
	overLimit map[model.ServicePortName]overLimit
	// limitsChecked is the Gen of the State checkEndpointLimits saw last.
	limitsChecked uint64
	// foreign are the changes of other processes not yet repaired.
	foreign foreignChanges
}

// New returns a Proxier reading objects from src, changes from changes, and
// programming through rec.
func New(cfg Config, src Source, changes *informers.Tracker, rec Reconciler) (*Proxier, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("proxier config: %w", err)
	}
	if src == nil || changes == nil || rec == nil {
		return nil, errors.New("proxier: source, change tracker and reconciler are required")
	}
	if cfg.ConntrackSysctls != nil {
		if _, err := cfg.ConntrackSysctls.Apply(conntrack.HostRoots()); err != nil {
			klog.ErrorS(err, "Could not set the conntrack parameters (--conntrack-*); running with the kernel's values. "+
				"In a container /proc/sys is read-only: run nftproxy --set-conntrack-sysctls in a privileged init container (see manifests/daemonset.yaml)")
		}
	}
	clk := cfg.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Proxier{
		cfg:      cfg,
		clock:    clk,
		src:      src,
		changes:  changes,
		rec:      rec,
		ids:      newIDAllocator(nftrules.MaxServicePortID),
		builder:  nftrules.NewBuilder(),
		services: map[types.NamespacedName][]*model.ServicePort{},
		claims:   claims.New(claims.Options{DenyNodeAddresses: cfg.DenyExternalIPsOnNodeAddresses}),
		retry:    map[types.NamespacedName]struct{}{},
		needFull: true,
	}, nil
}

// Run programs the rules until ctx ends. Call it only after the informers
// have synced: a partial view of the cluster would delete live rules.
func (p *Proxier) Run(ctx context.Context) error {
	p.loadAll()
	r := &runner{
		clock:        p.clock,
		minInterval:  p.cfg.MinSyncPeriod,
		adaptive:     p.cfg.AdaptiveSync,
		fullInterval: p.cfg.SyncPeriod,
		wake:         p.changes.Wake(),
		repair:       p.watchForeign(ctx), // before the first sync reads the kernel
		fn:           p.sync,
	}
	if v, ok := p.rec.(verifier); ok {
		r.verify = v.Verify
		r.checked = p.cfg.OnCheck
	}
	if p.onIdle != nil {
		r.idle = func(time.Time) { p.onIdle() }
	}
	r.run(ctx)
	return nil
}
