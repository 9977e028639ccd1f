package informers

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
)

func TestTrackerStats(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clk := clocktesting.NewFakeClock(t0)
	tr := NewTracker(clk)
	if s := tr.Stats(); s != (Stats{}) {
		t.Fatalf("fresh tracker stats = %+v", s)
	}
	a := types.NamespacedName{Namespace: "ns", Name: "a"}
	tr.ServiceChanged(a)
	clk.Step(time.Second)
	tr.EndpointsChanged(a)
	tr.EndpointsChanged(a) // same Service twice: pending once, counted twice
	clk.Step(time.Second)
	tr.NodeChanged()

	s := tr.Stats()
	want := Stats{ServiceChanges: 1, EndpointChanges: 2, NodeChanges: 1, LastChange: t0.Add(2 * time.Second), Oldest: t0}
	if s != want {
		t.Errorf("stats = %+v, want %+v", s, want)
	}
	if svc, eps := tr.Pending(); svc != 1 || eps != 1 {
		t.Errorf("pending = %d, %d; want 1, 1", svc, eps)
	}
	tr.Take()
	want.Oldest = time.Time{}
	if s := tr.Stats(); s != want {
		t.Errorf("after Take: stats = %+v, want totals kept and no oldest: %+v", s, want)
	}
}
