package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A JUnit report as the e2e framework writes it (--report-dir): setup
// nodes, passed, failed and skipped specs.
const junitSample = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="5" disabled="1" errors="0" failures="1" time="12.5">
  <testsuite name="Kubernetes e2e suite" package="/" tests="5" disabled="1" skipped="0" errors="0" failures="1" time="12.5">
    <testcase name="[SynchronizedBeforeSuite]" classname="Kubernetes e2e suite" status="passed" time="0.04"></testcase>
    <testcase name="[It] [sig-network] Services should serve a basic endpoint from pods [Conformance]" classname="Kubernetes e2e suite" status="passed" time="11.0"></testcase>
    <testcase name="[It] [sig-network] DNS should provide DNS for services [Conformance]" classname="Kubernetes e2e suite" status="failed" time="1.5">
      <failure message="timed out" type="failed">boom</failure>
    </testcase>
    <testcase name="[It] [sig-storage] something" classname="Kubernetes e2e suite" status="skipped" time="0">
      <skipped message="skipped"></skipped>
    </testcase>
    <testcase name="[ReportAfterSuite] Kubernetes e2e suite report" classname="Kubernetes e2e suite" status="passed" time="0"></testcase>
  </testsuite>
</testsuites>`

func TestReadJUnit(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "junit_01.xml"), []byte(junitSample), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := readJUnit(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.passed != 1 || s.failed != 1 || s.skipped != 1 || len(s.results) != 2 {
		t.Fatalf("passed %d failed %d skipped %d results %v; want 1/1/1 and 2 rows", s.passed, s.failed, s.skipped, s.results)
	}
	var b strings.Builder
	s.print(&b)
	for _, want := range []string{"FAILED       1.5  [sig-network] DNS should provide DNS for services [Conformance]",
		"passed      11.0  [sig-network] Services should serve a basic endpoint from pods [Conformance]",
		"\n1 passed, 1 failed, 1 skipped\n"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, b.String())
		}
	}
	if _, err := readJUnit(t.TempDir()); err == nil {
		t.Error("no report: want an error")
	}
}
