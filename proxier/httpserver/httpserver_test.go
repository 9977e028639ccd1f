package httpserver

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestServerDropsIdleAndSlowClients: a keep-alive connection left idle and
// a request whose headers never end are both closed by the server; before,
// the servers had no idle timeout (an idle connection stayed open for
// ever) and no limit on the headers' size.
func TestServerDropsIdleAndSlowClients(t *testing.T) {
	defer func(h, i time.Duration) { ReadHeaderTimeout, IdleTimeout = h, i }(ReadHeaderTimeout, IdleTimeout)
	ReadHeaderTimeout, IdleTimeout = 200*time.Millisecond, 200*time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := New(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	go srv.Serve(ln)
	defer srv.Close()
	addr := ln.Addr().String()

	if err := ClosesIdle(addr, 5*time.Second); err != nil {
		t.Error(err)
	}

	// Headers that never end.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Errorf("slow headers: connection not closed by the server: %v", err)
	}

	// Oversized headers are refused.
	req, err := http.NewRequest("GET", "http://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Big", strings.Repeat("a", 2*MaxHeaderBytes))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("oversized headers: status %d, want 431", resp.StatusCode)
	}
}
