package proxier

import "testing"

func TestIDAllocator(t *testing.T) {
	a := newIDAllocator(4)
	get := func() uint32 {
		t.Helper()
		id, err := a.allocate()
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	for want := uint32(1); want <= 4; want++ {
		if got := get(); got != want {
			t.Fatalf("allocate = %d, want %d", got, want)
		}
	}
	if _, err := a.allocate(); err == nil {
		t.Fatal("allocate beyond max succeeded")
	}
	a.release(3)
	a.release(1)
	a.release(0)  // ignored
	a.release(99) // ignored
	if got := get(); got != 1 {
		t.Errorf("allocate after release = %d, want lowest freed 1", got)
	}
	if got := get(); got != 3 {
		t.Errorf("allocate = %d, want 3", got)
	}
	if a.inUse != 4 {
		t.Errorf("inUse = %d, want 4", a.inUse)
	}
}
