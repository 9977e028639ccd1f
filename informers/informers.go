package informers

import (
	"context"
	"errors"
	"fmt"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	clientinformers "k8s.io/client-go/informers"
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
}

// Informers owns the informers and serves lookups from their caches.
type Informers struct {
	nodeName    string
	factory     clientinformers.SharedInformerFactory
	nodeFactory clientinformers.SharedInformerFactory

	services corelisters.ServiceLister
	slices   cache.Indexer
	nodes    corelisters.NodeLister
	synced   []cache.InformerSynced
}

// indexByService indexes EndpointSlices by the Service they belong to.
const indexByService = "service"

// New creates the informers and registers handlers that record changes in
// t. Nothing runs before Start.
func New(client kubernetes.Interface, cfg Config, t *Tracker) (*Informers, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("informers: node name is required")
	}
	sel, err := LabelSelector(cfg.ServiceProxyName)
	if err != nil {
		return nil, fmt.Errorf("informers: %w", err)
	}
	selector := sel.String()
	// No periodic resync: the proxier's own full sync covers drift, and a
	// resync would only re-deliver unchanged objects.
	factory := clientinformers.NewSharedInformerFactoryWithOptions(client, 0,
		clientinformers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector }),
		clientinformers.WithTransform(trim))
	// A separate factory: its field selector must not apply to the others.
	nodeSelector := fields.OneTermEqualSelector(metav1.ObjectNameField, cfg.NodeName).String()
	nodeFactory := clientinformers.NewSharedInformerFactoryWithOptions(client, 0,
		clientinformers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = nodeSelector }),
		clientinformers.WithTransform(trim))

	svcInf := factory.Core().V1().Services()
	sliceInf := factory.Discovery().V1().EndpointSlices()
	nodeInf := nodeFactory.Core().V1().Nodes()

	if err := sliceInf.Informer().AddIndexers(cache.Indexers{indexByService: sliceServiceIndex}); err != nil {
		return nil, fmt.Errorf("informers: indexing EndpointSlices: %w", err)
	}
	regs := make([]cache.ResourceEventHandlerRegistration, 0, 3)
	for _, h := range []struct {
		what string
		inf  cache.SharedIndexInformer
		h    cache.ResourceEventHandler
	}{
		{"Services", svcInf.Informer(), serviceHandler(t)},
		{"EndpointSlices", sliceInf.Informer(), sliceHandler(t)},
		{"Node", nodeInf.Informer(), nodeHandler(t, cfg.NodeName)},
	} {
		reg, err := h.inf.AddEventHandler(h.h)
		if err != nil {
			return nil, fmt.Errorf("informers: handler for %s: %w", h.what, err)
		}
		regs = append(regs, reg)
	}

	i := &Informers{
		nodeName:    cfg.NodeName,
		factory:     factory,
		nodeFactory: nodeFactory,
		services:    svcInf.Lister(),
		slices:      sliceInf.Informer().GetIndexer(),
		nodes:       nodeInf.Lister(),
	}
	// Synced means the handlers, not just the caches, have seen the initial
	// lists: only then is every initial object recorded in the tracker.
	for _, r := range regs {
		i.synced = append(i.synced, r.HasSynced)
	}
	return i, nil
}

// sliceServiceIndex keys a slice by "namespace/service"; slices without the
// service-name label belong to no Service and are not indexed.
func sliceServiceIndex(obj any) ([]string, error) {
	s, ok := obj.(*discovery.EndpointSlice)
	if !ok {
		return nil, nil
	}
	key, ok := sliceService(s)
	if !ok {
		return nil, nil
	}
	return []string{key.String()}, nil
}

// Start runs the informers until ctx ends.
func (i *Informers) Start(ctx context.Context) {
	i.factory.StartWithContext(ctx)
	i.nodeFactory.StartWithContext(ctx)
}

// WaitForSync blocks until every informer has listed and delivered its
// initial objects, or ctx ends. The proxier must not program anything
// before: a partial view would delete rules of Services not yet seen.
func (i *Informers) WaitForSync(ctx context.Context) error {
	if !cache.WaitForNamedCacheSyncWithContext(ctx, i.synced...) {
		return fmt.Errorf("informers: caches not synced: %w", context.Cause(ctx))
	}
	return nil
}

// Shutdown waits for the informer goroutines after ctx of Start ended.
func (i *Informers) Shutdown() {
	i.factory.Shutdown()
	i.nodeFactory.Shutdown()
}

// Service returns a Service from the cache, or nil if it does not exist.
func (i *Informers) Service(key types.NamespacedName) (*v1.Service, error) {
	s, err := i.services.Services(key.Namespace).Get(key.Name)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("service %s: %w", key, err)
	}
	return s, nil
}

// Services lists every cached Service.
func (i *Informers) Services() ([]*v1.Service, error) {
	l, err := i.services.List(labels.Everything())
	if err != nil {
		return nil, fmt.Errorf("listing services: %w", err)
	}
	return l, nil
}

// EndpointSlices returns the cached slices of a Service (unordered).
func (i *Informers) EndpointSlices(key types.NamespacedName) ([]*discovery.EndpointSlice, error) {
	objs, err := i.slices.ByIndex(indexByService, key.String())
	if err != nil {
		return nil, fmt.Errorf("endpoint slices of %s: %w", key, err)
	}
	out := make([]*discovery.EndpointSlice, 0, len(objs))
	for _, o := range objs {
		if s, ok := o.(*discovery.EndpointSlice); ok {
			out = append(out, s)
		}
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
