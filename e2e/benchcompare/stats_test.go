package main

import "testing"

// Medians average the two middle values of an even sample; other
// quantiles take the nearest rank, so p99 of 20 samples is the largest
// and p99 of 1,000 is the 990th.
func TestQuantile(t *testing.T) {
	thousand := make([]float64, 1000)
	for i := range thousand {
		thousand[i] = float64(1000 - i) // unsorted on purpose
	}
	twenty := make([]float64, 20)
	for i := range twenty {
		twenty[i] = float64(i + 1)
	}
	for _, c := range []struct {
		name string
		got  float64
		want float64
	}{
		{"median of 1,2,3,4", median([]float64{4, 1, 3, 2}), 2.5},
		{"median of 3,1,2", median([]float64{3, 1, 2}), 2},
		{"p99 of 20", p99(twenty), 20},
		{"p99 of 1,000", p99(thousand), 990},
		{"median of 1,000", median(thousand), 500.5},
		{"empty", median(nil), 0},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
	if got := observed([]float64{-1, 3, -1, 4}); len(got) != 2 || got[0] != 3 || got[1] != 4 {
		t.Errorf("observed: got %v", got)
	}
}
