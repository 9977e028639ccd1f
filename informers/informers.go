package informers

import (
	"context"
	"errors"
	"fmt"
	"sync"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// Config selects what to watch.
type Config struct {
	// NodeName is this node; only its Node object is watched.
	NodeName string
	// ServiceProxyName, when set, watches only objects labelled
	// service.kubernetes.io/service-proxy-name=ServiceProxyName instead of
	// objects with no such label (see LabelSelector).
	ServiceProxyName string
	// Pages, when set, is the client the initial lists' continuation
	// pages are read through (New's client reads their first pages and
	// everything else). The lists are read in pages so that few untrimmed
	// objects are alive at once (resume.go); the pages of one list are
	// one read of the apiserver's snapshot, which kube-proxy makes as one
	// request, so the app gives them a client its QPS limit does not
	// throttle: at the default 5/s, the ~40 pages of 500 at 10,000
	// Services took 4 s.
	Pages kubernetes.Interface
}

// Informers owns the informers and serves lookups from their caches.
type Informers struct {
	nodeName string
	// informers run from Start until its context ends; wg waits for them.
	informers []cache.SharedIndexInformer
	wg        sync.WaitGroup

	services cache.Indexer
	slices   *sliceIndex
	nodes    corelisters.NodeLister
	// synced is done for each informer (named by whats) once its handler
	// has seen the initial list; times records when (synced.go), and
	// recorded is closed once it has.
	synced   []cache.DoneChecker
	whats    []string
	recorded []chan struct{}
	times    syncTimes
}

// New creates the informers and registers handlers that record changes in
// t. Nothing runs before Start.
//
// Their list and watch calls wait out an unreachable apiserver themselves
// and their watches survive a lost connection and an expired
// resourceVersion (see retry.go, resume.go): client-go's reflector would
// back off for up to a minute and see the apiserver's return that late.
func New(client kubernetes.Interface, cfg Config, t *Tracker) (*Informers, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("informers: node name is required")
	}
	sel, err := LabelSelector(cfg.ServiceProxyName)
	if err != nil {
		return nil, fmt.Errorf("informers: %w", err)
	}
	selector := sel.String()
	byLabel := func(o *metav1.ListOptions) { o.LabelSelector = selector }
	// Only this node's Node.
	nodeSelector := fields.OneTermEqualSelector(metav1.ObjectNameField, cfg.NodeName).String()
	byName := func(o *metav1.ListOptions) { o.FieldSelector = nodeSelector }

	i := &Informers{nodeName: cfg.NodeName, slices: newSliceIndex()}
	core, disc := client.CoreV1(), client.DiscoveryV1()
	pages := client
	if cfg.Pages != nil {
		pages = cfg.Pages
	}
	pcore, pdisc := pages.CoreV1(), pages.DiscoveryV1()
	// The initial lists are LISTs, not streams of initial events (WatchList,
	// client-go 0.37's default): against kube-apiserver 1.37 with 10,000
	// Services the stream took 1.70 s (0.89 s of our CPU) where a LIST
	// took 0.18 s (0.10 s), and both kinds at once 2.2 s against 0.7 s
	// (e2e/benchcompare/listfloor, docs/performance.md, "Start to kernel
	// at 10k"); the watches that follow are the same.
	lister := listInitialState{}
	// No periodic resync: the proxier's own full sync covers drift, and a
	// resync would only re-deliver unchanged objects.
	// No index: Services are read by key or all at once, slices by
	// Service from our own index (sliceindex.go: client-go's holds a set
	// of keys per value, 10,000 of them at 10,000 Services).
	svcInf := newInformer(lister, &v1.Service{}, byLabel,
		core.Services(metav1.NamespaceAll).List, pcore.Services(metav1.NamespaceAll).List, core.Services(metav1.NamespaceAll).Watch,
		i.times.listed(whatServices))
	sliceInf := newInformer(lister, &discovery.EndpointSlice{}, byLabel,
		disc.EndpointSlices(metav1.NamespaceAll).List, pdisc.EndpointSlices(metav1.NamespaceAll).List, disc.EndpointSlices(metav1.NamespaceAll).Watch,
		i.times.listed(whatSlices))
	nodeInf := newInformer(lister, &v1.Node{}, byName, core.Nodes().List, pcore.Nodes().List, core.Nodes().Watch,
		i.times.listed(whatNode))

	regs := make([]cache.ResourceEventHandlerRegistration, 0, 3)
	var whats []string
	for _, h := range []struct {
		what string
		inf  cache.SharedIndexInformer
		h    cache.ResourceEventHandler
	}{
		{whatServices, svcInf, serviceHandler(t)},
		{whatSlices, sliceInf, sliceHandler(t, i.slices)},
		{whatNode, nodeInf, nodeHandler(t, cfg.NodeName)},
	} {
		reg, err := h.inf.AddEventHandler(h.h)
		if err != nil {
			return nil, fmt.Errorf("informers: handler for %s: %w", h.what, err)
		}
		regs = append(regs, reg)
		whats = append(whats, h.what)
	}

	i.informers, i.whats = []cache.SharedIndexInformer{svcInf, sliceInf, nodeInf}, whats
	i.services = svcInf.GetIndexer()
	i.nodes = corelisters.NewNodeLister(nodeInf.GetIndexer())
	// Synced means the handlers, not just the caches, have seen the initial
	// lists: only then is every initial object recorded in the tracker.
	for _, r := range regs {
		i.synced = append(i.synced, r.HasSyncedChecker())
		i.recorded = append(i.recorded, make(chan struct{}))
	}
	return i, nil
}

// listInitialState tells client-go's reflector not to stream its initial
// state (see New): it lists instead.
type listInitialState struct{}

func (listInitialState) IsWatchListSemanticsUnSupported() bool { return true }

// newInformer is a shared informer of one resource whose list and watch
// calls (with tweak applied to their options) retry an unreachable
// apiserver and whose watches resume after they end. Like client-go's
// generated informers, it streams the initial list (WatchList) only where
// client supports it (New's never does).
func newInformer[L runtime.Object](client any, obj runtime.Object, tweak func(*metav1.ListOptions),
	list, more func(context.Context, metav1.ListOptions) (L, error),
	watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error),
	listed func(objects int)) cache.SharedIndexInformer {
	lister := func(list func(context.Context, metav1.ListOptions) (L, error)) func(context.Context, metav1.ListOptions) (runtime.Object, error) {
		return func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			tweak(&o)
			return retryUnreachable(ctx, func() (runtime.Object, error) { return list(ctx, o) })
		}
	}
	r := newResumer(obj, lister(list),
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			tweak(&o)
			return retryUnreachable(ctx, func() (watch.Interface, error) { return watchFn(ctx, o) })
		})
	r.more = lister(more)
	r.listed = listed
	lw := &cache.ListWatch{ListWithContextFunc: r.List, WatchFuncWithContext: r.Watch}
	inf := cache.NewSharedIndexInformerWithOptions(cache.ToListWatcherWithWatchListSemantics(lw, client), obj,
		cache.SharedIndexInformerOptions{})
	// Keep only what the proxy reads, packed (trim.go, packed.go); set
	// before Run, never fails.
	_ = inf.SetTransform(transform)
	return inf
}

// Start runs the informers until ctx ends.
func (i *Informers) Start(ctx context.Context) {
	for n, inf := range i.informers {
		i.wg.Go(func() { inf.RunWithContext(ctx) })
		i.wg.Go(func() {
			if i.times.waitSynced(ctx, i.whats[n], i.synced[n]) {
				close(i.recorded[n])
			}
		})
	}
}

// WaitForSync blocks until every informer has listed and delivered its
// initial objects, or ctx ends. The proxier must not program anything
// before: a partial view would delete rules of Services not yet seen.
// It waits on the informers' done channels, not by polling (client-go's
// WaitForCacheSync looks every 100 ms: up to 100 ms of every start).
func (i *Informers) WaitForSync(ctx context.Context) error {
	for _, r := range i.recorded {
		select {
		case <-r:
		case <-ctx.Done():
			return fmt.Errorf("informers: caches not synced: %w", context.Cause(ctx))
		}
	}
	return nil
}

// SyncTimes says when each informer's initial list arrived and when its
// handler had seen it (zero times for what has not happened yet).
func (i *Informers) SyncTimes() []SyncTime { return i.times.get() }

// Shutdown waits for the informer goroutines after ctx of Start ended.
func (i *Informers) Shutdown() { i.wg.Wait() }

// Service returns a Service from the cache, or nil if it does not exist.
func (i *Informers) Service(key types.NamespacedName) (*v1.Service, error) {
	obj, exists, err := i.services.GetByKey(cache.ObjectName{Namespace: key.Namespace, Name: key.Name}.String())
	if err != nil {
		return nil, fmt.Errorf("service %s: %w", key, err)
	}
	p, ok := obj.(*packedService)
	if !exists || !ok {
		return nil, nil
	}
	return p.unpack()
}

// ServiceKeys lists the keys of every cached Service.
func (i *Informers) ServiceKeys() []types.NamespacedName {
	objs := i.services.List()
	keys := make([]types.NamespacedName, 0, len(objs))
	for _, o := range objs {
		if p, ok := o.(*packedService); ok {
			keys = append(keys, p.key())
		}
	}
	return keys
}

// EndpointSlices returns the cached slices of a Service (unordered).
func (i *Informers) EndpointSlices(key types.NamespacedName) ([]*discovery.EndpointSlice, error) {
	packed := i.slices.get(key)
	out := make([]*discovery.EndpointSlice, 0, len(packed))
	for _, p := range packed {
		s, err := p.unpack()
		if err != nil {
			return nil, fmt.Errorf("endpoint slices of %s: %w", key, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// Node returns this node's Node, or nil if it does not exist (yet).
func (i *Informers) Node() (*v1.Node, error) {
	n, err := i.nodes.Get(i.nodeName)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", i.nodeName, err)
	}
	return n, nil
}
