package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/nftproxy/nftproxy/proxier/httpserver"
)

// serveOptions are the flags of nftproxy's HTTP endpoints, named and
// defaulted as kube-proxy's.
type serveOptions struct {
	healthzBindAddress  string
	metricsBindAddress  string
	bindAddressHardFail bool
	profiling           bool
}

func newServeOptions() *serveOptions {
	return &serveOptions{healthzBindAddress: "0.0.0.0:10256", metricsBindAddress: "127.0.0.1:10249"}
}

func (s *serveOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&s.healthzBindAddress, "healthz-bind-address", s.healthzBindAddress, "IP:port of the /healthz and /livez server (empty: disabled).")
	fs.StringVar(&s.metricsBindAddress, "metrics-bind-address", s.metricsBindAddress, "IP:port of the /metrics server (empty: disabled).")
	fs.BoolVar(&s.profiling, "profiling", s.profiling, "Serve Go runtime profiles (heap, CPU, goroutines) at /debug/pprof/ on the metrics server, as kube-proxy's --profiling.")
	fs.BoolVar(&s.bindAddressHardFail, "bind-address-hard-fail", s.bindAddressHardFail, "Exit with an error if the healthz or metrics address cannot be bound (else log it and run without).")
}

// check validates the addresses (empty disables a server).
func (s *serveOptions) check() error {
	var errs []error
	for flag, addr := range map[string]string{"--healthz-bind-address": s.healthzBindAddress, "--metrics-bind-address": s.metricsBindAddress} {
		if addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: want IP:port: %w", flag, addr, err))
		}
	}
	return errors.Join(errs...)
}

// serveHTTP listens on addr and serves h until ctx ends. A listen error is
// returned when hardFail is set, else logged (the proxy runs without).
func serveHTTP(ctx context.Context, name, addr string, h http.Handler, hardFail bool) error {
	if addr == "" {
		klog.InfoS("HTTP server disabled", "server", name)
		return nil
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		err = fmt.Errorf("%s server: %w", name, err)
		if hardFail {
			return err
		}
		klog.ErrorS(err, "Running without it (set --bind-address-hard-fail to exit instead)", "server", name)
		return nil
	}
	srv := httpserver.New(h)
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(shutdownCtx); err != nil {
			klog.V(2).InfoS("Shutting down HTTP server", "server", name, "err", err)
		}
	}()
	go func() {
		klog.InfoS("Serving", "server", name, "address", ln.Addr().String())
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.ErrorS(err, "HTTP server stopped", "server", name)
		}
	}()
	return nil
}
