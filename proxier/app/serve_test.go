package app

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nftproxy/nftproxy/proxier/httpserver"
)

func TestServeHTTP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	busy := ln.Addr().String()
	defer ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })

	if err := serveHTTP(ctx, "metrics", busy, h, true); err == nil || !strings.Contains(err.Error(), "metrics server") {
		t.Errorf("hard fail on a busy address: %v", err)
	}
	if err := serveHTTP(ctx, "metrics", busy, h, false); err != nil {
		t.Errorf("soft fail on a busy address: %v", err)
	}
	if err := serveHTTP(ctx, "metrics", "", h, true); err != nil {
		t.Errorf("disabled server: %v", err)
	}

	// A free port: serve, answer, stop with ctx.
	ln.Close()
	if err := serveHTTP(ctx, "healthz", busy, h, true); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + busy + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok" {
		t.Errorf("body %q", body)
	}
}

func TestServeOptionsCheck(t *testing.T) {
	s := newServeOptions()
	if err := s.check(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	s.metricsBindAddress = "127.0.0.1" // no port
	if err := s.check(); err == nil || !strings.Contains(err.Error(), "--metrics-bind-address") {
		t.Errorf("address without port: %v", err)
	}
}

// TestServeHTTPClosesIdleConnections: the health and metrics servers get
// httpserver's limits; before they had no idle timeout.
func TestServeHTTPClosesIdleConnections(t *testing.T) {
	defer func(d time.Duration) { httpserver.IdleTimeout = d }(httpserver.IdleTimeout)
	httpserver.IdleTimeout = 100 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := serveHTTP(ctx, "healthz", addr, http.NotFoundHandler(), true); err != nil {
		t.Fatal(err)
	}
	if err := httpserver.ClosesIdle(addr, 5*time.Second); err != nil {
		t.Error(err)
	}
}
