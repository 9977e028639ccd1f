// Package httpserver builds nftproxy's HTTP servers (/healthz and /livez,
// /metrics, the health check node ports) with the same limits: a client
// that sends its request slowly, reads the answer slowly or keeps an idle
// connection open cannot hold a server's connections and goroutines for
// ever. The health check node ports are reachable from outside the node,
// so this matters.
package httpserver

import (
	"net/http"
	"time"
)

// Limits of every server. Our handlers read no request body and write
// small answers (a metrics scrape included), so these are generous. They
// are variables so that tests can shorten them.
var (
	// ReadHeaderTimeout bounds reading a request's headers.
	ReadHeaderTimeout = 10 * time.Second
	// ReadTimeout bounds reading a whole request.
	ReadTimeout = 30 * time.Second
	// WriteTimeout bounds writing an answer (from the end of the request's
	// headers).
	WriteTimeout = 30 * time.Second
	// IdleTimeout closes keep-alive connections idle this long.
	IdleTimeout = 60 * time.Second
)

// MaxHeaderBytes bounds a request's headers (net/http's default is 1 MiB).
const MaxHeaderBytes = 16 << 10

// New returns a server for h with the limits above.
func New(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
	}
}
