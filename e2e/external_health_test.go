package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/nftproxy/nftproxy/e2e/lab"
)

// healthBody is the health-check node port's JSON answer.
type healthBody struct {
	Service struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"service"`
	LocalEndpoints      int  `json:"localEndpoints"`
	ServiceProxyHealthy bool `json:"serviceProxyHealthy"`
}

// The loc Service's healthCheckNodePort: 200 with the local endpoint
// count on nodes with local endpoints, 503 on node-1; node-3 flips to
// 503 when its only endpoint goes.
func (s *externalSuite) healthCheckNodePort(t *testing.T) {
	hc := uint16(s.loc.Spec.HealthCheckNodePort)
	if hc == 0 {
		t.Fatalf("Service loc (LoadBalancer, ETP Local) has no healthCheckNodePort")
	}
	want := map[string]int{"node-1": 0, "node-2": 2, "node-3": 1}
	check := func(node string, n int) error {
		for _, v6 := range []bool{false, true} {
			addr := netip.AddrPortFrom(nodeIP(s.l, node, v6), hc)
			code, body, err := s.httpGet(lab.External1, addr)
			if err != nil {
				return fmt.Errorf("GET %v: %w", addr, err)
			}
			wantCode := http.StatusOK
			if n == 0 {
				wantCode = http.StatusServiceUnavailable
			}
			var hb healthBody
			if err := json.Unmarshal([]byte(body), &hb); err != nil {
				return fmt.Errorf("GET %v: HTTP %d, body %q: %v", addr, code, body, err)
			}
			if code != wantCode || hb.Service.Namespace != "default" || hb.Service.Name != "loc" || hb.LocalEndpoints != n || !hb.ServiceProxyHealthy {
				return fmt.Errorf("GET %v: HTTP %d %s, want %d with service default/loc, localEndpoints %d, serviceProxyHealthy true", addr, code, strings.TrimSpace(body), wantCode, n)
			}
		}
		return nil
	}
	for _, node := range []string{"node-1", "node-2", "node-3"} {
		if err := retryFor(settle, func() error { return check(node, want[node]) }); err != nil {
			t.Errorf("health check on %s: %v", node, err)
		}
	}
	// loc-2, node-3's only endpoint, goes.
	ctx := ctxFor(t)
	if err := s.l.Scale(ctx, "loc", 2); err != nil {
		t.Fatal(err)
	}
	if err := s.l.WaitForEndpoints(ctx, "loc", 2); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := retryFor(settle, func() error { return check("node-3", 0) }); err != nil {
		t.Errorf("health check on node-3 after its last endpoint went: %v", err)
	} else {
		t.Logf("node-3's health check answered 503 %s after the slices lost loc-2", time.Since(start).Round(time.Millisecond))
	}
	if err := check("node-2", 2); err != nil {
		t.Errorf("health check on node-2 (unchanged): %v", err)
	}
	s.unanswered(t, lab.External1, netip.AddrPortFrom(nodeIP(s.l, "node-3", false), nodePort(t, s.loc, "tcp")), lab.TCP, true,
		"ETP Local NodePort on node-3 after its last local endpoint went")
}

// httpGet fetches http://addr/ from a lab namespace: status and body.
func (s *externalSuite) httpGet(from string, addr netip.AddrPort) (int, string, error) {
	ns, err := s.l.NS(from)
	if err != nil {
		return 0, "", err
	}
	tr := &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
		var c net.Conn
		err := ns.Do(func() error {
			var d net.Dialer
			var err error
			c, err = d.DialContext(ctx, network, a)
			return err
		})
		return c, err
	}}
	resp, err := (&http.Client{Transport: tr, Timeout: lab.DialTimeout}).Get("http://" + addr.String() + "/")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(b), err
}

// Without 127.0.0.0/8 in --nodeport-addresses (the default, primary),
// 127.0.0.1:<nodePort> on a node is not a Service.
func (s *externalSuite) localhostNodePortOff(t *testing.T) {
	np := nodePort(t, s.web, "tcp")
	// The NodePort itself works from the node...
	s.reach(t, "node-1", netip.AddrPortFrom(nodeIP(s.l, "node-1", false), np), lab.TCP)
	// ...but not on localhost.
	dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), np)
	if ans, err := s.l.DialWithin("node-1", dst, lab.TCP, dropWait); err == nil {
		t.Errorf("%v from node-1 answered by %s without localhost NodePorts enabled", dst, ans.Pod)
	}
}

// With --nodeport-addresses=primary,127.0.0.0/8, 127.0.0.1:<nodePort>
// from the node reaches every endpoint (local and remote), and the node
// IP NodePort still works.
func (s *externalSuite) localhostNodePortOn(t *testing.T) {
	ctx := ctxFor(t)
	if _, err := s.l.CreateDeployment(ctx, "web", 3, "node-1", "node-2", "node-3"); err != nil {
		t.Fatal(err)
	}
	spec := lab.ServiceFor("web", "web", false)
	spec.Spec.Type = corev1.ServiceTypeNodePort
	svc, err := s.l.CreateService(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.l.WaitForEndpoints(ctx, "web", 3); err != nil {
		t.Fatal(err)
	}
	np := nodePort(t, svc, "tcp")
	for _, node := range []string{"node-1", "node-2"} {
		dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), np)
		s.reach(t, node, dst, lab.TCP)
		if pods, _ := s.spread(t, node, dst, spreadDials); len(pods) != 3 {
			t.Errorf("localhost NodePort %v from %s: answers %v, want web-0, web-1 and web-2", dst, node, pods)
		}
		if ans, err := s.l.Dial(node, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), nodePort(t, svc, "udp")), lab.UDP); err != nil {
			t.Errorf("UDP localhost NodePort from %s: %v", node, err)
		} else if !strings.HasPrefix(ans.Pod, "web-") {
			t.Errorf("UDP localhost NodePort answered by %s", ans.Pod)
		}
	}
	dst := netip.AddrPortFrom(nodeIP(s.l, "node-3", false), np)
	s.reach(t, lab.External1, dst, lab.TCP)
	if pods, _ := s.spread(t, lab.External1, dst, spreadDials); len(pods) != 3 {
		t.Errorf("NodePort %v from %s with localhost NodePorts on: answers %v, want all three", dst, lab.External1, pods)
	}
}
