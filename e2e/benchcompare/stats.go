package main

import "slices"

// median and p99 of a sample (nearest rank; with 20 samples p99 is the
// maximum).
func median(v []float64) float64 { return quantile(v, 0.5) }
func p99(v []float64) float64    { return quantile(v, 0.99) }

func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if q == 0.5 && len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	i := int(q*float64(len(s))+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

// observed drops the -1 entries (nothing observed) of a sample.
func observed(v []float64) []float64 {
	var out []float64
	for _, x := range v {
		if x >= 0 {
			out = append(out, x)
		}
	}
	return out
}
