package events

import (
	"context"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
)

// Component is the source component of nftproxy's Events.
const Component = "nftproxy"

// Correlator settings: per involved object, a burst of 10 events, then one
// every 5 minutes; repeats are aggregated into one Event with a count.
var correlatorOptions = record.CorrelatorOptions{BurstSize: 10, QPS: 1.0 / 300}

// StartBroadcaster sends Events through client until ctx ends (or the
// returned broadcaster is shut down) and returns a recorder for nodeName.
func StartBroadcaster(ctx context.Context, client kubernetes.Interface, nodeName string) (record.EventBroadcaster, record.EventRecorder) {
	b := record.NewBroadcaster(record.WithContext(ctx), record.WithCorrelatorOptions(correlatorOptions))
	b.StartStructuredLogging(klog.Level(3))
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	rec := b.NewRecorder(scheme.Scheme, v1.EventSource{Component: Component, Host: nodeName})
	return b, rec
}
