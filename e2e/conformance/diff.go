package main

import (
	"fmt"
	"io"
	"sort"
)

// diffRuns is `conformance diff A B`: the tests of two results
// directories side by side (e.g. nftproxy's and kube-proxy's runs of the
// same focus), tests with different outcomes first. A test missing from
// one run (skipped there, or not selected) shows as "-".
func diffRuns(w io.Writer, nameA, dirA, nameB, dirB string) (differ int, err error) {
	a, err := readJUnit(dirA)
	if err != nil {
		return 0, err
	}
	b, err := readJUnit(dirB)
	if err != nil {
		return 0, err
	}
	state := func(s *summary) map[string]string {
		m := map[string]string{}
		for _, r := range s.results {
			m[r.name] = r.state
		}
		return m
	}
	sa, sb := state(a), state(b)
	names := map[string]bool{}
	for n := range sa {
		names[n] = true
	}
	for n := range sb {
		names[n] = true
	}
	type row struct{ a, b, name string }
	var same, diff []row
	for n := range names {
		r := row{sa[n], sb[n], n}
		if r.a == "" {
			r.a = "-"
		}
		if r.b == "" {
			r.b = "-"
		}
		if r.a == r.b {
			same = append(same, r)
		} else {
			diff = append(diff, r)
		}
	}
	for _, rs := range [][]row{diff, same} {
		sort.Slice(rs, func(i, j int) bool { return rs[i].name < rs[j].name })
	}
	fmt.Fprintf(w, "%-10s %-10s  %s\n", nameA, nameB, "test")
	for _, r := range append(diff, same...) {
		fmt.Fprintf(w, "%-10s %-10s  %s\n", r.a, r.b, r.name)
	}
	fmt.Fprintf(w, "\n%s: %d passed, %d failed; %s: %d passed, %d failed; %d tests differ\n",
		nameA, a.passed, a.failed, nameB, b.passed, b.failed, len(diff))
	return len(diff), nil
}
