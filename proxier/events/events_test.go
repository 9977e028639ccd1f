package events

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/nftproxy/nftproxy/proxier"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// drain returns the events recorded since the last drain.
func drain(c *captureRecorder) []string {
	out := c.events
	c.events = nil
	return out
}

// captureRecorder records events with their whole object reference.
type captureRecorder struct{ events []string }

func (c *captureRecorder) Event(obj runtime.Object, typ, reason, msg string) {
	ref := obj.(*v1.ObjectReference)
	c.events = append(c.events, fmt.Sprintf("%s %s %s [Kind=%s APIVersion=%s Namespace=%s Name=%s UID=%s]",
		typ, reason, msg, ref.Kind, ref.APIVersion, ref.Namespace, ref.Name, ref.UID))
}

func (c *captureRecorder) Eventf(obj runtime.Object, typ, reason, format string, args ...any) {
	c.Event(obj, typ, reason, fmt.Sprintf(format, args...))
}

func (c *captureRecorder) AnnotatedEventf(obj runtime.Object, _ map[string]string, typ, reason, format string, args ...any) {
	c.Eventf(obj, typ, reason, format, args...)
}

func newFake() *captureRecorder { return &captureRecorder{} }

func TestRejectEvents(t *testing.T) {
	fr := newFake()
	clk := clocktesting.NewFakeClock(time.Now())
	svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", UID: "uid-web"}}
	lookup := func(k types.NamespacedName) (*v1.Service, error) {
		if k.Name == "web" {
			return svc, nil
		}
		return nil, nil
	}
	r := New(fr, "node-a", lookup, clk)
	bad := model.Rejection{Kind: "Service", Namespace: "ns", Name: "web", Invalid: true, Reason: "UnknownProtocol", Message: `port "x": unknown protocol "FOO"`}

	r.Reject(model.Rejection{Kind: "Service", Namespace: "ns", Name: "ext", Reason: "ExternalName", Message: "by design"})
	r.Reject(bad)
	r.Reject(bad) // the proxier reconverts on every change: no repeat
	got := drain(fr)
	if len(got) != 1 {
		t.Fatalf("events %q, want exactly one", got)
	}
	for _, want := range []string{"Warning UnknownProtocol", `unknown protocol "FOO"`, "Kind=Service", "Namespace=ns", "Name=web", "UID=uid-web", "APIVersion=v1"} {
		if !strings.Contains(got[0], want) {
			t.Errorf("event %q lacks %q", got[0], want)
		}
	}

	clk.Step(DedupWindow)
	r.Reject(bad)
	slice := model.Rejection{Kind: "EndpointSlice", Namespace: "ns", Name: "web-abc", Invalid: true, Reason: "InvalidEndpoint", Message: "bad address"}
	r.Reject(slice)
	got = drain(fr)
	if len(got) != 2 || !strings.Contains(got[1], "Kind=EndpointSlice") || !strings.Contains(got[1], "APIVersion=discovery.k8s.io/v1") {
		t.Errorf("after the dedup window: events %q, want the Service event again and one on the EndpointSlice", got)
	}
}

func TestSyncEvents(t *testing.T) {
	fr := newFake()
	r := New(fr, "node-a", nil, nil)
	fail := proxier.SyncInfo{Full: true, Err: errors.New("netlink receive: operation not permitted")}
	r.SyncDone(proxier.SyncInfo{})
	r.SyncDone(fail)
	r.SyncDone(fail) // still failing the same way: no new event
	r.SyncDone(proxier.SyncInfo{Full: true, Err: errors.New("netlink receive: no buffer space")})
	r.SyncDone(proxier.SyncInfo{})
	r.SyncDone(proxier.SyncInfo{})
	got := drain(fr)
	want := []string{
		"Warning SyncProxyRulesFailed Programming nftables failed (full=true), will retry: netlink receive: operation not permitted",
		"Warning SyncProxyRulesFailed Programming nftables failed (full=true), will retry: netlink receive: no buffer space",
		"Normal SyncProxyRulesRecovered Programming nftables succeeded again",
	}
	if len(got) != len(want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) || !strings.Contains(got[i], "Kind=Node") || !strings.Contains(got[i], "UID=node-a") {
			t.Errorf("event %d: %q, want %q on Node node-a", i, got[i], want[i])
		}
	}
}

func TestTruncate(t *testing.T) {
	if s := truncate(strings.Repeat("x", 5000)); len(s) != maxMessage || !strings.HasSuffix(s, "...") {
		t.Errorf("truncate: len %d", len(s))
	}
}
