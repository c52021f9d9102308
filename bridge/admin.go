package bridge

import (
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hookbridge/hookbridge/bridge/ingress"
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
		ingress.WriteJSON(w, http.StatusOK, []byte("{\"status\":\"ok\"}\n"))
	})
	mux.HandleFunc(ReadyzPath, func(w http.ResponseWriter, r *http.Request) {
		if err := s.Ready(); err != nil {
			ingress.WriteError(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
			return
		}
		ingress.WriteJSON(w, http.StatusOK, []byte("{\"status\":\"ready\"}\n"))
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
