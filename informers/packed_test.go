package informers

import (
	"fmt"
	"reflect"
	"runtime"
	"testing"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/nftproxy/nftproxy/proxier/model"
)

// What a lookup returns from the cache is exactly the trimmed object: the
// same fields, the same model.
func TestPackedObjectsUnpackToTheTrimmedObjects(t *testing.T) {
	svc, slice, _ := untrimmed()
	trimmedSvc, _ := trim(svc.DeepCopy())
	trimmedSl, _ := trim(slice.DeepCopy())

	ps := mustTransform(t, svc.DeepCopy()).(*packedService)
	psl := mustTransform(t, slice.DeepCopy()).(*packedSlice)
	gotSvc, err := ps.unpack()
	if err != nil {
		t.Fatal(err)
	}
	gotSl, err := psl.unpack()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotSvc, trimmedSvc) {
		t.Errorf("Service unpacks to\n%+v\nwant\n%+v", gotSvc, trimmedSvc)
	}
	if !reflect.DeepEqual(gotSl, trimmedSl) {
		t.Errorf("EndpointSlice unpacks to\n%+v\nwant\n%+v", gotSl, trimmedSl)
	}
	want, _ := model.ServicePorts(svc, []*discovery.EndpointSlice{slice})
	got, _ := model.ServicePorts(gotSvc, []*discovery.EndpointSlice{gotSl})
	if len(got) != 1 || len(want) != 1 || !reflect.DeepEqual(*got[0], *want[0]) {
		t.Errorf("unpacked objects convert to %+v, want %+v", got, want)
	}
}

// The store keys and versions packed objects, and the handlers find the
// slice's Service, without decoding them.
func TestPackedObjectsCarryTheirIdentity(t *testing.T) {
	svc, slice, _ := untrimmed()
	ps := mustTransform(t, svc)
	psl := mustTransform(t, slice).(*packedSlice)
	for _, c := range []struct {
		obj     any
		key, rv string
	}{{ps, "ns/web", "7"}, {psl, "ns/web-abc", "7"}, {cache.DeletedFinalStateUnknown{Key: "ns/web", Obj: ps}, "ns/web", ""}} {
		key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(c.obj)
		if err != nil || key != c.key {
			t.Errorf("store key of %T = %q, %v; want %q", c.obj, key, err, c.key)
		}
		if v, ok := c.obj.(interface{ GetResourceVersion() string }); c.rv != "" && (!ok || v.GetResourceVersion() != c.rv) {
			t.Errorf("%T does not carry resourceVersion %s", c.obj, c.rv)
		}
	}
	if got := sliceKeyOf(psl); got != nn("web") {
		t.Errorf("slice belongs to %v, want ns/web", got)
	}
	unlabelled := slice.DeepCopy()
	unlabelled.Labels = nil
	if got := sliceKeyOf(mustTransform(t, unlabelled)); got != (types.NamespacedName{}) {
		t.Errorf("unlabelled slice belongs to %v", got)
	}
}

// Unpacked endpoints share their node names: the model keeps them for the
// endpoint's life.
func TestUnpackedSlicesShareNodeNames(t *testing.T) {
	_, slice, _ := untrimmed()
	p := mustTransform(t, slice).(*packedSlice)
	a, errA := p.unpack()
	b, errB := p.unpack()
	if errA != nil || errB != nil {
		t.Fatal(errA, errB)
	}
	if a.Endpoints[0].NodeName != b.Endpoints[0].NodeName || a.Endpoints[0].Conditions.Ready != b.Endpoints[0].Conditions.Ready {
		t.Error("two reads of one slice hold separate node names and conditions")
	}
}

// Packed objects, tombstones and unknown types pass the transform
// unchanged (client-go may hand it objects it already transformed).
func TestTransformPassesWhatItProduced(t *testing.T) {
	svc, _, node := untrimmed()
	p := mustTransform(t, svc)
	for _, o := range []any{p, cache.DeletedFinalStateUnknown{Key: "ns/web", Obj: p}, "x"} {
		if got := mustTransform(t, o); !reflect.DeepEqual(got, o) {
			t.Errorf("transform changed %T", o)
		}
	}
	if n, ok := mustTransform(t, node).(*v1.Node); !ok || n.Status.Images != nil {
		t.Errorf("the Node is kept trimmed and decoded, got %T", n)
	}
}

func mustTransform(t *testing.T, obj any) any {
	t.Helper()
	o, err := transform(obj)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// BenchmarkCacheRetained10kx10 reports what the caches keep per Service
// (one Service and one slice of 10 endpoints each), packed as the
// informers keep them and, for comparison, trimmed and decoded.
func BenchmarkCacheRetained10kx10(b *testing.B) {
	for _, c := range []struct {
		name string
		keep func(any) any
	}{
		{"packed", func(o any) any { p, _ := transform(o); return p }},
		{"decoded", func(o any) any { t, _ := trim(o); return t }},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				kept := make([]any, 0, 20000)
				before := heapInUse()
				for i := range 10000 {
					svc, slice := benchObjects(i)
					kept = append(kept, c.keep(svc), c.keep(slice))
				}
				b.ReportMetric(float64(heapInUse()-before)/10000, "B/service")
				runtime.KeepAlive(kept)
			}
		})
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// benchObjects is a Service and its slice as the protobuf decoder hands
// them over (strings of their own, grown endpoint arrays).
func benchObjects(i int) (*v1.Service, *discovery.EndpointSlice) {
	svc, slice, _ := untrimmed()
	svc.Name = fmt.Sprintf("svc-%d", i)
	svc.Spec.ClusterIPs = []string{fmt.Sprintf("10.96.%d.%d", i/256, i%256)}
	svc.Spec.ClusterIP = svc.Spec.ClusterIPs[0]
	slice.Name, slice.Labels = svc.Name+"-abc", map[string]string{discovery.LabelServiceName: svc.Name}
	eps := make([]discovery.Endpoint, 0, 16)
	for e := range 10 {
		eps = append(eps, discovery.Endpoint{Addresses: []string{fmt.Sprintf("10.%d.%d.%d", e, i/256, i%256)},
			Conditions: discovery.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
			NodeName:   ptr.To(fmt.Sprintf("node-%d", e))})
	}
	slice.Endpoints = eps
	return svc, slice
}
