package informers

import (
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// Handlers only record keys: they run on the informers' delivery
// goroutines, and any real work there would delay every other event.

func serviceHandler(t *Tracker) cache.ResourceEventHandler {
	record := func(obj any) {
		if s, ok := unwrap(obj).(*packedService); ok {
			key := s.key()
			klog.V(4).InfoS("Service changed", "service", key)
			t.ServiceChanged(key)
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: record,
		UpdateFunc: func(oldObj, newObj any) {
			if !sameVersion(oldObj, newObj) {
				record(newObj)
			}
		},
		DeleteFunc: record,
	}
}

// sliceHandler also keeps the slices' index (sliceindex.go), before it
// records the change.
func sliceHandler(t *Tracker, idx *sliceIndex) cache.ResourceEventHandler {
	record := func(obj any) {
		s, ok := unwrap(obj).(*packedSlice)
		if !ok {
			return
		}
		key, ok := s.serviceKey()
		if !ok {
			// As upstream, logged at every change and not reported as an
			// Event: slices of other consumers (multi-cluster Services
			// label theirs multicluster.kubernetes.io/service-name) are
			// legitimately unlabelled.
			klog.InfoS("Ignoring EndpointSlice without the "+discovery.LabelServiceName+" label: it belongs to no Service", "endpointSlice", s.key())
			return
		}
		klog.V(4).InfoS("EndpointSlice changed", "endpointSlice", s.key(), "service", key)
		t.EndpointsChanged(key)
	}
	index := func(obj any, put bool) {
		if s, ok := unwrap(obj).(*packedSlice); ok {
			if put {
				idx.put(s)
			} else {
				idx.remove(s)
			}
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			index(obj, true)
			record(obj)
		},
		UpdateFunc: func(oldObj, newObj any) {
			if sameVersion(oldObj, newObj) {
				return
			}
			// A slice relabelled to another Service changes both. Else one
			// record: a second wake-up arriving after the proxier took the
			// first would cost a sync with nothing to do, and a token of
			// the sync burst (a lone change then waited ~0.3 s at the
			// default min-sync-period, docs/performance.md).
			relabelled := sliceKeyOf(oldObj) != sliceKeyOf(newObj)
			if relabelled {
				index(oldObj, false)
			}
			index(newObj, true)
			if relabelled {
				record(oldObj)
			}
			record(newObj)
		},
		DeleteFunc: func(obj any) {
			index(obj, false)
			record(obj)
		},
	}
}

func nodeHandler(t *Tracker, nodeName string) cache.ResourceEventHandler {
	record := func(obj any) {
		// The field selector already limits the watch to this node; the
		// check guards against clients that do not honour it.
		if n, ok := unwrap(obj).(*v1.Node); ok && n.Name == nodeName {
			klog.V(4).InfoS("Node changed", "node", nodeName)
			t.NodeChanged()
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: record,
		UpdateFunc: func(oldObj, newObj any) {
			if !sameVersion(oldObj, newObj) {
				record(newObj)
			}
		},
		DeleteFunc: record,
	}
}

// unwrap returns the last known object of a delete seen only after a
// relist.
func unwrap(obj any) any {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return d.Obj
	}
	return obj
}

// sameVersion reports an update that changes nothing (a resync).
func sameVersion(oldObj, newObj any) bool {
	type versioned interface{ GetResourceVersion() string }
	o, ok1 := oldObj.(versioned)
	n, ok2 := newObj.(versioned)
	return ok1 && ok2 && o.GetResourceVersion() != "" && o.GetResourceVersion() == n.GetResourceVersion()
}

// sliceKeyOf is the Service of a slice (zero when none).
func sliceKeyOf(obj any) types.NamespacedName {
	if s, ok := unwrap(obj).(*packedSlice); ok {
		key, _ := s.serviceKey()
		return key
	}
	return types.NamespacedName{}
}
