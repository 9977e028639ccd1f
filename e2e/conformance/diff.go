package main

import (
	"fmt"
	"io"
	"sort"
)

// diffRuns is `conformance diff A B`: the tests of two results
// directories side by side (e.g. nftproxy's and kube-proxy's runs of the
// same focus), tests with different outcomes first, each with its
// seconds. A test missing from one run (skipped there, or not selected)
// shows as "-".
func diffRuns(w io.Writer, nameA, dirA, nameB, dirB string) (differ int, err error) {
	a, err := readJUnit(dirA)
	if err != nil {
		return 0, err
	}
	b, err := readJUnit(dirB)
	if err != nil {
		return 0, err
	}
	byName := func(s *summary) map[string]result {
		m := map[string]result{}
		for _, r := range s.results {
			m[r.name] = r
		}
		return m
	}
	ra, rb := byName(a), byName(b)
	names := map[string]bool{}
	for n := range ra {
		names[n] = true
	}
	for n := range rb {
		names[n] = true
	}
	type row struct {
		a, b result
		name string
	}
	var same, diff []row
	for n := range names {
		r := row{ra[n], rb[n], n}
		if r.a.state == r.b.state {
			same = append(same, r)
		} else {
			diff = append(diff, r)
		}
	}
	for _, rs := range [][]row{diff, same} {
		sort.Slice(rs, func(i, j int) bool { return rs[i].name < rs[j].name })
	}
	// Seconds beside each state: a test much slower with one proxy is a
	// difference worth a look even when both pass.
	cell := func(r result) string {
		if r.state == "" {
			return fmt.Sprintf("%-10s %6s", "-", "")
		}
		return fmt.Sprintf("%-10s %6.1f", r.state, r.secs)
	}
	fmt.Fprintf(w, "%-17s  %-17s  %s\n", nameA+" (s)", nameB+" (s)", "test")
	for _, r := range append(diff, same...) {
		fmt.Fprintf(w, "%s  %s  %s\n", cell(r.a), cell(r.b), r.name)
	}
	fmt.Fprintf(w, "\n%s: %d passed, %d failed; %s: %d passed, %d failed; %d tests differ\n",
		nameA, a.passed, a.failed, nameB, b.passed, b.failed, len(diff))
	return len(diff), nil
}
