package main

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// The load is written straight into the lab's etcd (lab.EtcdWriter: the
// apiserver's ClusterIP allocation does not scale, the create rate fell
// from 77/s to 6/s on the way to 10,000 Services), and the proxies then
// list and watch it through the apiserver as usual. Endpoint changes
// during the measurements go through the API like any controller's.

// clusterIPOf is Service i's ClusterIP: 10.96.0.16 onwards, inside the
// lab's service CIDR and clear of the kubernetes Service's 10.96.0.1.
func clusterIPOf(i int) netip.Addr {
	k := i + 16
	return netip.AddrFrom4([4]byte{10, 96, byte(k >> 8), byte(k)})
}

func uid(kind string, i int) types.UID {
	return types.UID(fmt.Sprintf("%08x-0000-4000-8000-%012x", i, len(kind)))
}

// put writes Service i, its IPAddress and its EndpointSlice, shaped as the
// apiserver (defaults), kubectl apply (last-applied annotation, managed
// fields) and the EndpointSlice controller (targetRefs, zones, owner,
// trigger time) would leave them, so that what a proxy caches is what it
// would cache in a real cluster.
func (l *loader) put(ctx context.Context, i int) (netip.Addr, error) {
	ip := clusterIPOf(i)
	now := metav1.Now()
	name := serviceName(i)
	svc := &corev1.Service{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Namespace: benchNamespace, Name: name, UID: uid("svc", i), CreationTimestamp: now,
			Labels: map[string]string{"app": name},
			Annotations: map[string]string{"kubectl.kubernetes.io/last-applied-configuration": fmt.Sprintf(
				`{"apiVersion":"v1","kind":"Service","metadata":{"annotations":{},"labels":{"app":%q},"name":%q,"namespace":%q},"spec":{"ports":[{"port":%d,"protocol":"TCP","targetPort":%d}],"selector":{"app":%q}}}`+"\n",
				name, name, benchNamespace, servicePort, endpointPort, name)},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl-client-side-apply", Operation: metav1.ManagedFieldsOperationUpdate,
				APIVersion: "v1", Time: &now, FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(
					`{"f:metadata":{"f:annotations":{".":{},"f:kubectl.kubernetes.io/last-applied-configuration":{}},"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:internalTrafficPolicy":{},"f:ports":{".":{},"k:{\"port\":80,\"protocol\":\"TCP\"}":{".":{},"f:port":{},"f:protocol":{},"f:targetPort":{}}},"f:selector":{},"f:sessionAffinity":{},"f:type":{}}}`)}}},
		},
		Spec: corev1.ServiceSpec{
			Type:                  corev1.ServiceTypeClusterIP,
			ClusterIP:             ip.String(),
			ClusterIPs:            []string{ip.String()},
			IPFamilies:            []corev1.IPFamily{corev1.IPv4Protocol},
			IPFamilyPolicy:        ptr.To(corev1.IPFamilyPolicySingleStack),
			InternalTrafficPolicy: ptr.To(corev1.ServiceInternalTrafficPolicyCluster),
			SessionAffinity:       corev1.ServiceAffinityNone,
			Ports:                 []corev1.ServicePort{{Port: servicePort, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(endpointPort)}},
			// No selector: the slices are ours, not the controller's.
		},
	}
	type object struct {
		key string
		obj any
	}
	objs := []object{
		{"/registry/ipaddresses/" + ip.String(), ipAddress(i, ip, name, now)},
		{"/registry/services/specs/" + benchNamespace + "/" + name, svc},
	}
	slice := l.slice(i, now, svc.UID)
	objs = append(objs, object{"/registry/endpointslices/" + benchNamespace + "/" + slice.Name, slice})
	if l.dualStack {
		ip6 := clusterIP6Of(i)
		svc.Spec.ClusterIPs = append(svc.Spec.ClusterIPs, ip6.String())
		svc.Spec.IPFamilies = append(svc.Spec.IPFamilies, corev1.IPv6Protocol)
		svc.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicyRequireDualStack)
		s6 := l.slice6(i, now, svc.UID)
		objs = append(objs, object{"/registry/ipaddresses/" + ip6.String(), ipAddress(i, ip6, name, now)},
			object{"/registry/endpointslices/" + benchNamespace + "/" + s6.Name, s6})
	}
	for _, o := range objs {
		if err := l.etcd.Put(ctx, o.key, o.obj); err != nil {
			return netip.Addr{}, err
		}
	}
	return ip, nil
}

// ipAddress is the IPAddress object that reserves a ClusterIP of Service
// i, as the apiserver's allocator writes it.
func ipAddress(i int, ip netip.Addr, svc string, now metav1.Time) *networkingv1.IPAddress {
	fam, kind := corev1.IPv4Protocol, "ip"
	if ip.Is6() {
		fam, kind = corev1.IPv6Protocol, "ip6"
	}
	return &networkingv1.IPAddress{
		TypeMeta: metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "IPAddress"},
		ObjectMeta: metav1.ObjectMeta{Name: ip.String(), UID: uid(kind, i), CreationTimestamp: now, Labels: map[string]string{
			networkingv1.LabelIPAddressFamily: string(fam),
			networkingv1.LabelManagedBy:       "ipallocator.k8s.io",
		}},
		Spec: networkingv1.IPAddressSpec{ParentRef: &networkingv1.ParentReference{Resource: "services", Namespace: benchNamespace, Name: svc}},
	}
}

// slice6 is the IPv6 slice of a dual-stack Service i: the IPv4 slice's
// shape with the endpoints' IPv6 addresses.
func (l *loader) slice6(i int, now metav1.Time, svcUID types.UID) *discovery.EndpointSlice {
	s := l.slice(i, now, svcUID)
	s.Name, s.UID, s.AddressType = sliceName(i)+"-v6", uid("eps6", i), discovery.AddressTypeIPv6
	for j := range s.Endpoints {
		s.Endpoints[j].Addresses = []string{endpointAddr6(i, j, l.m).String()}
	}
	return s
}

// slice is Service i's EndpointSlice as the load writes it.
func (l *loader) slice(i int, now metav1.Time, svcUID types.UID) *discovery.EndpointSlice {
	name := serviceName(i)
	slice := &discovery.EndpointSlice{
		TypeMeta: metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"},
		ObjectMeta: metav1.ObjectMeta{Namespace: benchNamespace, Name: sliceName(i), UID: uid("eps", i), CreationTimestamp: now,
			GenerateName: name + "-",
			Labels: map[string]string{
				discovery.LabelServiceName: name,
				discovery.LabelManagedBy:   managedBy,
				"app":                      name,
			},
			Annotations: map[string]string{corev1.EndpointsLastChangeTriggerTime: now.UTC().Format(time.RFC3339)},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: name, UID: svcUID,
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: managedBy, Operation: metav1.ManagedFieldsOperationUpdate,
				APIVersion: "discovery.k8s.io/v1", Time: &now, FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(
					`{"f:addressType":{},"f:endpoints":{},"f:metadata":{"f:annotations":{".":{},"f:endpoints.kubernetes.io/last-change-trigger-time":{}},"f:generateName":{},"f:labels":{".":{},"f:app":{},"f:endpointslice.kubernetes.io/managed-by":{},"f:kubernetes.io/service-name":{}},"f:ownerReferences":{".":{},"k:{\"uid\":\"` + string(svcUID) + `\"}":{}}},"f:ports":{}}`)}}},
		},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       []discovery.EndpointPort{{Name: ptr.To(""), Port: ptr.To[int32](endpointPort), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for j := 0; j < l.m; j++ {
		slice.Endpoints = append(slice.Endpoints, discovery.Endpoint{
			Addresses:  []string{endpointAddr(i, j, l.m).String()},
			Conditions: discovery.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
			NodeName:   ptr.To(otherNode),
			Zone:       ptr.To("zone-b"),
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: benchNamespace, Name: fmt.Sprintf("%s-7d9f8c6b5-%05d", name, j),
				UID: uid("pod", i*l.m+j)},
		})
	}
	return slice
}

// putChangedSlice writes Service i's slice with its first endpoint
// replaced by addr on the proxy's node straight into etcd (as the burst
// needs: the apiserver accepts ~100 updates/s here), stamping the
// trigger-time annotation. The proxies get it through the apiserver's
// watch as any update. It returns the time just before the write.
func (l *loader) putChangedSlice(ctx context.Context, i int, addr netip.Addr) (time.Time, error) {
	s := l.slice(i, metav1.Now(), uid("svc", i))
	s.Endpoints[0].Addresses = []string{addr.String()}
	s.Endpoints[0].NodeName = ptr.To(proxyNode)
	sent := time.Now()
	s.Annotations[corev1.EndpointsLastChangeTriggerTime] = sent.UTC().Format(time.RFC3339Nano)
	if err := l.etcd.Put(ctx, "/registry/endpointslices/"+benchNamespace+"/"+s.Name, s); err != nil {
		return time.Time{}, err
	}
	return sent, nil
}

// waitListed waits until the apiserver lists n Services and n slices in
// the bench namespace (its watch cache follows etcd).
func (l *loader) waitListed(ctx context.Context, n int) error {
	count := func(list func(metav1.ListOptions) (int, *int64, error)) (int, error) {
		items, remaining, err := list(metav1.ListOptions{Limit: 1})
		if err != nil {
			return 0, err
		}
		total := items
		if remaining != nil {
			total += int(*remaining)
		}
		return total, nil
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		svcs, err1 := count(func(o metav1.ListOptions) (int, *int64, error) {
			l, err := l.client.CoreV1().Services(benchNamespace).List(ctx, o)
			if err != nil {
				return 0, nil, err
			}
			return len(l.Items), l.RemainingItemCount, nil
		})
		slices, err2 := count(func(o metav1.ListOptions) (int, *int64, error) {
			l, err := l.client.DiscoveryV1().EndpointSlices(benchNamespace).List(ctx, o)
			if err != nil {
				return 0, nil, err
			}
			return len(l.Items), l.RemainingItemCount, nil
		})
		if err1 == nil && err2 == nil && svcs >= n+l.extra && slices >= (n+l.extra)*l.families() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("apiserver lists %d Services and %d slices of %d (errors %v, %v)", svcs, slices, n, err1, err2)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
