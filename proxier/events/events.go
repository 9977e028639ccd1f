// Package events turns what the proxier reports into Kubernetes Events:
// malformed input (model.Rejection with Invalid set) as Warnings on the
// offending Service or EndpointSlice, and sync failures as Warnings on this
// node's Node. Events go through client-go's broadcaster, whose correlator
// aggregates repeats and whose spam filter rate-limits each object; on top
// of that the Recorder drops an identical event repeated within DedupWindow.
package events

import (
	"fmt"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/nftproxy/nftproxy/proxier"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// Event reasons.
const (
	ReasonSyncFailed    = "SyncProxyRulesFailed"
	ReasonSyncRecovered = "SyncProxyRulesRecovered"
)

// DedupWindow is how long an identical rejection event is not repeated:
// the proxier reconverts a Service on every change of it or its slices.
const DedupWindow = 10 * time.Minute

// maxMessage bounds event messages (the API limit is 1 KiB).
const maxMessage = 1000

// Recorder reports to an EventRecorder. Safe for concurrent use.
type Recorder struct {
	rec     record.EventRecorder
	node    *v1.ObjectReference
	service func(types.NamespacedName) (*v1.Service, error)
	clock   clock.PassiveClock

	mu      sync.Mutex
	seen    map[string]time.Time // rejection key -> last emitted
	failing string               // message of the current sync failure
}

// New returns a Recorder for nodeName. service, if set, looks Services up
// (the informer cache) to give their Events the object's UID, which
// `kubectl describe` needs to show them. clk defaults to the real clock.
func New(rec record.EventRecorder, nodeName string, service func(types.NamespacedName) (*v1.Service, error), clk clock.PassiveClock) *Recorder {
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Recorder{
		rec: rec,
		// As kubelet and kube-proxy do: Node events carry the name as UID.
		node:    &v1.ObjectReference{Kind: "Node", APIVersion: "v1", Name: nodeName, UID: types.UID(nodeName)},
		service: service,
		clock:   clk,
		seen:    map[string]time.Time{},
	}
}

// Reject records an Event for malformed input; skipped-by-design objects
// (ExternalName, headless, FQDN slices) get none. Use it as
// proxier.Config.OnReject: it does not block.
func (r *Recorder) Reject(rej model.Rejection) {
	if !rej.Invalid {
		return
	}
	key := rej.String()
	now := r.clock.Now()
	r.mu.Lock()
	last, dup := r.seen[key]
	dup = dup && now.Sub(last) < DedupWindow
	if !dup {
		r.seen[key] = now
		r.prune(now)
	}
	r.mu.Unlock()
	if dup {
		return
	}
	ref := r.reference(rej)
	klog.V(4).InfoS("Recording event", "object", klog.KRef(rej.Namespace, rej.Name), "kind", rej.Kind, "reason", rej.Reason)
	r.rec.Event(ref, v1.EventTypeWarning, rej.Reason, truncate("Not programmed by nftproxy: "+rej.Message))
}

// prune forgets expired keys (with r.mu held) so the map stays bounded.
func (r *Recorder) prune(now time.Time) {
	if len(r.seen) < 1024 {
		return
	}
	for k, t := range r.seen {
		if now.Sub(t) >= DedupWindow {
			delete(r.seen, k)
		}
	}
}

func (r *Recorder) reference(rej model.Rejection) *v1.ObjectReference {
	ref := &v1.ObjectReference{Kind: rej.Kind, Namespace: rej.Namespace, Name: rej.Name}
	switch rej.Kind {
	case "Service":
		ref.APIVersion = "v1"
		if r.service != nil {
			if svc, err := r.service(types.NamespacedName{Namespace: rej.Namespace, Name: rej.Name}); err == nil && svc != nil {
				ref.UID, ref.ResourceVersion = svc.UID, svc.ResourceVersion
			}
		}
	case "EndpointSlice":
		ref.APIVersion = "discovery.k8s.io/v1"
	}
	return ref
}

// SyncDone records an Event on the Node when syncs start failing (or fail
// differently), and one when they recover. Use it from
// proxier.Config.OnSync.
func (r *Recorder) SyncDone(info proxier.SyncInfo) {
	r.mu.Lock()
	prev := r.failing
	if info.Err != nil {
		r.failing = info.Err.Error()
	} else {
		r.failing = ""
	}
	now := r.failing
	r.mu.Unlock()
	switch {
	case now != "" && now != prev:
		r.rec.Event(r.node, v1.EventTypeWarning, ReasonSyncFailed,
			truncate(fmt.Sprintf("Programming nftables failed (full=%t), will retry: %s", info.Full, now)))
	case now == "" && prev != "":
		r.rec.Event(r.node, v1.EventTypeNormal, ReasonSyncRecovered, "Programming nftables succeeded again")
	}
}

func truncate(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	return s[:maxMessage-3] + "..."
}
