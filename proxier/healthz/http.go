package healthz

import (
	"fmt"
	"net/http"
	"time"
)

// Handler serves /healthz and /livez.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		now := s.clock.Now()
		healthy, last := s.status(now)
		eligible := s.nodeEligible()
		s.answer(w, "/healthz", healthy && eligible, now, last, &eligible)
	})
	mux.HandleFunc("/livez", func(w http.ResponseWriter, _ *http.Request) {
		now := s.clock.Now()
		healthy, last := s.status(now)
		s.answer(w, "/livez", healthy, now, last, nil)
	})
	return mux
}

// answer writes kube-proxy's JSON body. As kube-proxy does, a healthy
// answer reports lastUpdated as the current time (older releases reported
// the last loop run); an unhealthy one reports the last successful sync.
// nodeEligible is reported by /healthz only.
func (s *Server) answer(w http.ResponseWriter, path string, ok bool, now, last time.Time, nodeEligible *bool) {
	code := http.StatusOK
	if ok {
		last = now
	} else {
		code = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	if nodeEligible != nil {
		fmt.Fprintf(w, `{"lastUpdated": %q,"currentTime": %q, "nodeEligible": %v}`, last, now, *nodeEligible)
	} else {
		fmt.Fprintf(w, `{"lastUpdated": %q,"currentTime": %q}`, last, now)
	}
	if s.cfg.OnServe != nil {
		s.cfg.OnServe(path, code)
	}
}
