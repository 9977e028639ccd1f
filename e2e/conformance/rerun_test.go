package main

import (
	"regexp"
	"strings"
	"testing"
)

func TestFocusOfSelectsExactlyTheNamedTests(t *testing.T) {
	names := []string{
		"[sig-network] DNS should provide DNS for services [Conformance]",
		"[sig-network] Services should be able to switch session affinity for NodePort service [LinuxOnly] [Conformance]",
	}
	re, err := regexp.Compile(focusOf(names))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if !re.MatchString(n) {
			t.Errorf("focus %q does not select %q", re, n)
		}
	}
	for _, other := range []string{
		"[sig-network] DNS should provide DNS for the cluster [Conformance]",
		"[sig-network] Services should have session affinity work for NodePort service [LinuxOnly] [Conformance]",
	} {
		if re.MatchString(other) {
			t.Errorf("focus %q also selects %q", re, other)
		}
	}
}

func TestRerunMarksOnlyTestsThatPassedThenAsFlaky(t *testing.T) {
	first := &summary{passed: 1, failed: 2, results: []result{
		{"A passes", "passed", 1},
		{"B fails then passes", "FAILED", 2},
		{"C fails twice", "FAILED", 3},
	}}
	rerun := &summary{passed: 1, failed: 1, results: []result{
		{"B fails then passes", "passed", 4},
		{"C fails twice", "FAILED", 5},
	}}
	if got := first.failedNames(); strings.Join(got, ",") != "B fails then passes,C fails twice" {
		t.Fatalf("failed names %q", got)
	}
	first.markFlaky(rerun)
	if first.passed != 1 || first.failed != 1 || first.flaky != 1 || first.total() != 3 {
		t.Fatalf("passed %d failed %d flaky %d total %d; want 1/1/1 of 3", first.passed, first.failed, first.flaky, first.total())
	}
	var b strings.Builder
	first.print(&b)
	for _, want := range []string{
		"flaky        4.0  B fails then passes",
		"FAILED       3.0  C fails twice",
		"1 passed, 1 failed, 0 skipped\n1 flaky: failed then passed on the one re-run",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, b.String())
		}
	}
}
