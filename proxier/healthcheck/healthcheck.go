// Package healthcheck serves the health check node ports of Services with
// externalTrafficPolicy Local, as kube-proxy does: one HTTP server per
// port, answering every request with 200 when this node has a ready local
// endpoint of the Service (and the proxy is healthy), else 503, and a JSON
// body
//
//	{"service":{"namespace":"ns","name":"svc"},"localEndpoints":N,"serviceProxyHealthy":true}
//
// Cloud load balancers probe the port on every node and only send traffic
// to nodes that answer 200.
//
// As upstream does with --nodeport-addresses, the ports listen on the
// node's NodePort addresses only (one listener per address), not on every
// address of the host.
package healthcheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/nftproxy/nftproxy/proxier/httpserver"
)

// Service is one health check node port to serve.
type Service struct {
	Name types.NamespacedName
	Port uint16
	// LocalEndpoints is the number of ready endpoints on this node.
	LocalEndpoints int
}

// Options of a Server.
type Options struct {
	// Healthy reports whether the proxy itself is healthy (default: always);
	// when it is not every port answers 503.
	Healthy func() bool
	// OnListenError, if set, is called when a port cannot be opened (e.g.
	// another process holds it). The Server retries at the next Sync; the
	// error is never fatal. It must not block.
	OnListenError func(svc types.NamespacedName, port uint16, err error)
	// Listen defaults to net.Listen (tests inject).
	Listen func(network, address string) (net.Listener, error)
}

// Server runs the health check servers. Its methods are safe for
// concurrent use.
type Server struct {
	opts Options

	mu    sync.Mutex
	ports map[uint16]*instance
	// noAddrs: the last Sync had ports to serve but no address (logged
	// once).
	noAddrs bool
}

type instance struct {
	srv *http.Server
	// lns are the listeners, one per NodePort address.
	lns map[netip.Addr]net.Listener

	mu        sync.Mutex
	name      types.NamespacedName
	endpoints int
}

// New returns a Server serving nothing yet.
func New(opts Options) *Server {
	if opts.Healthy == nil {
		opts.Healthy = func() bool { return true }
	}
	if opts.Listen == nil {
		opts.Listen = net.Listen
	}
	return &Server{opts: opts, ports: map[uint16]*instance{}}
}

// Sync makes the Server serve exactly the given ports, on exactly the
// given addresses (the node's NodePort addresses), with the given counts:
// it starts servers for new ports, stops those of ports no longer listed,
// opens and closes listeners as the addresses change and updates the rest
// in place. An address:port that cannot be opened is reported
// (OnListenError) and retried at the next Sync; the port's other addresses
// are served meanwhile.
func (s *Server) Sync(addrs []netip.Addr, services []Service) {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := make(map[uint16]Service, len(services))
	for _, svc := range services {
		if svc.Port == 0 {
			continue
		}
		if other, dup := want[svc.Port]; dup && other.Name != svc.Name {
			klog.InfoS("Health check node port used by two Services; serving the first", "port", svc.Port, "service", other.Name, "ignored", svc.Name)
			continue
		}
		want[svc.Port] = svc
	}
	if noAddrs := len(addrs) == 0 && len(want) > 0; noAddrs != s.noAddrs {
		s.noAddrs = noAddrs
		if noAddrs {
			klog.InfoS("No NodePort address: health check node ports are not served until there is one", "ports", len(want))
		}
	}
	for port, in := range s.ports {
		if _, ok := want[port]; !ok || len(addrs) == 0 {
			_ = in.srv.Close()
			delete(s.ports, port)
			klog.V(2).InfoS("Stopped health check node port", "port", port, "service", in.name)
		}
	}
	if len(addrs) == 0 {
		return
	}
	for port, svc := range want {
		in, ok := s.ports[port]
		if !ok {
			in = &instance{name: svc.Name, lns: map[netip.Addr]net.Listener{}}
			in.srv = httpserver.New(s.handler(in))
		}
		in.mu.Lock()
		in.name, in.endpoints = svc.Name, svc.LocalEndpoints
		in.mu.Unlock()
		if err := s.listen(in, port, addrs); err != nil {
			klog.ErrorS(err, "Cannot open health check node port; retrying at the next sync", "port", port, "service", svc.Name)
			if s.opts.OnListenError != nil {
				s.opts.OnListenError(svc.Name, port, err)
			}
		}
		if len(in.lns) == 0 {
			_ = in.srv.Close()
			delete(s.ports, port)
			continue
		}
		if !ok {
			klog.V(2).InfoS("Serving health check node port", "port", port, "service", svc.Name, "addresses", addrs)
		}
		s.ports[port] = in
	}
}

// listen makes in listen on port at exactly addrs: it closes the listeners
// of addresses no longer given and opens those of new ones, returning the
// errors of those that could not be opened.
func (s *Server) listen(in *instance, port uint16, addrs []netip.Addr) error {
	for a, ln := range in.lns {
		if !slices.Contains(addrs, a) {
			_ = ln.Close()
			delete(in.lns, a)
		}
	}
	var errs []error
	for _, a := range addrs {
		if _, ok := in.lns[a]; ok {
			continue
		}
		addr := net.JoinHostPort(a.String(), strconv.Itoa(int(port)))
		ln, err := s.opts.Listen("tcp", addr)
		if err != nil {
			errs = append(errs, fmt.Errorf("listen on %s for %s: %w", addr, in.name, err))
			continue
		}
		in.lns[a] = ln
		go func() {
			if err := in.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				klog.ErrorS(err, "Health check node port server failed", "address", addr)
			}
		}()
	}
	return errors.Join(errs...)
}

// Ports returns the ports being served.
func (s *Server) Ports() []uint16 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]uint16, 0, len(s.ports))
	for p := range s.ports {
		out = append(out, p)
	}
	return out
}

// Close stops every server.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for port, in := range s.ports {
		_ = in.srv.Close()
		delete(s.ports, port)
	}
}

// response is the body upstream kube-proxy sends.
type response struct {
	Service struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"service"`
	LocalEndpoints      int  `json:"localEndpoints"`
	ServiceProxyHealthy bool `json:"serviceProxyHealthy"`
}

func (s *Server) handler(in *instance) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		in.mu.Lock()
		var r response
		r.Service.Namespace, r.Service.Name = in.name.Namespace, in.name.Name
		r.LocalEndpoints = in.endpoints
		in.mu.Unlock()
		r.ServiceProxyHealthy = s.opts.Healthy()
		body, _ := json.Marshal(r)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("X-Load-Balancing-Endpoint-Weight", strconv.Itoa(r.LocalEndpoints))
		if r.LocalEndpoints > 0 && r.ServiceProxyHealthy {
			w.WriteHeader(http.StatusOK)
		} else {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, _ = w.Write(body)
	})
}
