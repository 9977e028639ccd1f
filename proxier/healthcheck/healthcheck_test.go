package healthcheck

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/nftproxy/nftproxy/proxier/httpserver"
)

// loopback is the NodePort address the tests serve on.
var loopback = []netip.Addr{netip.MustParseAddr("127.0.0.1")}

// freePort returns a port nothing listens on right now.
func freePort(t *testing.T) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

type reply struct {
	code   int
	body   string
	header http.Header
}

func get(t *testing.T, port uint16) (reply, error) {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://127.0.0.1:" + strconv.Itoa(int(port)) + "/healthz")
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{resp.StatusCode, string(b), resp.Header}, nil
}

func mustGet(t *testing.T, port uint16) reply {
	t.Helper()
	r, err := get(t, port)
	if err != nil {
		t.Fatalf("GET port %d: %v", port, err)
	}
	return r
}

func TestServesCountsAndFollowsChanges(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	s := New(Options{Healthy: healthy.Load})
	t.Cleanup(s.Close)
	web := types.NamespacedName{Namespace: "ns", Name: "web"}
	pa := freePort(t)

	s.Sync(loopback, []Service{{Name: web, Port: pa, LocalEndpoints: 2}})
	r := mustGet(t, pa)
	if want := `{"service":{"namespace":"ns","name":"web"},"localEndpoints":2,"serviceProxyHealthy":true}`; r.code != 200 || r.body != want {
		t.Errorf("got %d %s, want 200 %s", r.code, r.body, want)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if w := r.header.Get("X-Load-Balancing-Endpoint-Weight"); w != "2" {
		t.Errorf("X-Load-Balancing-Endpoint-Weight %q, want 2", w)
	}

	// The last local endpoint goes: 503 at once, same server.
	s.Sync(loopback, []Service{{Name: web, Port: pa, LocalEndpoints: 0}})
	r = mustGet(t, pa)
	if want := `{"service":{"namespace":"ns","name":"web"},"localEndpoints":0,"serviceProxyHealthy":true}`; r.code != 503 || r.body != want {
		t.Errorf("got %d %s, want 503 %s", r.code, r.body, want)
	}

	// Back, but the proxy is unhealthy: 503 with the count.
	s.Sync(loopback, []Service{{Name: web, Port: pa, LocalEndpoints: 1}})
	healthy.Store(false)
	r = mustGet(t, pa)
	if want := `{"service":{"namespace":"ns","name":"web"},"localEndpoints":1,"serviceProxyHealthy":false}`; r.code != 503 || r.body != want {
		t.Errorf("got %d %s, want 503 %s", r.code, r.body, want)
	}
	healthy.Store(true)
	if r = mustGet(t, pa); r.code != 200 {
		t.Errorf("healthy again: got %d", r.code)
	}

	// The Service goes: its port closes.
	s.Sync(loopback, nil)
	if _, err := get(t, pa); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("after the Service went: %v, want connection refused", err)
	}
	if len(s.Ports()) != 0 {
		t.Errorf("still serving %v", s.Ports())
	}
}

func TestPortConflictIsReportedAndRetried(t *testing.T) {
	var reported []uint16
	s := New(Options{OnListenError: func(_ types.NamespacedName, port uint16, _ error) {
		reported = append(reported, port)
	}})
	t.Cleanup(s.Close)
	blocker, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	busy := uint16(blocker.Addr().(*net.TCPAddr).Port)
	free := freePort(t)
	a := types.NamespacedName{Namespace: "ns", Name: "a"}
	b := types.NamespacedName{Namespace: "ns", Name: "b"}
	svcs := []Service{{Name: a, Port: busy, LocalEndpoints: 1}, {Name: b, Port: free, LocalEndpoints: 1}}

	s.Sync(loopback, svcs)
	if len(reported) != 1 || reported[0] != busy {
		t.Fatalf("reported %v, want [%d]", reported, busy)
	}
	if r := mustGet(t, free); r.code != 200 {
		t.Errorf("the other Service's port: got %d, want 200", r.code)
	}
	blocker.Close()
	s.Sync(loopback, svcs)
	if r := mustGet(t, busy); r.code != 200 || r.body != `{"service":{"namespace":"ns","name":"a"},"localEndpoints":1,"serviceProxyHealthy":true}` {
		t.Errorf("after the port was freed: got %d %s", r.code, r.body)
	}
	if len(reported) != 1 {
		t.Errorf("reported again: %v", reported)
	}
}

// TestHealthCheckServerClosesIdleConnections: health check node ports are
// reachable from outside the node; they get httpserver's limits (before:
// no idle timeout, idle connections stayed open).
func TestHealthCheckServerClosesIdleConnections(t *testing.T) {
	defer func(d time.Duration) { httpserver.IdleTimeout = d }(httpserver.IdleTimeout)
	httpserver.IdleTimeout = 100 * time.Millisecond
	s := New(Options{})
	t.Cleanup(s.Close)
	port := freePort(t)
	s.Sync(loopback, []Service{{Name: types.NamespacedName{Namespace: "ns", Name: "web"}, Port: port, LocalEndpoints: 1}})
	if err := httpserver.ClosesIdle(net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))), 5*time.Second); err != nil {
		t.Error(err)
	}
}

// TestServesOnNodePortAddressesOnly: a health check node port listens on
// the NodePort addresses it is given, not on every address of the host
// (before: on all of them), and follows them when they change.
func TestServesOnNodePortAddressesOnly(t *testing.T) {
	s := New(Options{})
	t.Cleanup(s.Close)
	port := freePort(t)
	svc := []Service{{Name: types.NamespacedName{Namespace: "ns", Name: "web"}, Port: port, LocalEndpoints: 1}}
	at := func(ip string) error {
		c := &http.Client{Timeout: 2 * time.Second}
		resp, err := c.Get("http://" + net.JoinHostPort(ip, strconv.Itoa(int(port))) + "/")
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	s.Sync([]netip.Addr{netip.MustParseAddr("127.0.0.2")}, svc)
	if err := at("127.0.0.2"); err != nil {
		t.Errorf("NodePort address 127.0.0.2: %v", err)
	}
	if err := at("127.0.0.1"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("127.0.0.1, not a NodePort address: %v, want connection refused", err)
	}

	// The addresses change: the listeners follow.
	s.Sync([]netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.3")}, svc)
	for _, ip := range []string{"127.0.0.1", "127.0.0.3"} {
		if err := at(ip); err != nil {
			t.Errorf("NodePort address %s: %v", ip, err)
		}
	}
	if err := at("127.0.0.2"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("127.0.0.2, no longer a NodePort address: %v, want connection refused", err)
	}

	// No address at all: nothing is served.
	s.Sync(nil, svc)
	if err := at("127.0.0.1"); !errors.Is(err, syscall.ECONNREFUSED) || len(s.Ports()) != 0 {
		t.Errorf("without NodePort addresses: %v, ports %v; want connection refused, none", err, s.Ports())
	}
}
