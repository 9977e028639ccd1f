package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// flakyState marks a test that failed, then passed on the one re-run of
// -rerun-failed: it counts as passed, and the table says so.
const flakyState = "flaky"

// rerunFailed runs the failed tests of first once more on the same
// cluster (results in <dir>/rerun) and returns first with those that
// passed then marked flaky. CI allows this one re-run (a 2-core machine
// shared with other runs times out a test now and then); a test that
// fails twice stays failed.
func (c *cluster) rerunFailed(ctx context.Context, e2eTest, ginkgo, dir string, o options, first *summary) (*summary, error) {
	names := first.failedNames()
	step("re-running the %d failed tests once (a pass now is reported as flaky)", len(names))
	rdir := filepath.Join(dir, "rerun")
	if err := os.MkdirAll(rdir, 0o755); err != nil {
		return first, err
	}
	o.focus = focusOf(names)
	second, err := c.runE2E(ctx, e2eTest, ginkgo, rdir, o)
	if err != nil {
		return first, fmt.Errorf("re-run of the failed tests: %w", err)
	}
	first.markFlaky(second)
	return first, nil
}

// focusOf is a ginkgo focus that selects exactly the named tests (their
// full texts, as the JUnit report names them).
func focusOf(names []string) string {
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = regexp.QuoteMeta(n)
	}
	return strings.Join(quoted, "|")
}

func (s *summary) failedNames() []string {
	var names []string
	for _, r := range s.results {
		if r.state == "FAILED" {
			names = append(names, r.name)
		}
	}
	return names
}

// markFlaky turns the failed tests of s that passed in rerun into flaky
// ones, with the re-run's seconds.
func (s *summary) markFlaky(rerun *summary) {
	passed := map[string]float64{}
	for _, r := range rerun.results {
		if r.state == "passed" {
			passed[r.name] = r.secs
		}
	}
	for i, r := range s.results {
		if secs, ok := passed[r.name]; ok && r.state == "FAILED" {
			s.results[i].state, s.results[i].secs = flakyState, secs
			s.failed--
			s.flaky++
		}
	}
}
