package informers

import (
	"fmt"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
)

// Labels that take a Service (and its slices, which inherit its labels)
// away from us.
const (
	// LabelServiceProxyName names the proxy that owns a Service.
	LabelServiceProxyName = "service.kubernetes.io/service-proxy-name"
	// LabelHeadless marks headless Services: nothing to proxy.
	LabelHeadless = "service.kubernetes.io/headless"
)

// LabelSelector selects the Services and EndpointSlices this proxy owns.
// With an empty proxyName it is upstream kube-proxy's selector: objects
// claimed by no other proxy. With a name, only objects claiming this proxy.
// Headless objects are always excluded.
func LabelSelector(proxyName string) (labels.Selector, error) {
	var owner *labels.Requirement
	var err error
	if proxyName == "" {
		owner, err = labels.NewRequirement(LabelServiceProxyName, selection.DoesNotExist, nil)
	} else {
		owner, err = labels.NewRequirement(LabelServiceProxyName, selection.Equals, []string{proxyName})
	}
	if err != nil {
		return nil, fmt.Errorf("service proxy name %q: %w", proxyName, err)
	}
	headless, err := labels.NewRequirement(LabelHeadless, selection.DoesNotExist, nil)
	if err != nil {
		return nil, fmt.Errorf("headless requirement: %w", err)
	}
	return labels.NewSelector().Add(*owner, *headless), nil
}
