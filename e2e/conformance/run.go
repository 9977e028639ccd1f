package main

import (
	"bufio"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// runE2E runs e2e.test (through the ginkgo CLI when parallel) inside the
// control-plane namespace, with kubectl on its PATH (the tests exec into
// pods with it). Its output goes to <dir>/e2e.log, with one progress line
// per finished test on stdout.
func (c *cluster) runE2E(ctx context.Context, e2eTest, ginkgo, dir string, o options) (*summary, error) {
	kc, err := c.l.AdminKubeconfig()
	if err != nil {
		return nil, err
	}
	args := []string{
		"--kubeconfig=" + kc,
		"--provider=skeleton",
		"--report-dir=" + dir,
		"--kubectl-path=" + c.l.Binaries().Kubectl,
		"--dns-domain=cluster.local",
		// Else only ginkgo process 1 counts the nodes (setupSuite), and
		// tests landing on process 2 skip as "Requires at least 2 nodes
		// (not -1)": 7 of the wider suite did so in one run.
		fmt.Sprintf("--num-nodes=%d", len(c.l.Nodes())),
		"--ginkgo.focus=" + o.focus,
		"--ginkgo.no-color",
		"--ginkgo.v",
		"--ginkgo.timeout=" + o.timeout.String(),
	}
	if o.skip != "" {
		args = append(args, "--ginkgo.skip="+o.skip)
	}
	cmdline := append([]string{e2eTest}, args...)
	if o.parallel > 1 {
		// ginkgo's own flags before the binary, the suite's after "--".
		cmdline = []string{ginkgo, fmt.Sprintf("--procs=%d", o.parallel), "--focus=" + o.focus, "--no-color", "-v",
			"--timeout=" + o.timeout.String()}
		if o.skip != "" {
			cmdline = append(cmdline, "--skip="+o.skip)
		}
		cmdline = append(cmdline, e2eTest, "--")
		cmdline = append(cmdline, args[:6]...)
	}
	logf, err := os.Create(filepath.Join(dir, "e2e.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "# %s\n", strings.Join(cmdline, " "))
	cmd := exec.CommandContext(ctx, cmdline[0], cmdline[1:]...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(c.l.Binaries().Kubectl)+":"+os.Getenv("PATH"))
	start := time.Now()
	// Started from a thread inside the control-plane namespace: e2e.test,
	// kubectl and the test's own connections stay inside the lab.
	if err := c.l.ControlPlaneNS().Do(cmd.Start); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go followProgress(logf.Name(), done)
	runErr := cmd.Wait()
	close(done)
	step("e2e.test finished in %s (%v)", time.Since(start).Round(time.Second), runErr)
	sum, err := readJUnit(dir)
	if err != nil {
		return nil, fmt.Errorf("%v (e2e.test: %v; see %s)", err, runErr, logf.Name())
	}
	return sum, nil
}

// followProgress prints a line per finished test while e2e.test runs,
// from ginkgo's verbose output in the log ("• [12.3 seconds]" or
// "• [FAILED] [12.3 seconds]", then the test's name). The framework's
// progress-report URL is not used: parallel ginkgo processes do not post
// to it.
func followProgress(path string, done <-chan struct{}) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var passed, failed int
	var pending, partial string
	for {
		line, err := r.ReadString('\n')
		partial += line
		if err != nil {
			select {
			case <-done:
				return
			case <-time.After(time.Second):
				continue
			}
		}
		line, partial = strings.TrimRight(partial, "\n"), ""
		if pending != "" {
			if failedSpec := strings.HasPrefix(pending, "• [FAILED]") || strings.HasPrefix(pending, "• [TIMEDOUT]") ||
				strings.HasPrefix(pending, "• [PANICKED]"); failedSpec {
				failed++
				step("[%d passed, %d failed] FAILED %s", passed, failed, line)
			} else if !strings.HasPrefix(pending, "• [SKIPPED]") {
				passed++
				step("[%d passed, %d failed] passed %s %s", passed, failed, line, strings.TrimPrefix(pending, "• "))
			}
			pending = ""
			continue
		}
		if strings.HasPrefix(line, "• ") {
			pending = line
		}
	}
}

// junit is the part of the e2e framework's JUnit report we read.
type junit struct {
	Suites []struct {
		Cases []junitCase `xml:"testcase"`
	} `xml:"testsuite"`
	Cases []junitCase `xml:"testcase"` // a bare <testsuite> root
}

type junitCase struct {
	Name    string    `xml:"name,attr"`
	Time    float64   `xml:"time,attr"`
	Skipped *struct{} `xml:"skipped"`
	Failure *struct {
		Message string `xml:"message,attr"`
	} `xml:"failure"`
	Error *struct{} `xml:"error"`
}

type result struct {
	name, state string
	secs        float64
}

type summary struct {
	results                 []result
	passed, failed, skipped int
	flaky                   int // failed, then passed on the re-run (-rerun-failed)
}

func (s *summary) total() int { return s.passed + s.failed + s.flaky }

func readJUnit(dir string) (*summary, error) {
	files, _ := filepath.Glob(filepath.Join(dir, "junit*.xml"))
	if len(files) == 0 {
		return nil, fmt.Errorf("no JUnit report in %s", dir)
	}
	s := &summary{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var j junit
		if err := xml.Unmarshal(b, &j); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		cases := j.Cases
		for _, su := range j.Suites {
			cases = append(cases, su.Cases...)
		}
		for _, tc := range cases {
			// Suite setup nodes ([SynchronizedBeforeSuite], report
			// hooks) are not tests: listed only when they fail.
			setup := !strings.HasPrefix(tc.Name, "[It] ")
			switch {
			case setup && tc.Failure == nil && tc.Error == nil:
			case tc.Skipped != nil:
				s.skipped++
			case tc.Failure != nil || tc.Error != nil:
				s.failed++
				s.results = append(s.results, result{strings.TrimPrefix(tc.Name, "[It] "), "FAILED", tc.Time})
			default:
				s.passed++
				s.results = append(s.results, result{strings.TrimPrefix(tc.Name, "[It] "), "passed", tc.Time})
			}
		}
	}
	sort.Slice(s.results, func(i, j int) bool { return s.results[i].name < s.results[j].name })
	return s, nil
}

func (s *summary) print(w io.Writer) {
	fmt.Fprintf(w, "\n%-7s %8s  %s\n", "result", "seconds", "test")
	for _, r := range s.results {
		fmt.Fprintf(w, "%-7s %8.1f  %s\n", r.state, r.secs, r.name)
	}
	fmt.Fprintf(w, "\n%d passed, %d failed, %d skipped\n", s.passed, s.failed, s.skipped)
	if s.flaky > 0 {
		fmt.Fprintf(w, "%d flaky: failed then passed on the one re-run (%q rows above)\n", s.flaky, flakyState)
	}
}

func (s *summary) write(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	s.print(f)
	return f.Close()
}
