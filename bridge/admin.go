package bridge

// Paths the admin listener (server.admin_listen) serves.
const (
	MetricsPath = "/metrics"      // Prometheus metrics
	HealthzPath = "/healthz"      // liveness: the process answers
	ReadyzPath  = "/readyz"       // readiness: config loaded, sinks usable, spool writable, not draining
	PprofPath   = "/debug/pprof/" // net/http/pprof, with server.pprof: true
)
