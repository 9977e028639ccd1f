package informers

import (
	"sync"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// The informer caches keep only what nftproxy reads (proxier/model,
// proxier/node.go, proxier/healthz, Events), so that a cluster of 10,000
// Services costs what the proxy needs rather than whole API objects:
// managedFields, annotations, owner references, endpoint targetRefs and
// the Node's image list are dropped as objects arrive (client-go
// transforms run before the object is stored or handed to a handler).
// Everything kept is shared with the decoded object, not copied.

// transform is the informers' cache.TransformFunc: Services and
// EndpointSlices are trimmed and packed (packed.go), the Node trimmed.
// Tombstones, packed objects and unknown types pass unchanged.
func transform(obj any) (any, error) {
	t, _ := trim(obj)
	switch o := t.(type) {
	case *v1.Service:
		return packService(o)
	case *discovery.EndpointSlice:
		return packSlice(o)
	}
	return t, nil
}

// trim returns obj with only what nftproxy reads. Tombstones and unknown
// types pass unchanged; it never fails.
func trim(obj any) (any, error) {
	switch o := obj.(type) {
	case *v1.Service:
		return trimService(o), nil
	case *discovery.EndpointSlice:
		return trimSlice(o), nil
	case *v1.Node:
		return trimNode(o), nil
	}
	return obj, nil
}

// keptLabels are the labels the cache keeps of obj: a slice's
// service-name label alone (the packed slice would carry the others, the
// controller's managed-by label among them, for nothing), the Node's
// labels as they are (its zone label; one object); a Service's were only
// needed by the API server's label selector.
func keptLabels(obj any) map[string]string {
	switch o := obj.(type) {
	case *discovery.EndpointSlice:
		name, ok := o.Labels[discovery.LabelServiceName]
		switch {
		case !ok:
			return nil
		case len(o.Labels) == 1:
			return o.Labels
		}
		return map[string]string{discovery.LabelServiceName: name}
	case *v1.Node:
		return o.Labels
	}
	return nil
}

// trimMeta keeps identity (Events refer to the object by UID and
// resourceVersion; handlers compare resourceVersions), the given labels
// and the deletion timestamp (healthz fails while the Node is being
// deleted).
func trimMeta(m *metav1.ObjectMeta, labels map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
		Generation: m.Generation, Labels: labels, DeletionTimestamp: m.DeletionTimestamp,
	}
}

// trimListItems trims a LIST's items in place, before the reflector
// takes them: what trim drops is then garbage as soon as the list is
// decoded, not only after the informer has transformed every item, so a
// collection during or after the initial list does not find 10,000
// untrimmed objects live (and size the heap after them for the first
// sync). The transform still runs on the items; trimming is idempotent.
func trimListItems(l runtime.Object) {
	switch l := l.(type) {
	case *v1.ServiceList:
		for i := range l.Items {
			l.Items[i] = trimmedService(&l.Items[i])
		}
	case *discovery.EndpointSliceList:
		for i := range l.Items {
			l.Items[i] = trimmedSlice(&l.Items[i])
		}
	case *v1.NodeList:
		for i := range l.Items {
			l.Items[i] = trimmedNode(&l.Items[i])
		}
	}
}

// appendListItems appends src's items to dst (lists of one of the
// types trimListItems knows); false for other lists.
func appendListItems(dst, src runtime.Object) bool {
	switch d := dst.(type) {
	case *v1.ServiceList:
		s, ok := src.(*v1.ServiceList)
		if ok {
			d.Items = append(d.Items, s.Items...)
		}
		return ok
	case *discovery.EndpointSliceList:
		s, ok := src.(*discovery.EndpointSliceList)
		if ok {
			d.Items = append(d.Items, s.Items...)
		}
		return ok
	case *v1.NodeList:
		s, ok := src.(*v1.NodeList)
		if ok {
			d.Items = append(d.Items, s.Items...)
		}
		return ok
	}
	return false
}

func trimService(s *v1.Service) *v1.Service {
	t := trimmedService(s)
	return &t
}

func trimmedService(s *v1.Service) v1.Service {
	spec := s.Spec
	spec.Selector = nil // endpoints come from EndpointSlices
	return v1.Service{
		ObjectMeta: trimMeta(&s.ObjectMeta, keptLabels(s)),
		Spec:       spec,
		Status:     v1.ServiceStatus{LoadBalancer: s.Status.LoadBalancer},
	}
}

func trimSlice(s *discovery.EndpointSlice) *discovery.EndpointSlice {
	t := trimmedSlice(s)
	return &t
}

func trimmedSlice(s *discovery.EndpointSlice) discovery.EndpointSlice {
	out := discovery.EndpointSlice{
		ObjectMeta:  trimMeta(&s.ObjectMeta, keptLabels(s)),
		AddressType: s.AddressType,
		Ports:       exact(s.Ports),
		Endpoints:   exact(s.Endpoints),
	}
	// An endpoint's own zone is not read either: topology goes by its
	// hints and this node's zone, as upstream's.
	for i := range out.Endpoints {
		e := &out.Endpoints[i]
		e.TargetRef, e.Hostname, e.DeprecatedTopology, e.Zone = nil, nil, nil, nil
	}
	shareEndpointValues(out.Endpoints)
	return out
}

// shareEndpointValues points the pointer fields every endpoint carries
// (conditions, node) to shared values instead of 100,000 copies of true
// and "node-1".
func shareEndpointValues(eps []discovery.Endpoint) {
	for i := range eps {
		e := &eps[i]
		c := &e.Conditions
		c.Ready, c.Serving, c.Terminating = sharedBool(c.Ready), sharedBool(c.Serving), sharedBool(c.Terminating)
		e.NodeName = names.get(e.NodeName)
	}
}

// exact returns s in an array of its length: the protobuf decoder grows
// repeated fields by appending, so a slice of 10 endpoints arrives in an
// array of 16 (96 B each), and the cache would keep the difference for
// the object's life.
func exact[T any](s []T) []T {
	if s == nil {
		return nil
	}
	return append(make([]T, 0, len(s)), s...)
}

// Cached objects are never modified, so their pointers may be shared.
var (
	trueValue, falseValue = true, false
	names                 = &interner{m: map[string]*string{}}
)

func sharedBool(b *bool) *bool {
	switch {
	case b == nil:
		return nil
	case *b:
		return &trueValue
	}
	return &falseValue
}

// interner hands out one *string per distinct node name. It is
// bounded: past maxInterned names (node churn over a long life) it starts
// afresh, the old pointers staying valid where they are used.
type interner struct {
	mu sync.Mutex
	m  map[string]*string
}

const maxInterned = 20000

func (in *interner) get(s *string) *string {
	if s == nil {
		return nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if p, ok := in.m[*s]; ok {
		return p
	}
	if len(in.m) >= maxInterned {
		in.m = map[string]*string{}
	}
	in.m[*s] = s
	return s
}

func trimNode(n *v1.Node) *v1.Node {
	t := trimmedNode(n)
	return &t
}

func trimmedNode(n *v1.Node) v1.Node {
	return v1.Node{
		ObjectMeta: trimMeta(&n.ObjectMeta, keptLabels(n)),
		Spec:       v1.NodeSpec{Taints: n.Spec.Taints},
		Status:     v1.NodeStatus{Addresses: n.Status.Addresses},
	}
}
