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
package healthcheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/nftproxy/nftproxy/internal/httpserver"
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
	// BindAddress is the address servers listen on (default: all of the
	// node's addresses).
	BindAddress string
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
}

type instance struct {
	srv *http.Server

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

// Sync makes the Server serve exactly the given ports with the given
// counts: it starts servers for new ports, stops those of ports no longer
// listed and updates the rest in place. A port that cannot be opened is
// reported (OnListenError) and retried at the next Sync.
func (s *Server) Sync(services []Service) {
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
	for port, in := range s.ports {
		if _, ok := want[port]; !ok {
			_ = in.srv.Close()
			delete(s.ports, port)
			klog.V(2).InfoS("Stopped health check node port", "port", port, "service", in.name)
		}
	}
	for port, svc := range want {
		in, ok := s.ports[port]
		if !ok {
			var err error
			if in, err = s.start(svc); err != nil {
				klog.ErrorS(err, "Cannot open health check node port; retrying at the next sync", "port", port, "service", svc.Name)
				if s.opts.OnListenError != nil {
					s.opts.OnListenError(svc.Name, port, err)
				}
				continue
			}
			s.ports[port] = in
			klog.V(2).InfoS("Serving health check node port", "port", port, "service", svc.Name)
		}
		in.mu.Lock()
		in.name, in.endpoints = svc.Name, svc.LocalEndpoints
		in.mu.Unlock()
	}
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

func (s *Server) start(svc Service) (*instance, error) {
	addr := net.JoinHostPort(s.opts.BindAddress, strconv.Itoa(int(svc.Port)))
	ln, err := s.opts.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s for %s: %w", addr, svc.Name, err)
	}
	in := &instance{name: svc.Name}
	in.srv = httpserver.New(s.handler(in))
	go func() {
		if err := in.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.ErrorS(err, "Health check node port server failed", "port", svc.Port)
		}
	}()
	return in, nil
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
