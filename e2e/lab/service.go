package lab

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Service ports of ServiceFor: TCP and UDP on 80 (to the pods' 8080),
// HTTP on 81 (to 8081).
const (
	SvcPort     = 80
	SvcHTTPPort = 81
)

// ServiceFor returns a ClusterIP Service selecting app=<app> with ports
// tcp/udp 80 -> 8080 and http 81 -> 8081. dualStack asks for both
// families (RequireDualStack). Adjust it before CreateService as needed.
func ServiceFor(name, app string, dualStack bool) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: map[string]string{"app": app},
			Ports: []corev1.ServicePort{
				{Name: "tcp", Protocol: corev1.ProtocolTCP, Port: SvcPort, TargetPort: intstr.FromInt32(PodPort)},
				{Name: "udp", Protocol: corev1.ProtocolUDP, Port: SvcPort, TargetPort: intstr.FromInt32(PodPort)},
				{Name: "http", Protocol: corev1.ProtocolTCP, Port: SvcHTTPPort, TargetPort: intstr.FromInt32(PodHTTPPort)},
			},
		},
	}
	if dualStack {
		pol := corev1.IPFamilyPolicyRequireDualStack
		svc.Spec.IPFamilyPolicy = &pol
		svc.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
	}
	return svc
}

// CreateService creates svc (namespace "default" when unset) and returns
// it with its allocated ClusterIP(s).
func (l *Lab) CreateService(ctx context.Context, svc *corev1.Service) (*corev1.Service, error) {
	if svc.Namespace == "" {
		svc.Namespace = "default"
	}
	out, err := l.client.CoreV1().Services(svc.Namespace).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("lab: create Service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	return out, nil
}

// DeleteService deletes Service default/<name>.
func (l *Lab) DeleteService(ctx context.Context, name string) error {
	if err := l.client.CoreV1().Services("default").Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		return fmt.Errorf("lab: delete Service %s: %w", name, err)
	}
	return nil
}

// WaitForEndpoints waits until the EndpointSlices of Service default/<name>
// list exactly ready ready endpoints in every address family of the
// Service: the real signal that the control plane has caught up with the
// pods, before traffic is checked.
func (l *Lab) WaitForEndpoints(ctx context.Context, name string, ready int) error {
	svc, err := l.client.CoreV1().Services("default").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("lab: get Service %s: %w", name, err)
	}
	return waitUntil(ctx, 10*time.Second, fmt.Sprintf("%d ready endpoints of %s", ready, name), func(ctx context.Context) (bool, error) {
		counts, err := l.readyEndpoints(ctx, name)
		if err != nil {
			return false, err
		}
		for _, fam := range svc.Spec.IPFamilies {
			at := discoveryv1.AddressTypeIPv4
			if fam == corev1.IPv6Protocol {
				at = discoveryv1.AddressTypeIPv6
			}
			if counts[at] != ready {
				return false, fmt.Errorf("%s: %d ready", at, counts[at])
			}
		}
		return true, nil
	})
}

// readyEndpoints counts distinct ready endpoint addresses per address type.
func (l *Lab) readyEndpoints(ctx context.Context, svc string) (map[discoveryv1.AddressType]int, error) {
	list, err := l.client.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		return nil, fmt.Errorf("lab: list slices of %s: %w", svc, err)
	}
	seen := map[discoveryv1.AddressType]map[string]bool{}
	for _, s := range list.Items {
		if seen[s.AddressType] == nil {
			seen[s.AddressType] = map[string]bool{}
		}
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && *ep.Conditions.Ready && len(ep.Addresses) > 0 {
				seen[s.AddressType][ep.Addresses[0]] = true
			}
		}
	}
	out := map[discoveryv1.AddressType]int{}
	for t, m := range seen {
		out[t] = len(m)
	}
	return out, nil
}
