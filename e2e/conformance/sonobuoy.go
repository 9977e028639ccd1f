package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/nftproxy/nftproxy/e2e/lab"
)

// runSonobuoy is the users' way (-via sonobuoy): `sonobuoy run --plugin
// e2e` with the local images, `sonobuoy retrieve`, `sonobuoy results`.
// Sonobuoy's aggregator and the e2e plugin run as pods, so the e2e tests
// reach the API server through the kubernetes Service, i.e. through the
// proxy under test. The table is read from the plugin's JUnit report.
func (c *cluster) runSonobuoy(ctx context.Context, kit lab.SonobuoyKit, dir string, o options) (*summary, error) {
	kc, err := c.l.AdminKubeconfig()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "sonobuoy.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	sono := func(args ...string) (string, error) {
		if args[0] != "results" { // reads only the tarball: no --kubeconfig flag
			args = append(args[:len(args):len(args)], "--kubeconfig", kc)
		}
		cmd := exec.CommandContext(ctx, kit.CLI, args...)
		cmd.Dir = dir
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		fmt.Fprintf(logf, "# sonobuoy %s\n", strings.Join(args, " "))
		// From the control-plane namespace, where the API server is.
		err := c.l.ControlPlaneNS().Do(cmd.Start)
		if err == nil {
			err = cmd.Wait()
		}
		fmt.Fprintf(logf, "%s\n", out.String())
		if err != nil {
			return out.String(), fmt.Errorf("sonobuoy %s: %w (see %s)", args[0], err, logf.Name())
		}
		return out.String(), nil
	}
	config := filepath.Join(dir, "sonobuoy-config.json")
	if err := os.WriteFile(config, []byte(aggregatorConfig), 0o644); err != nil {
		return nil, err
	}
	// --config first: sonobuoy refuses it after flags that change the
	// configuration (--timeout).
	args := []string{"run", "--config", config, "--plugin", "e2e", "--e2e-focus", o.focus,
		"--sonobuoy-image", lab.SonobuoyImage, "--kube-conformance-image", lab.ConformanceImage,
		"--image-pull-policy", "IfNotPresent", "--wait", "--wait-output", "progress",
		"--timeout", strconv.Itoa(int(o.timeout / time.Second))}
	if o.skip != "" {
		args = append(args, "--e2e-skip", o.skip)
	}
	if o.parallel > 1 {
		// The conformance image's go-runner knows only "true" (ginkgo
		// -p: one process per CPU, 2 here); a number runs the tests
		// serially, as the 23:57 run did with E2E_PARALLEL=2 (6 min).
		args = append(args, "--plugin-env", "e2e.E2E_PARALLEL=true")
	}
	start := time.Now()
	if _, err := sono(args...); err != nil {
		return nil, err
	}
	step("sonobuoy run finished in %s", time.Since(start).Round(time.Second))
	out, err := sono("retrieve", dir)
	if err != nil {
		return nil, err
	}
	tarball := strings.TrimSpace(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:])
	if !filepath.IsAbs(tarball) {
		tarball = filepath.Join(dir, tarball)
	}
	step("sonobuoy retrieve: %s", tarball)
	res, err := sono("results", tarball)
	if err != nil {
		return nil, err
	}
	step("sonobuoy results:\n%s", strings.TrimSpace(res))
	if err := os.WriteFile(filepath.Join(dir, "sonobuoy-results.txt"), []byte(res), 0o644); err != nil {
		return nil, err
	}
	extracted := filepath.Join(dir, "sonobuoy")
	if err := os.MkdirAll(extracted, 0o755); err != nil {
		return nil, err
	}
	if out, err := exec.CommandContext(ctx, "tar", "-xzf", tarball, "-C", extracted).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("extracting %s: %w: %s", tarball, err, out)
	}
	sum, err := readJUnit(filepath.Join(extracted, "plugins", "e2e", "results", "global"))
	if err != nil {
		return nil, err
	}
	if status := pluginStatus(res); status != "passed" {
		return sum, fmt.Errorf("sonobuoy results: plugin e2e status %q, want passed", status)
	}
	if _, err := sono("delete", "--wait"); err != nil {
		return sum, err
	}
	return sum, nil
}

// aggregatorConfig makes the workers report to the aggregator through
// its Service's name. By default the aggregator advertises
// "[<pod IP>]:8080" (brackets even for IPv4), and the worker, built with
// Go >= 1.25.2 (net/url accepts only IPv6 inside brackets), refuses that
// URL ("parsing AggregatorURL: ... invalid IP-literal") and the plugin
// fails before its first test. Upstream's release binaries, built with
// an older Go, accept it. The Service name also takes the results
// through CoreDNS and the proxy under test.
const aggregatorConfig = `{"Server": {"advertiseaddress": "sonobuoy-aggregator.sonobuoy.svc:8080"}}`

var statusLine = regexp.MustCompile(`(?m)^Status:\s*(\S+)`)

// pluginStatus is the "Status:" of `sonobuoy results` (one plugin).
func pluginStatus(results string) string {
	if m := statusLine.FindStringSubmatch(results); m != nil {
		return m[1]
	}
	return ""
}
