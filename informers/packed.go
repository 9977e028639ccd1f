package informers

import (
	"fmt"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// The caches keep Services and EndpointSlices packed: their identity in
// the clear and their trimmed form in the API's own protobuf encoding.
// The proxier reads a Service and its slices only when they changed (and
// each once at start), so decoding on read costs a few microseconds per
// change, while the decoded Go objects were the largest share of a
// running proxy's heap: 37 of 82 MB live at 10,000 Services × 10
// endpoints, ~3.7 KB per Service against ~1 KB packed
// (docs/performance.md, "Memory, sixth pass"). The encoding is the
// apiserver's, so what a lookup returns is exactly the trimmed object.
// The Node stays decoded: there is one.

// packed is what the cache keeps of one object. client-go's store keys
// it and compares versions through GetObjectMeta.
type packed struct {
	namespace, name, version string
	data                     []byte
}

// GetObjectMeta gives the store and the handlers the object's identity
// (metav1.ObjectMetaAccessor).
func (p *packed) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Namespace: p.namespace, Name: p.name, ResourceVersion: p.version}
}

// GetResourceVersion lets sameVersion see resyncs.
func (p *packed) GetResourceVersion() string { return p.version }

func (p *packed) key() types.NamespacedName {
	return types.NamespacedName{Namespace: p.namespace, Name: p.name}
}

// packedService is a cached Service.
type packedService struct{ packed }

// packedSlice is a cached EndpointSlice and the Service it belongs to
// (its service-name label; empty for none), which the handler and the
// index read without decoding.
type packedSlice struct {
	packed
	service string
}

func packService(s *v1.Service) (*packedService, error) {
	data, err := s.Marshal()
	if err != nil {
		return nil, fmt.Errorf("packing Service %s/%s: %w", s.Namespace, s.Name, err)
	}
	return &packedService{packed{namespace: s.Namespace, name: s.Name, version: s.ResourceVersion, data: data}}, nil
}

func packSlice(s *discovery.EndpointSlice) (*packedSlice, error) {
	data, err := s.Marshal()
	if err != nil {
		return nil, fmt.Errorf("packing EndpointSlice %s/%s: %w", s.Namespace, s.Name, err)
	}
	return &packedSlice{
		packed:  packed{namespace: s.Namespace, name: s.Name, version: s.ResourceVersion, data: data},
		service: s.Labels[discovery.LabelServiceName],
	}, nil
}

func (p *packedService) unpack() (*v1.Service, error) {
	s := &v1.Service{}
	if err := s.Unmarshal(p.data); err != nil {
		return nil, fmt.Errorf("unpacking Service %s/%s: %w", p.namespace, p.name, err)
	}
	return s, nil
}

// unpack decodes the slice with its endpoints' node and zone names and
// conditions shared again (the model keeps the names for as long as the
// endpoint lives: one string per node, not one per endpoint).
func (p *packedSlice) unpack() (*discovery.EndpointSlice, error) {
	s := &discovery.EndpointSlice{}
	if err := s.Unmarshal(p.data); err != nil {
		return nil, fmt.Errorf("unpacking EndpointSlice %s/%s: %w", p.namespace, p.name, err)
	}
	shareEndpointValues(s.Endpoints)
	return s, nil
}

// serviceKey returns the Service the slice belongs to.
func (p *packedSlice) serviceKey() (types.NamespacedName, bool) {
	if p.service == "" {
		return types.NamespacedName{}, false
	}
	return types.NamespacedName{Namespace: p.namespace, Name: p.service}, true
}
