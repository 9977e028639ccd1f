package informers

import (
	"slices"
	"testing"
)

func packedSliceOf(t *testing.T, name, svc, rv string) *packedSlice {
	t.Helper()
	s := sliceObj(name, svc)
	s.ResourceVersion = rv
	return mustTransform(t, s).(*packedSlice)
}

// The index follows the handler's events: a slice is found under its
// Service, replaced by name, moved with its label, gone when deleted.
func TestSliceIndexFollowsTheEvents(t *testing.T) {
	x := newSliceIndex()
	names := func(svc string) []string {
		var out []string
		for _, p := range x.get(nn(svc)) {
			out = append(out, p.name+"@"+p.version)
		}
		slices.Sort(out)
		return out
	}
	steps := []struct {
		what  string
		apply func()
		a, b  []string
	}{
		{"two slices of a", func() { x.put(packedSliceOf(t, "s1", "a", "1")); x.put(packedSliceOf(t, "s2", "a", "1")) }, []string{"s1@1", "s2@1"}, nil},
		{"s1 updated", func() { x.put(packedSliceOf(t, "s1", "a", "2")) }, []string{"s1@2", "s2@1"}, nil},
		{"s2 relabelled to b", func() { x.remove(packedSliceOf(t, "s2", "a", "1")); x.put(packedSliceOf(t, "s2", "b", "3")) }, []string{"s1@2"}, []string{"s2@3"}},
		{"s1 deleted", func() { x.remove(packedSliceOf(t, "s1", "a", "2")) }, nil, []string{"s2@3"}},
		{"an unlabelled slice is not indexed", func() {
			s := sliceObj("s3", "a")
			s.Labels = nil
			x.put(mustTransform(t, s).(*packedSlice))
		}, nil, []string{"s2@3"}},
	}
	for _, st := range steps {
		st.apply()
		if a, b := names("a"), names("b"); !slices.Equal(a, st.a) || !slices.Equal(b, st.b) {
			t.Errorf("after %s: a=%v b=%v, want a=%v b=%v", st.what, a, b, st.a, st.b)
		}
	}
	if _, ok := x.m[nn("a")]; ok {
		t.Error("a Service without slices keeps an entry")
	}
}

// What get returned is never changed under the reader, who holds no lock.
func TestSliceIndexReadersKeepTheirView(t *testing.T) {
	x := newSliceIndex()
	x.put(packedSliceOf(t, "s1", "a", "1"))
	x.put(packedSliceOf(t, "s2", "a", "1"))
	view := x.get(nn("a"))
	x.put(packedSliceOf(t, "s1", "a", "2"))
	x.remove(packedSliceOf(t, "s2", "a", "1"))
	if view[0].version != "1" || len(view) != 2 || view[1].name != "s2" {
		t.Errorf("a reader's view changed: %v@%v, %d slices", view[0].name, view[0].version, len(view))
	}
}
