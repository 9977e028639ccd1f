package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nftproxy/nftproxy/e2e/lab"
	"github.com/nftproxy/nftproxy/e2e/netkit"
)

// programmingMetric is kube-proxy's network programming latency histogram,
// which both proxies export on 127.0.0.1:10249. kube-proxy observes, at
// the end of each successful sync, the time since every
// endpoints.kubernetes.io/last-change-trigger-time annotation the sync
// programmed; scraping its sum and count around one lone change gives
// that change's figure exactly (Δsum / Δcount), as a dashboard would see
// it.
const programmingMetric = "kubeproxy_network_programming_duration_seconds"

// histTotals is a histogram's _sum and _count.
type histTotals struct {
	sum   float64
	count float64
}

// scrapeHistogram reads name's _sum and _count from the metrics endpoint
// of the proxy in ns. A histogram not exported yet reads as zero.
func scrapeHistogram(ns *netkit.NS, name string) (histTotals, error) {
	client := &http.Client{Transport: &http.Transport{DialContext: lab.DialerIn(ns), DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := client.Get("http://127.0.0.1:10249/metrics")
	if err != nil {
		return histTotals{}, fmt.Errorf("scrape metrics: %w", err)
	}
	defer resp.Body.Close()
	return parseHistogram(resp.Body, name)
}

// parseHistogram adds up the _sum and _count lines of name in a
// Prometheus text exposition, over every label set (kube-proxy labels its
// histogram with ip_family, nftproxy does not).
func parseHistogram(r io.Reader, name string) (histTotals, error) {
	var h histTotals
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		i := strings.LastIndexByte(line, ' ')
		if i < 0 || strings.HasPrefix(line, "#") {
			continue
		}
		key, val := line[:i], line[i+1:]
		key, _, _ = strings.Cut(key, "{")
		var dst *float64
		switch key {
		case name + "_sum":
			dst = &h.sum
		case name + "_count":
			dst = &h.count
		default:
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			return h, fmt.Errorf("metric line %q: %w", line, err)
		}
		*dst += v
	}
	return h, sc.Err()
}

// observedMs is the mean of the observations between two scrapes, in ms,
// and false when there was none.
func observedMs(before, after histTotals) (float64, bool) {
	n := after.count - before.count
	if n < 1 {
		return 0, false
	}
	return (after.sum - before.sum) / n * 1000, true
}
