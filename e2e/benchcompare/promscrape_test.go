package main

import (
	"strings"
	"testing"
)

// The histogram totals are read from both proxies' expositions: nftproxy's
// unlabelled one and kube-proxy's labelled by ip_family (both families
// add up); other metrics and comments are ignored.
func TestParseHistogram(t *testing.T) {
	text := `# HELP kubeproxy_network_programming_duration_seconds x
# TYPE kubeproxy_network_programming_duration_seconds histogram
kubeproxy_network_programming_duration_seconds_bucket{ip_family="IPv4",le="0.25"} 3
kubeproxy_network_programming_duration_seconds_sum{ip_family="IPv4"} 0.5
kubeproxy_network_programming_duration_seconds_count{ip_family="IPv4"} 3
kubeproxy_network_programming_duration_seconds_sum{ip_family="IPv6"} 0.25
kubeproxy_network_programming_duration_seconds_count{ip_family="IPv6"} 1
kubeproxy_sync_proxy_rules_duration_seconds_sum 9
`
	h, err := parseHistogram(strings.NewReader(text), programmingMetric)
	if err != nil {
		t.Fatal(err)
	}
	if h.sum != 0.75 || h.count != 4 {
		t.Errorf("got sum %v count %v, want 0.75 and 4", h.sum, h.count)
	}
	plain, err := parseHistogram(strings.NewReader("kubeproxy_network_programming_duration_seconds_sum 1.5\nkubeproxy_network_programming_duration_seconds_count 2\n"), programmingMetric)
	if err != nil || plain.sum != 1.5 || plain.count != 2 {
		t.Errorf("unlabelled: got %+v, %v", plain, err)
	}
	if v, ok := observedMs(histTotals{sum: 1, count: 2}, histTotals{sum: 1.03, count: 3}); !ok || v < 29.99 || v > 30.01 {
		t.Errorf("one observation of 30 ms: got %v, %t", v, ok)
	}
	if _, ok := observedMs(histTotals{sum: 1, count: 2}, histTotals{sum: 1, count: 2}); ok {
		t.Error("no observation must read as none")
	}
}
