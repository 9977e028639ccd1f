package informers

import (
	"reflect"
	"testing"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/nftproxy/nftproxy/proxier/model"
)

// TestTrimKeepsWhatTheProxyReads converts objects before and after trim:
// the model must not change, what is dropped must be gone, and endpoint
// lists are kept at their exact size.
func TestTrimKeepsWhatTheProxyReads(t *testing.T) {
	svc, slice, node := untrimmed()
	wantPorts, wantRej := model.ServicePorts(svc, []*discovery.EndpointSlice{slice})
	ts, _ := trim(svc.DeepCopy())
	tsl, _ := trim(slice.DeepCopy())
	gotPorts, gotRej := model.ServicePorts(ts.(*v1.Service), []*discovery.EndpointSlice{tsl.(*discovery.EndpointSlice)})
	if len(gotPorts) != 1 || len(wantPorts) != 1 || len(gotRej) != len(wantRej) {
		t.Fatalf("ports %d/%d, rejections %d/%d", len(gotPorts), len(wantPorts), len(gotRej), len(wantRej))
	}
	if got, want := *gotPorts[0], *wantPorts[0]; !reflect.DeepEqual(got, want) {
		t.Errorf("trimmed objects convert to\n%+v\nwant\n%+v", got, want)
	}

	s := ts.(*v1.Service)
	if s.Annotations != nil || s.ManagedFields != nil || s.OwnerReferences != nil || s.Spec.Selector != nil || s.Status.Conditions != nil {
		t.Errorf("Service not trimmed: %+v", s)
	}
	if s.UID != "u1" || s.ResourceVersion != "7" || s.Labels != nil {
		t.Errorf("Service lost its identity: %+v", s.ObjectMeta)
	}
	sl := tsl.(*discovery.EndpointSlice)
	if sl.ManagedFields != nil || sl.Endpoints[0].TargetRef != nil || sl.Endpoints[0].Hostname != nil || sl.Endpoints[0].Zone != nil ||
		sl.Labels[discovery.LabelServiceName] != "web" || len(sl.Labels) != 1 {
		t.Errorf("slice not trimmed: %+v", sl)
	}
	if sl.Endpoints[0].Conditions.Ready != sl.Endpoints[1].Conditions.Serving {
		t.Error("condition pointers are not shared")
	}
	grown := slice.DeepCopy()
	grown.Endpoints = append(make([]discovery.Endpoint, 0, 16), grown.Endpoints...) // as the protobuf decoder leaves it
	tg, _ := trim(grown)
	if eps := tg.(*discovery.EndpointSlice).Endpoints; cap(eps) != len(eps) {
		t.Errorf("the cache keeps %d endpoints in an array of %d", len(eps), cap(eps))
	}

	tn, _ := trim(node)
	n := tn.(*v1.Node)
	if n.Labels["topology.kubernetes.io/zone"] != "z1" || n.DeletionTimestamp == nil || len(n.Spec.Taints) != 1 ||
		len(n.Status.Addresses) != 1 || n.Status.Images != nil || n.ManagedFields != nil {
		t.Errorf("Node trimmed wrongly: %+v", n)
	}

	tomb, _ := trim("not an object")
	if tomb != "not an object" {
		t.Error("unknown objects must pass unchanged")
	}
}

// untrimmed are objects as the apiserver sends them, with everything
// trim drops.
func untrimmed() (*v1.Service, *discovery.EndpointSlice, *v1.Node) {
	meta := metav1.ObjectMeta{
		Namespace: "ns", Name: "web", UID: "u1", ResourceVersion: "7", Labels: map[string]string{"app": "web"},
		Annotations:     map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{...}"},
		ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
		OwnerReferences: []metav1.OwnerReference{{Name: "x"}},
	}
	ipMode := v1.LoadBalancerIPModeVIP
	svc := &v1.Service{ObjectMeta: meta, Spec: v1.ServiceSpec{
		Type: v1.ServiceTypeLoadBalancer, ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"},
		Selector: map[string]string{"app": "web"}, ExternalIPs: []string{"192.0.2.1"},
		Ports:                 []v1.ServicePort{{Name: "http", Port: 80, NodePort: 30080, Protocol: v1.ProtocolTCP}},
		ExternalTrafficPolicy: v1.ServiceExternalTrafficPolicyLocal, HealthCheckNodePort: 31000,
		LoadBalancerSourceRanges: []string{"10.0.0.0/8"}, SessionAffinity: v1.ServiceAffinityClientIP,
		SessionAffinityConfig: &v1.SessionAffinityConfig{ClientIP: &v1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](60)}},
	}, Status: v1.ServiceStatus{
		LoadBalancer: v1.LoadBalancerStatus{Ingress: []v1.LoadBalancerIngress{{IP: "198.51.100.1", IPMode: &ipMode}}},
		Conditions:   []metav1.Condition{{Type: "x"}},
	}}
	sliceMeta := meta
	sliceMeta.Name, sliceMeta.Labels = "web-abc", map[string]string{discovery.LabelServiceName: "web", "app": "web"}
	slice := &discovery.EndpointSlice{ObjectMeta: sliceMeta, AddressType: discovery.AddressTypeIPv4,
		Ports: []discovery.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(v1.ProtocolTCP)}},
		Endpoints: []discovery.Endpoint{
			{Addresses: []string{"10.1.0.1"}, Conditions: discovery.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
				NodeName: ptr.To("node-1"), Zone: ptr.To("z1"), Hints: &discovery.EndpointHints{ForZones: []discovery.ForZone{{Name: "z1"}}},
				TargetRef: &v1.ObjectReference{Kind: "Pod", Name: "web-1"}, Hostname: ptr.To("web-1")},
			{Addresses: []string{"10.1.0.2"}, Conditions: discovery.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)},
				NodeName: ptr.To("node-2")},
		}}

	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1", Labels: map[string]string{"topology.kubernetes.io/zone": "z1"},
		DeletionTimestamp: &metav1.Time{}, ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubelet"}}},
		Spec: v1.NodeSpec{Taints: []v1.Taint{{Key: "k"}}, PodCIDR: "10.1.0.0/24"},
		Status: v1.NodeStatus{Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "192.0.2.10"}},
			Images: []v1.ContainerImage{{Names: []string{"big"}}}}}
	return svc, slice, node
}

// A LIST's items are trimmed in place before the reflector takes them,
// exactly as the transform trims each object (which then finds them
// trimmed: trimming is idempotent).
func TestTrimListItemsTrimsAsTheTransform(t *testing.T) {
	svc, slice, node := untrimmed()
	lists := []struct {
		list runtime.Object
		obj  any
		item func(runtime.Object) any
	}{
		{&v1.ServiceList{Items: []v1.Service{*svc.DeepCopy()}}, svc,
			func(l runtime.Object) any { return &l.(*v1.ServiceList).Items[0] }},
		{&discovery.EndpointSliceList{Items: []discovery.EndpointSlice{*slice.DeepCopy()}}, slice,
			func(l runtime.Object) any { return &l.(*discovery.EndpointSliceList).Items[0] }},
		{&v1.NodeList{Items: []v1.Node{*node.DeepCopy()}}, node,
			func(l runtime.Object) any { return &l.(*v1.NodeList).Items[0] }},
	}
	for _, l := range lists {
		trimListItems(l.list)
		got := l.item(l.list)
		want, _ := trim(l.obj)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%T: item trimmed in place to\n%+v\nwant as trim\n%+v", l.list, got, want)
		}
		again, _ := trim(got)
		if !reflect.DeepEqual(again, want) {
			t.Errorf("%T: trimming a trimmed item changed it:\n%+v", l.list, again)
		}
	}
}
