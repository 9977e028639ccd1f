package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nftproxy/nftproxy/e2e/lab"
)

// The differential run gives kube-proxy nftproxy's shipped configuration
// file, so the two runs differ only in the proxy.
func TestKubeProxyGetsTheShippedConfig(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	conf, err := shippedConfig(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kind: KubeProxyConfiguration", "mode: nftables", "healthzBindAddress: 0.0.0.0:10256"} {
		if !strings.Contains(conf, want) {
			t.Errorf("config.conf lacks %q:\n%s", want, conf)
		}
	}
	if !strings.Contains(kubeProxyYAML, "@CONFIG@") || !strings.Contains(kubeProxyYAML, "@IMAGE@") {
		t.Error("kube-proxy.yaml lost its placeholders")
	}
	if !strings.HasPrefix(lab.KubeProxyImage, "localhost/") {
		t.Errorf("kube-proxy image %q would be pulled", lab.KubeProxyImage)
	}
}

// `sonobuoy results` (report mode) of v0.57.3, one plugin.
func TestPluginStatus(t *testing.T) {
	for out, want := range map[string]string{
		"Plugin: e2e\nStatus: passed\nTotal: 7214\nPassed: 47\nFailed: 0\nSkipped: 7167\n": "passed",
		"Plugin: e2e\nStatus: failed\nTotal: 7214\nPassed: 46\nFailed: 1\n":                "failed",
		"no plugin\n": "",
	} {
		if got := pluginStatus(out); got != want {
			t.Errorf("pluginStatus(%q) = %q, want %q", out, got, want)
		}
	}
}

func TestDiffRunsListsDifferencesFirst(t *testing.T) {
	dirA, dirB := t.TempDir(), t.TempDir()
	writeJUnit := func(dir, dnsState string) {
		t.Helper()
		x := strings.Replace(junitSample, `status="failed" time="1.5">
      <failure message="timed out" type="failed">boom</failure>
    </testcase>`, dnsState, 1)
		if err := os.WriteFile(filepath.Join(dir, "junit_01.xml"), []byte(x), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeJUnit(dirA, `status="failed" time="1.5">
      <failure message="timed out" type="failed">boom</failure>
    </testcase>`)
	writeJUnit(dirB, `status="passed" time="1.5"></testcase>`)
	var out strings.Builder
	n, err := diffRuns(&out, "nftproxy", dirA, "kube-proxy", dirB)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out.String(), "\n")
	if n != 1 || lines[1] != "FAILED        1.5  passed        1.5  [sig-network] DNS should provide DNS for services [Conformance]" {
		t.Errorf("%d differences:\n%s", n, out.String())
	}
}
