package e2e

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nftproxy/nftproxy/e2e/lab"
)

// TestConfigFileHealthAndMetrics runs every node's nftproxy with
// upstream's default KubeProxyConfiguration (mode nftables) as --config:
// it programs a Service that answers, serves /healthz and /livez (200) on
// 0.0.0.0:10256 and /metrics on 127.0.0.1:10249 with syncs counted.
func TestConfigFileHealthAndMetrics(t *testing.T) {
	root, err := lab.FindRepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(root, "docs", "kube-proxy-default-config.yaml")
	l := startLab(t, lab.Options{Prefix: "nftops-", Nodes: 2, ProxyArgs: []string{"--config=" + conf}})
	ctx := ctxFor(t)
	if _, err := l.CreateDeployment(ctx, "client", 1, "node-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateDeployment(ctx, "web", 1, "node-2"); err != nil {
		t.Fatal(err)
	}
	svc, err := l.CreateService(ctx, lab.ServiceFor("web", "web", false))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.WaitForEndpoints(ctx, "web", 1); err != nil {
		t.Fatal(err)
	}
	s := &clusterIPSuite{l: l, web: svc}
	if ans := s.firstAnswer(t, client, vip(svc, false, 80), lab.TCP, 20*time.Second); !strings.HasPrefix(ans.Pod, "web-") {
		t.Errorf("answered by %q, want a web pod", ans.Pod)
	}

	ns, err := l.NS("node-1")
	if err != nil {
		t.Fatal(err)
	}
	get := func(url string) (int, string) {
		t.Helper()
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				var conn net.Conn
				err := ns.Do(func() error {
					var err error
					conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
					return err
				})
				return conn, err
			}}}
		resp, err := c.Get(url)
		if err != nil {
			t.Fatalf("GET %s in node-1: %v", url, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	for _, path := range []string{"/healthz", "/livez"} {
		if code, body := get("http://127.0.0.1:10256" + path); code != 200 || !strings.Contains(body, `"lastUpdated"`) {
			t.Errorf("%s: %d %s", path, code, body)
		}
	}
	code, body := get("http://127.0.0.1:10249/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{"kubeproxy_sync_proxy_rules_duration_seconds_count", "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
		"kubeproxy_network_programming_duration_seconds_count", `kubeproxy_proxy_healthz_total{code="200"}`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(body, "kubeproxy_sync_proxy_rules_duration_seconds_count 0\n") {
		t.Error("no sync counted")
	}
	if code, _ := get("http://127.0.0.1:10249/proxyMode"); code != 200 {
		t.Errorf("/proxyMode: %d", code)
	}
	if log := l.ProxyLog("node-1", 200); strings.Contains(log, "is not supported") {
		t.Errorf("upstream's default configuration was warned about:\n%s", log)
	}
}
