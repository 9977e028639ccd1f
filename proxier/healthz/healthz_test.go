package healthz

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/nftproxy/nftproxy/proxier"
)

const timeout = 60 * time.Second // kube-proxy: 2 × the 30 s sync period

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type fixture struct {
	t       *testing.T
	clk     *clocktesting.FakeClock
	s       *Server
	pending time.Time
	node    *v1.Node
	served  map[string]int
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{t: t, clk: clocktesting.NewFakeClock(t0), served: map[string]int{}}
	s, err := New(Config{
		Timeout: timeout, Clock: f.clk,
		Pending: func() time.Time { return f.pending },
		Node:    func() (*v1.Node, error) { return f.node, nil },
		OnServe: func(path string, code int) { f.served[path+" "+http.StatusText(code)]++ },
	})
	if err != nil {
		t.Fatal(err)
	}
	f.s = s
	return f
}

// get returns the status and decoded body of path.
func (f *fixture) get(path string) (int, map[string]any) {
	f.t.Helper()
	rr := httptest.NewRecorder()
	f.s.Handler().ServeHTTP(rr, httptest.NewRequest(http.MethodGet, path, nil))
	var body map[string]any
	if err := json.Unmarshal(rr.Body.Bytes(), &body); err != nil {
		f.t.Fatalf("%s: body %q is not JSON: %v", path, rr.Body.String(), err)
	}
	if ct := rr.Header().Get("Content-Type"); ct != "application/json" {
		f.t.Errorf("%s: Content-Type %q", path, ct)
	}
	return rr.Code, body
}

func (f *fixture) expect(healthz, livez int) {
	f.t.Helper()
	if code, body := f.get("/healthz"); code != healthz {
		f.t.Errorf("at %v: /healthz %d, want %d (%v)", f.clk.Since(t0), code, healthz, body)
	}
	if code, body := f.get("/livez"); code != livez {
		f.t.Errorf("at %v: /livez %d, want %d (%v)", f.clk.Since(t0), code, livez, body)
	}
}

// sync reports a sync that started d ago and ends now.
func (f *fixture) sync(err error, oldest time.Time) {
	f.s.SyncDone(proxier.SyncInfo{Start: f.clk.Now().Add(-time.Millisecond), Duration: time.Millisecond, Err: err, OldestChange: oldest})
}

func TestHealthyWhileStartingUp(t *testing.T) {
	f := newFixture(t)
	f.pending = t0 // the informers' initial lists are being recorded
	f.clk.Step(10 * timeout)
	f.expect(200, 200)
}

func TestFailingSyncsTurnUnhealthy(t *testing.T) {
	f := newFixture(t)
	f.s.Started()
	f.clk.Step(time.Second)
	f.sync(nil, time.Time{})
	f.expect(200, 200)

	// A change arrives; every sync programming it fails.
	changed := f.clk.Now()
	f.pending = changed
	f.clk.Step(time.Second)
	f.pending = time.Time{} // taken by the sync
	f.sync(errors.New("netlink: operation not permitted"), changed)
	f.clk.SetTime(changed.Add(timeout - time.Millisecond))
	f.sync(errors.New("netlink: operation not permitted"), changed)
	f.expect(200, 200)

	f.clk.SetTime(changed.Add(timeout))
	f.expect(503, 503)
	code, body := f.get("/healthz")
	if code != 503 || body["nodeEligible"] != true {
		t.Errorf("/healthz %d %v: want 503 with nodeEligible true", code, body)
	}
	if want := t0.Add(time.Second).String(); body["lastUpdated"] != want {
		t.Errorf("unhealthy lastUpdated %v, want the last success %s", body["lastUpdated"], want)
	}

	// Recovery.
	f.sync(nil, changed)
	f.expect(200, 200)
	if f.served["/healthz Service Unavailable"] == 0 || f.served["/livez OK"] == 0 {
		t.Errorf("answers not reported: %v", f.served)
	}
}

func TestFailingPeriodicSyncWithoutChanges(t *testing.T) {
	f := newFixture(t)
	f.s.Started()
	f.sync(nil, time.Time{})
	f.clk.Step(time.Minute)
	firstFailure := f.clk.Now()
	for range 5 {
		f.sync(errors.New("injected"), time.Time{})
		f.clk.Step(15 * time.Second)
	}
	f.clk.SetTime(firstFailure.Add(timeout))
	f.expect(503, 503)
}

func TestStuckFirstSync(t *testing.T) {
	f := newFixture(t)
	f.s.Started()
	f.clk.Step(timeout - time.Second)
	f.expect(200, 200)
	f.clk.Step(time.Second)
	f.expect(503, 503)
}

func TestChangeNeverTaken(t *testing.T) {
	f := newFixture(t)
	f.s.Started()
	f.sync(nil, time.Time{})
	f.pending = f.clk.Now() // recorded, but the sync loop is stuck
	f.clk.Step(timeout + time.Second)
	f.expect(503, 503)
}

func TestNodeBeingDeleted(t *testing.T) {
	for name, node := range map[string]*v1.Node{
		"deletion timestamp": {ObjectMeta: metav1.ObjectMeta{Name: "n", DeletionTimestamp: &metav1.Time{Time: t0}}},
		"autoscaler taint": {ObjectMeta: metav1.ObjectMeta{Name: "n"},
			Spec: v1.NodeSpec{Taints: []v1.Taint{{Key: ToBeDeletedTaint, Effect: v1.TaintEffectNoSchedule}}}},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			f.s.Started()
			f.sync(nil, time.Time{})
			f.node = node
			f.expect(503, 200)
			if _, body := f.get("/healthz"); body["nodeEligible"] != false {
				t.Errorf("nodeEligible %v, want false", body["nodeEligible"])
			}
			f.node = &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n"},
				Spec: v1.NodeSpec{Taints: []v1.Taint{{Key: "node.kubernetes.io/unschedulable", Effect: v1.TaintEffectNoSchedule}}}}
			f.expect(200, 200)
		})
	}
}

func TestNewRejectsZeroTimeout(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("New with zero timeout succeeded")
	}
}
