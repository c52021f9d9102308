package config

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/hookbridge/hookbridge/bridge/queue/jetstream"
	"github.com/hookbridge/hookbridge/bridge/route"
	"github.com/hookbridge/hookbridge/sinks"
)

// Validate checks a config after SetDefaults: each part checks its own
// fields, then cross-references (routes to sinks, unique names and paths)
// are checked. It returns every problem found, joined.
func (c *Config) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(c.Server.validate())
	if c.Delivery != DeliverySpool && c.Delivery != DeliverySync {
		add(sinks.Problemf("delivery", "%q: use spool (answer once fsynced locally, deliver in the background) or sync (answer once every sink confirmed)", c.Delivery))
	}
	add(c.validateSpool())
	add(c.Telemetry.validate())

	if len(c.Sources) == 0 {
		add(sinks.Problemf("sources", "no source: add one with a name, a path and secrets"))
	}
	names, paths := map[string]bool{}, map[string]bool{}
	for i, src := range c.Sources {
		key := fmt.Sprintf("sources[%d]", i)
		add(src.validate(key))
		if names[src.Name] {
			add(sinks.Problemf(key+".name", "source name %q is used twice: names must be unique", src.Name))
		}
		if paths[src.Path] {
			add(sinks.Problemf(key+".path", "path %q is used by another source: give each source its own path", src.Path))
		}
		names[src.Name], paths[src.Path] = true, true
	}

	sinkByName := map[string]Sink{}
	for i, sk := range c.Sinks {
		key := fmt.Sprintf("sinks[%d]", i)
		switch {
		case sk.Name == "":
			add(sinks.Problemf(key+".name", "missing: name the sink so routes can refer to it"))
		case sinkByName[sk.Name].Name != "":
			add(sinks.Problemf(key+".name", "sink name %q is used twice: names must be unique", sk.Name))
		default:
			sinkByName[sk.Name] = sk
		}
		add(sk.Retry.validate(key + ".retry"))
		if sk.Options == nil {
			continue // its type was already reported
		}
		for _, err := range within(key, fmt.Sprintf("sink %q: ", sk.Name), sk.Options.Validate()) {
			add(err)
		}
	}

	for i, sk := range c.Sinks {
		if sk.DeadLetter == nil {
			continue
		}
		key := fmt.Sprintf("sinks[%d].dead_letter", i)
		tmpl, perr := route.ParseTemplate(sk.DeadLetter.Target)
		err := sk.DeadLetter.validate(key, "dead letters of sink "+strconv.Quote(sk.Name), sinkByName, tmpl, perr)
		add(err)
		if sk.DeadLetter.Sink == sk.Name {
			add(sinks.Problemf(key+".sink", "sink %q cannot be its own dead-letter target: a message it refuses would loop; name another sink", sk.Name))
		}
		// Dead letters are published to the target as written: a
		// variable would reach the broker as "{status}".
		if dl := sk.DeadLetter; err == nil && !tmpl.Static() {
			add(sinks.Problemf(key+"."+dl.Key, "dead letters of sink %q: %q holds a template variable, which dead letters do not fill in: write a fixed %s such as dead.%s", sk.Name, dl.Target, dl.Key, sk.Name))
		}
	}

	if len(c.Routes) == 0 {
		add(sinks.Problemf("routes", "no route: add one that sends some statuses to a sink"))
	}
	rules, err := c.validateRoutes(sinkByName)
	add(err)
	c.built = nil
	if len(errs) == 0 {
		c.built = &builtRules{routes: cloneRoutes(c.Routes), maxBody: c.Server.MaxBodyBytes, rules: rules}
	}
	return errors.Join(errs...)
}

// validateRoutes checks the routes and returns them as the router takes
// them: each condition compiled and each template parsed here, once.
func (c *Config) validateRoutes(sinkByName map[string]Sink) ([]route.Rule, error) {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	var compiler *route.Compiler
	rules := make([]route.Rule, 0, len(c.Routes))
	routeNames := map[string]bool{}
	for i, r := range c.Routes {
		key := fmt.Sprintf("routes[%d]", i)
		switch {
		case r.Name == "":
			add(sinks.Problemf(key+".name", "missing: name the route"))
		case routeNames[r.Name]:
			add(sinks.Problemf(key+".name", "route name %q is used twice: names must be unique", r.Name))
		}
		routeNames[r.Name] = true
		if r.Delivery != DeliverySpool && r.Delivery != DeliverySync {
			add(sinks.Problemf(key+".delivery", "route %q: %q: use spool or sync", r.Name, r.Delivery))
		}
		rule := route.Rule{Name: r.Name, Statuses: r.Status, Sync: r.Delivery == DeliverySync}
		if len(r.Status) == 0 {
			if r.When == "" {
				add(sinks.Problemf(key+".status", "route %q: no status: list the statuses it takes, \"*\" for all, or give a when condition", r.Name))
			}
			rule.Statuses = []string{"*"}
		}
		for j, st := range r.Status {
			if strings.TrimSpace(st) == "" {
				add(sinks.Problemf(fmt.Sprintf("%s.status[%d]", key, j), "route %q: empty status", r.Name))
			}
		}
		if r.When != "" {
			if compiler == nil {
				var err error
				if compiler, err = route.NewCompiler(c.Server.MaxBodyBytes); err != nil {
					return nil, err
				}
			}
			cond, err := compiler.Compile(r.When)
			for _, e := range errorList(err) {
				add(sinks.Problemf(key+".when", "route %q: %v", r.Name, e))
			}
			rule.When = cond
		}
		if len(r.To) == 0 {
			add(sinks.Problemf(key+".to", "route %q: no target: add at least one {sink: NAME}", r.Name))
		}
		for j, t := range r.To {
			tmpl, perr := route.ParseTemplate(t.Target) // "" is the sink's default
			add(t.validate(fmt.Sprintf("%s.to[%d]", key, j), "route "+strconv.Quote(r.Name), sinkByName, tmpl, perr))
			rule.Targets = append(rule.Targets, route.Target{Sink: t.Sink, Template: tmpl})
		}
		if r.When != "" && rule.When == nil {
			continue // a route whose condition does not compile never fires
		}
		rules = append(rules, rule)
	}
	return rules, errors.Join(errs...)
}

func (s *Server) validate() error {
	var errs []error
	if _, port, err := net.SplitHostPort(s.Listen); err != nil || port == "" {
		errs = append(errs, sinks.Problemf("server.listen", "%q is not host:port: write e.g. \"127.0.0.1:8080\" or \":8080\"", s.Listen))
	}
	if (s.TLS.CertFile == "") != (s.TLS.KeyFile == "") {
		errs = append(errs, sinks.Problemf("server.tls", "give both cert_file and key_file, or neither"))
	}
	if _, port, err := net.SplitHostPort(s.AdminListen); err != nil || port == "" {
		errs = append(errs, sinks.Problemf("server.admin_listen", "%q is not host:port: write e.g. \"127.0.0.1:9090\" or \":9090\"", s.AdminListen))
	}
	positive := []struct {
		key string
		v   int64
	}{
		{"server.max_body_bytes", s.MaxBodyBytes},
		{"server.max_header_bytes", int64(s.MaxHeaderBytes)},
		{"server.max_json_depth", int64(s.MaxJSONDepth)},
		{"server.max_number_digits", int64(s.MaxNumberDigits)},
		{"server.max_connections", int64(s.MaxConnections)},
		{"server.max_concurrent_reads", int64(s.MaxConcurrentReads)},
		{"server.body_read_timeout", int64(s.BodyReadTimeout)},
		{"server.min_body_rate", s.MinBodyRate},
		{"server.max_buffered_bytes", s.MaxBufferedBytes},
	}
	for _, p := range positive {
		if p.v < 0 {
			errs = append(errs, sinks.Problemf(p.key, "must be positive (or left out for the default)"))
		}
	}
	// Past this the cache's table positions would not fit its int32
	// slots; long before it, memory runs out (34 bytes per id).
	if s.ReplayCacheSize < 1 || s.ReplayCacheSize > MaxReplayCacheSize {
		errs = append(errs, sinks.Problemf("server.replay_cache_size", "%d is out of range: give 1 to %d ids (34 bytes each), or leave it out for %d", s.ReplayCacheSize, MaxReplayCacheSize, DefaultReplayCacheSize))
	}
	if s.MaxBufferedBytes < s.MaxBodyBytes {
		errs = append(errs, sinks.Problemf("server.max_buffered_bytes", "%d is less than max_body_bytes (%d): a body of the largest size allowed could never be read", s.MaxBufferedBytes, s.MaxBodyBytes))
	}
	if s.WriteTimeout <= s.PublishTimeout {
		errs = append(errs, sinks.Problemf("server.write_timeout", "%v must be longer than publish_timeout (%v): the answer is written after publishing", s.WriteTimeout, s.PublishTimeout))
	}
	return errors.Join(errs...)
}

func (c *Config) validateSpool() error {
	s := &c.Spool
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, sinks.Problemf(key, format, args...))
	}
	if s.MaxBytes < 0 {
		add("spool.max_bytes", "must be positive (or left out for %d, 1 GiB)", DefaultSpoolMaxBytes)
	}
	if s.MaxEvents < 0 {
		add("spool.max_events", "must be positive (or left out for %d)", DefaultSpoolMaxEvents)
	}
	switch c.Server.ReplayCache {
	case ReplayMemory:
	case ReplayNATS:
		if s.Backend != SpoolJetStream {
			add("server.replay_cache", "nats keeps the ids in the NATS of the jetstream spool: set spool.backend: jetstream and spool.url, or use memory")
		}
	default:
		add("server.replay_cache", "%q: use memory (this replica) or nats (shared by every replica, with spool.backend: jetstream)", c.Server.ReplayCache)
	}
	switch s.Backend {
	case SpoolLocal:
		for _, key := range setKeys(reflect.ValueOf(s.JetStream)) {
			add("spool."+key, "only applies with backend: jetstream: remove it, or set spool.backend: jetstream")
		}
	case SpoolJetStream:
		errs = append(errs, within("spool", "", s.JetStream.Validate())...)
		errs = append(errs, c.validateJetStreamSpool()...)
	default:
		add("spool.backend", "%q: use local (a file in spool.dir, one per replica) or jetstream (a stream in your NATS, shared by every replica)", s.Backend)
	}
	return errors.Join(errs...)
}

// validateJetStreamSpool checks what spool.backend: jetstream asks of the
// rest of the config; the backend checks its own keys.
func (c *Config) validateJetStreamSpool() []error {
	js := &c.Spool.JetStream
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, sinks.Problemf(key, format, args...))
	}
	for i, sk := range c.Sinks {
		if js.MaxAge > 0 && sk.Retry.MaxAge >= js.MaxAge {
			add(fmt.Sprintf("sinks[%d].retry.max_age", i), "%v is not shorter than spool.max_age %v: the stream would drop messages before they are dead-lettered; shorten it or lengthen spool.max_age", sk.Retry.MaxAge, js.MaxAge)
		}
		if !jetstream.ValidName(sk.Name) {
			add(fmt.Sprintf("sinks[%d].name", i), "%q: with spool.backend jetstream a sink name is part of NATS subjects and consumer names: use letters, digits, - and _", sk.Name)
		}
	}
	if js.AckWait <= c.Server.PublishTimeout {
		add("spool.ack_wait", "%v must be longer than server.publish_timeout (%v): NATS would hand a message to another replica while this one still publishes it", js.AckWait, c.Server.PublishTimeout)
	}
	return errs
}

// within places a part's own problems (keys relative to it, as sinks and
// the jetstream spool report them) under key, each message prefixed by
// owner.
func within(key, owner string, err error) []error {
	var out []error
	for _, e := range errorList(err) {
		var ce *sinks.ConfigError
		if errors.As(e, &ce) {
			out = append(out, &sinks.ConfigError{Key: joinKey(key, ce.Key), Line: ce.Line, Problem: owner + ce.Problem})
		} else {
			out = append(out, &sinks.ConfigError{Key: key, Problem: owner + e.Error()})
		}
	}
	return out
}

func (r *Retry) validate(key string) error {
	var errs []error
	if r.MaxBackoff < r.MinBackoff {
		errs = append(errs, sinks.Problemf(key+".max_backoff", "%v is shorter than min_backoff %v", r.MaxBackoff, r.MinBackoff))
	}
	if r.MaxAttempts < 0 {
		errs = append(errs, sinks.Problemf(key+".max_attempts", "must be 0 (no limit) or more"))
	}
	return errors.Join(errs...)
}

func (s *Source) validate(key string) error {
	var errs []error
	if s.Name == "" {
		errs = append(errs, sinks.Problemf(key+".name", "missing: name the source (it becomes the events' CloudEvents source)"))
	}
	if !strings.HasPrefix(s.Path, "/") {
		errs = append(errs, sinks.Problemf(key+".path", "%q must start with /", s.Path))
	}
	if len(s.Secrets) == 0 && len(s.SecretFiles) == 0 {
		errs = append(errs, sinks.Problemf(key+".secrets", "source %q has no secret: add the Browser Use webhook secret, e.g. secrets: [\"${BROWSER_USE_WEBHOOK_SECRET}\"] or secret_files: [/run/secrets/browser-use]", s.Name))
	}
	for i, sec := range s.Secrets {
		if sec == "" {
			errs = append(errs, sinks.Problemf(fmt.Sprintf("%s.secrets[%d]", key, i), "empty secret"))
		}
	}
	if s.Tolerance != nil && *s.Tolerance < 0 {
		errs = append(errs, sinks.Problemf(key+".tolerance", "must not be negative (0 turns the check off)"))
	}
	return errors.Join(errs...)
}

// validate checks a target, whose template parsed to tmpl or failed with
// perr; owner names what holds it in messages, e.g. `route "alerting"`.
func (t *Target) validate(key, owner string, sinkByName map[string]Sink, tmpl route.Template, perr error) error {
	if t.Sink == "" {
		return sinks.Problemf(key+".sink", "%s: missing: name the sink to send to", owner)
	}
	sk, ok := sinkByName[t.Sink]
	if !ok {
		return sinks.Problemf(key+".sink", "%s: unknown sink %q (declared sinks: %s)", owner, t.Sink, strings.Join(slices.Sorted(maps.Keys(sinkByName)), ", "))
	}
	targetKey := sk.Kind.TargetKey
	if t.Key != "" && t.Key != targetKey {
		if targetKey == "" {
			return sinks.Problemf(key+"."+t.Key, "%s: %s sink %q takes no target: remove %s", owner, sk.Type, t.Sink, t.Key)
		}
		return sinks.Problemf(key+"."+t.Key, "%s: %s sink %q takes its target as %s, not %s", owner, sk.Type, t.Sink, targetKey, t.Key)
	}
	if t.Key != "" {
		if perr != nil {
			return sinks.Problemf(key+"."+t.Key, "%s: %v", owner, perr)
		}
		if sk.Options != nil && tmpl.Static() {
			if err := sk.Options.CheckTarget(t.Target); err != nil {
				return sinks.Problemf(key+"."+t.Key, "%s: %v", owner, err)
			}
		}
	}
	if t.Target == "" && targetKey != "" && (sk.Options == nil || sk.Options.DefaultTarget() == "") {
		return sinks.Problemf(key, "%s: %s sink %q needs a %s here (or a default %s on the sink)", owner, sk.Type, t.Sink, targetKey, targetKey)
	}
	return nil
}

// readSecretFiles adds the secret in each of the sources' secret_files.
// Errors name the file, never its content.
func (c *Config) readSecretFiles() error {
	var errs []error
	for i := range c.Sources {
		src := &c.Sources[i]
		for j, path := range src.SecretFiles {
			key := fmt.Sprintf("sources[%d].secret_files[%d]", i, j)
			data, err := os.ReadFile(path)
			if err != nil {
				errs = append(errs, sinks.Problemf(key, "cannot read the secret: %v", err))
				continue
			}
			secret := strings.TrimSpace(string(data))
			if secret == "" {
				errs = append(errs, sinks.Problemf(key, "%q is empty: it must hold the webhook secret", path))
				continue
			}
			src.Secrets = append(src.Secrets, Secret(secret))
		}
	}
	return errors.Join(errs...)
}

// validate checks the telemetry keys written in the file; the OTEL_*
// environment they fall back to is checked when tracing starts.
func (t *Telemetry) validate() error {
	var errs []error
	if t.Exporter != "" && t.Exporter != ExporterOTLP && t.Exporter != ExporterNone {
		errs = append(errs, sinks.Problemf("telemetry.exporter", "%q: use otlp (export spans) or none (no tracing)", t.Exporter))
	}
	if t.Protocol != "" && t.Protocol != ProtocolGRPC && t.Protocol != ProtocolHTTPProtobuf {
		errs = append(errs, sinks.Problemf("telemetry.protocol", "%q: use grpc or http/protobuf", t.Protocol))
	}
	if t.Endpoint != "" {
		if u, err := url.Parse(t.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, sinks.Problemf("telemetry.endpoint", "%q is not an http(s) URL: write the OTLP receiver's, e.g. http://otel-collector:4318", t.Endpoint))
		}
	}
	if t.Sampler != "" && !slices.Contains(Samplers, t.Sampler) {
		errs = append(errs, sinks.Problemf("telemetry.sampler", "%q: use one of %s", t.Sampler, strings.Join(Samplers, ", ")))
	}
	if a := t.SamplerArg; a != nil && !(*a >= 0 && *a <= 1) {
		errs = append(errs, sinks.Problemf("telemetry.sampler_arg", "%v is out of range: give the ratio of traces sampled, 0 to 1", *a))
	}
	if _, err := t.Attributes(); err != nil {
		errs = append(errs, sinks.Problemf("telemetry.resource_attributes", "%v", err))
	}
	return errors.Join(errs...)
}

// Attributes parses ResourceAttributes: key=value pairs separated by
// commas, values percent-decoded as in OTEL_RESOURCE_ATTRIBUTES.
func (t *Telemetry) Attributes() ([][2]string, error) {
	var out [][2]string
	if strings.TrimSpace(t.ResourceAttributes) == "" {
		return nil, nil
	}
	for p := range strings.SplitSeq(t.ResourceAttributes, ",") {
		k, v, ok := strings.Cut(p, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not key=value: write e.g. deployment.environment=prod,team=payments", strings.TrimSpace(p))
		}
		dv, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("%q: the value is not percent-encoded correctly", k)
		}
		out = append(out, [2]string{k, dv})
	}
	return out, nil
}
