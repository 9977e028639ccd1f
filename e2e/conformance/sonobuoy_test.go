package main

import (
	"encoding/json"
	"net/url"
	"testing"
)

// The sonobuoy worker posts its results to "https://" + the aggregator's
// advertise address, parsed with this Go's net/url. The default,
// "[<pod IP>]:8080", is refused for an IPv4 pod IP; the address
// `make conformance CONFORMANCE_VIA=sonobuoy` configures must parse.
func TestSonobuoyAggregatorURLParses(t *testing.T) {
	if _, err := url.Parse("https://[10.244.1.4]:8080"); err == nil {
		t.Log("this Go accepts a bracketed IPv4 host; the default advertise address would work too")
	}
	var cfg struct {
		Server struct {
			AdvertiseAddress string `json:"advertiseaddress"`
		}
	}
	if err := json.Unmarshal([]byte(aggregatorConfig), &cfg); err != nil {
		t.Fatalf("sonobuoy --config file: %v", err)
	}
	if cfg.Server.AdvertiseAddress == "" {
		t.Fatalf("no Server.advertiseaddress in %s", aggregatorConfig)
	}
	u, err := url.Parse("https://" + cfg.Server.AdvertiseAddress)
	if err != nil {
		t.Fatalf("worker's AggregatorURL: %v", err)
	}
	if u.Port() != "8080" {
		t.Errorf("port %q, want the aggregator Service's 8080", u.Port())
	}
}
