package bridge

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Paths the admin listener (server.admin_listen) serves.
const (
	MetricsPath = "/metrics"      // Prometheus metrics
	HealthzPath = "/healthz"      // liveness: the process answers
	ReadyzPath  = "/readyz"       // readiness: config loaded, sinks usable, spool writable, not draining
	PprofPath   = "/debug/pprof/" // net/http/pprof, with server.pprof: true
)

// adminHandler serves the admin endpoints.
func (s *Service) adminHandler(withPprof bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(MetricsPath, promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc(HealthzPath, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc(ReadyzPath, func(w http.ResponseWriter, r *http.Request) {
		if err := s.Ready(); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "not ready: " + err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	if withPprof {
		mux.HandleFunc(PprofPath, pprof.Index)
		mux.HandleFunc(PprofPath+"cmdline", pprof.Cmdline)
		mux.HandleFunc(PprofPath+"profile", pprof.Profile)
		mux.HandleFunc(PprofPath+"symbol", pprof.Symbol)
		mux.HandleFunc(PprofPath+"trace", pprof.Trace)
	}
	return mux
}

// writeJSON writes an admin answer.
func writeJSON(w http.ResponseWriter, status int, v map[string]string) {
	b, _ := json.Marshal(v) // a map of strings always marshals
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
