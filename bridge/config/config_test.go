package config

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/hookbridge/hookbridge/bridge/event"
	"github.com/hookbridge/hookbridge/bridge/queue/jetstream"
	"github.com/hookbridge/hookbridge/bridge/route"
	filesink "github.com/hookbridge/hookbridge/sinks/file"
	natssink "github.com/hookbridge/hookbridge/sinks/nats"
)

func testEnv(name string) (string, bool) {
	switch name {
	case "BROWSER_USE_WEBHOOK_SECRET":
		return "whsec_from_env", true
	case "EMPTY":
		return "", true
	}
	return "", false
}

func TestLoadConfigIssueMinimal(t *testing.T) {
	cfg, err := Load("testdata/config/ok-issue-minimal.yaml", testEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.Listen != "127.0.0.1:8080" || cfg.Server.MaxBodyBytes != 1<<20 || cfg.Server.PublishTimeout != 10*time.Second {
		t.Errorf("server = %+v", cfg.Server)
	}
	src := cfg.Sources[0]
	if src.Name != "browser-use" || src.Path != "/webhook" || *src.Tolerance != 5*time.Minute ||
		len(src.Secrets) != 1 || src.Secrets[0] != "whsec_from_env" {
		t.Errorf("source = %+v", src)
	}
	bus, ok := cfg.Sinks[0].Options.(*natssink.Config)
	if !ok || bus.URL != "nats://127.0.0.1:4222" || !bus.JetStream {
		t.Errorf("sink bus = %#v", cfg.Sinks[0].Options)
	}
	audit, ok := cfg.Sinks[1].Options.(*filesink.Config)
	if !ok || audit.Path != "./events.jsonl" {
		t.Errorf("sink audit = %#v", cfg.Sinks[1].Options)
	}
	want := []Target{{Sink: "bus", Key: "subject", Target: "alerts.task.{status}"}}
	if r := cfg.Routes[1]; r.Name != "alerting" || strings.Join(r.Status, ",") != "paused,stopped" || r.To[0] != want[0] {
		t.Errorf("route alerting = %+v", r)
	}
}

// TestLoadJetStreamSpool: the jetstream backend's defaults, and a
// password from the environment that never shows.
func TestLoadJetStreamSpool(t *testing.T) {
	cfg, err := Load("testdata/config/ok-jetstream.yaml", testEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := Spool{
		Backend: SpoolJetStream, Dir: "./data/spool", MaxBytes: 1 << 30, MaxEvents: 1_000_000,
		JetStream: jetstream.Config{
			Connection: natssink.Connection{
				URL: "nats://nats-0:4222,nats://nats-1:4222,nats://nats-2:4222", User: "hookbridge", Password: "secret",
				ConnectTimeout: 5 * time.Second,
			},
			Stream: "HOOKBRIDGE_SPOOL", SubjectPrefix: "hookbridge.spool", Replicas: 3, Storage: "file",
			MaxAge: 168 * time.Hour, Duplicates: 5 * time.Minute, Partitions: 16, AckWait: 30 * time.Second,
			ReplayBucket: "hookbridge_replay",
		},
	}
	if cfg.Spool != want {
		t.Errorf("spool =\n%+v\nwant\n%+v", cfg.Spool, want)
	}
	if cfg.Server.ReplayCache != ReplayNATS {
		t.Errorf("server.replay_cache = %q", cfg.Server.ReplayCache)
	}

	// duplicates follows the longest replay window, at least 2m.
	for _, tc := range []struct {
		sources string
		want    time.Duration
	}{
		{`[{name: a, secrets: [x], tolerance: 30m}, {name: b, path: /b, secrets: [x]}]`, 30 * time.Minute},
		{`[{name: a, secrets: [x], tolerance: 0}]`, 5 * time.Minute}, // server.replay_window's default
		{`[{name: a, secrets: [x], tolerance: 30s}]`, 2 * time.Minute},
	} {
		yaml := `
spool: {backend: jetstream, url: "nats://n:4222"}
sources: ` + tc.sources + `
sinks: [{name: bus, type: nats, url: "nats://n:4222"}]
routes: [{name: all, status: ["*"], to: [{sink: bus, subject: t}]}]
`
		cfg, err := Parse("dup.yaml", []byte(yaml), nil)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Spool.JetStream.Duplicates != tc.want {
			t.Errorf("sources %s: duplicates %v, want %v", tc.sources, cfg.Spool.JetStream.Duplicates, tc.want)
		}
	}
}

func TestLoadWorkedExample(t *testing.T) {
	cfg, err := Load("testdata/config/ok-kafka-sqs.yaml", testEnv)
	if err != nil {
		t.Fatal(err)
	}
	r := route.New(cfg.Rules())
	const queue = "https://sqs.eu-west-1.amazonaws.com/123456789012/task-alerts.fifo"
	for status, want := range map[string][]route.Delivery{
		"finished": {{Sink: "events", Target: "task.finished"}, {Sink: "bus", Target: "task.finished"}},
		"paused":   {{Sink: "alerts", Target: queue}, {Sink: "bus", Target: "task.paused"}},
		"started":  {{Sink: "bus", Target: "task.started"}},
	} {
		got := r.Route(&event.Event{Status: status}).Deliveries
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: %v, want %v", status, got, want)
		}
	}
}

func TestLoadDefaultConfig(t *testing.T) {
	if _, err := Load("../../config.yaml", testEnv); err != nil {
		t.Fatalf("the shipped config.yaml does not load: %v", err)
	}
}

// TestLoadConfigErrors holds one file per failure, with the exact message:
// file:line, the key, and what to change, in the file's order.
func TestLoadConfigErrors(t *testing.T) {
	tests := map[string]string{
		"bad-duration.yaml":          `bad-duration.yaml:3: sources[0].tolerance: "5 minutes" is not a duration: write a Go duration such as 30s, 5m or 1h30m`,
		"duplicate-route.yaml":       `duplicate-route.yaml:13: routes[1].name: route name "all" is used twice: names must be unique`,
		"duplicate-sink.yaml":        `duplicate-sink.yaml:9: sinks[1].name: sink name "bus" is used twice: names must be unique`,
		"nats-missing-url.yaml":      `nats-missing-url.yaml:5: sinks[0].url: sink "bus": missing: write "embedded" or your server's nats://host:4222`,
		"nats-unknown-key.yaml":      `nats-unknown-key.yaml:7: sinks[0].jetstream_x: unknown key (known keys: url, creds_file, token, user, password, connect_timeout, jetstream, subject, stream, embedded, skip_probe, content_mode)`,
		"no-secret.yaml":             `no-secret.yaml:2: sources[0].secrets: source "browser-use" has no secret: add the Browser Use webhook secret, e.g. secrets: ["${BROWSER_USE_WEBHOOK_SECRET}"] or secret_files: [/run/secrets/browser-use]`,
		"not-mapping.yaml":           `not-mapping.yaml:1: the file must be a YAML mapping with the keys server, sources, sinks and routes`,
		"status-not-list.yaml":       `status-not-list.yaml:11: routes[0].status: must be a list (e.g. [a, b])`,
		"unknown-sink-in-route.yaml": `unknown-sink-in-route.yaml:13: routes[0].to[0].sink: route "all": unknown sink "buss" (declared sinks: bus)`,
		"unknown-sink-type.yaml":     `unknown-sink-type.yaml:6: sinks[0].type: unknown sink type "natz" (known types: file, http, kafka, nats, pubsub, rabbitmq, redis, sqs)`,
		"unknown-template-var.yaml":  `unknown-template-var.yaml:13: routes[0].to[0].subject: route "all": target "task.{stauts}": unknown variable {stauts}: use {status}, {source}, {task_id} or {data.<key>[.<key>...]}`,
		"when-problems.yaml": `when-problems.yaml:11: routes[0].when: route "typo": column 1: undeclared reference to 'dat' (did you mean 'data'?)
when-problems.yaml:15: routes[1].when: route "unfinished": column 22: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}
when-problems.yaml:18: routes[2].when: route "not-boolean": the expression gives int, not bool: compare it to something (== "vip", > 5, in [...])
when-problems.yaml:21: routes[3].when: route "too-costly": may cost up to 14413223054278659 on a body of max_body_bytes (1048576), more than the limit of 10000000: avoid a pass over a list inside another pass, or lower server.max_body_bytes
when-problems.yaml:24: routes[4].when: route "bad-zone": getHours("Europe/Pariss"): unknown time zone Europe/Pariss: use an IANA name such as "Europe/Paris", or an offset such as "+02:00"
when-problems.yaml:26: routes[5].status: route "neither": no status: list the statuses it takes, "*" for all, or give a when condition
when-problems.yaml:27: routes[5].to[0].subject: route "neither": target "task.{data.metadata..team}": {data.metadata..team} has an empty key: write {data.<key>[.<key>...]} with no leading, trailing or double dots`,
		"unknown-top-key.yaml":   `unknown-top-key.yaml:1: servre: unknown key (known keys: server, delivery, spool, sources, sinks, routes, telemetry)`,
		"unset-env.yaml":         `unset-env.yaml:3: sources[0].secrets[0]: environment variable HOOKBRIDGE_UNSET_SECRET is not set: export it (or write ${HOOKBRIDGE_UNSET_SECRET:-default} for a fallback)`,
		"replay-cache-size.yaml": `replay-cache-size.yaml:2: server.replay_cache_size: -5 is out of range: give 1 to 50000000 ids (34 bytes each), or leave it out for 100000`,
		"jetstream-keys-on-local.yaml": `jetstream-keys-on-local.yaml:2: server.replay_cache: nats keeps the ids in the NATS of the jetstream spool: set spool.backend: jetstream and spool.url, or use memory
jetstream-keys-on-local.yaml:5: spool.url: only applies with backend: jetstream: remove it, or set spool.backend: jetstream
jetstream-keys-on-local.yaml:6: spool.partitions: only applies with backend: jetstream: remove it, or set spool.backend: jetstream`,
		"jetstream-problems.yaml": `jetstream-problems.yaml:5: spool.url: embedded is one process's NATS: every replica must reach the same cluster; write nats://host:4222
jetstream-problems.yaml:6: spool.replicas: 7: use 1, or 3 to survive the loss of a NATS node (at most 5)
jetstream-problems.yaml:7: spool.partitions: 5000: use 1 to 1024 lanes per sink (more lanes, more parallel deliveries)
jetstream-problems.yaml:8: spool.ack_wait: 5s must be longer than server.publish_timeout (10s): NATS would hand a message to another replica while this one still publishes it
jetstream-problems.yaml:14: sinks[0].retry.max_age: 72h0m0s is not shorter than spool.max_age 48h0m0s: the stream would drop messages before they are dead-lettered; shorten it or lengthen spool.max_age
jetstream-problems.yaml:14: sinks[0].name: "bus.main": with spool.backend jetstream a sink name is part of NATS subjects and consumer names: use letters, digits, - and _`,
		"telemetry-problems.yaml": `telemetry-problems.yaml:14: telemetry.exporter: "jaeger": use otlp (export spans) or none (no tracing)
telemetry-problems.yaml:15: telemetry.protocol: "grpcs": use grpc or http/protobuf
telemetry-problems.yaml:16: telemetry.sampler: "sometimes": use one of always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio`,
		"telemetry-values.yaml": `telemetry-values.yaml:14: telemetry.endpoint: "otel-collector:4317" is not an http(s) URL: write the OTLP receiver's, e.g. http://otel-collector:4318
telemetry-values.yaml:15: telemetry.sampler_arg: 1.5 is out of range: give the ratio of traces sampled, 0 to 1
telemetry-values.yaml:16: telemetry.resource_attributes: "team" is not key=value: write e.g. deployment.environment=prod,team=payments`,
		"budgets.yaml":          `budgets.yaml:3: server.max_buffered_bytes: 1000 is less than max_body_bytes (1048576): a body of the largest size allowed could never be read`,
		"write-timeout.yaml":    `write-timeout.yaml:1: server.write_timeout: 30s must be longer than publish_timeout (1m0s): the answer is written after publishing`,
		"wrong-target-key.yaml": `wrong-target-key.yaml:13: routes[0].to[0].topic: route "all": nats sink "bus" takes its target as subject, not topic`,
		"yaml-syntax.yaml":      `yaml-syntax.yaml:12: did not find expected ',' or '}'`,
		"kafka-sqs-problems.yaml": `kafka-sqs-problems.yaml:5: sinks[0].brokers: sink "events": missing: list your brokers, e.g. [kafka-1:9092]
kafka-sqs-problems.yaml:7: sinks[0].compression: sink "events": "brotli": use "none", "gzip", "snappy", "lz4" or "zstd"
kafka-sqs-problems.yaml:15: routes[0].to[0].topic: route "finished": "task finished": a topic name holds only letters, digits, '.', '_' and '-'
kafka-sqs-problems.yaml:19: routes[1].to[0].queue_url: route "alerting": "sqs/alerts" is not an http(s) URL: write the queue's URL, e.g. https://sqs.us-east-1.amazonaws.com/123456789012/tasks
kafka-sqs-problems.yaml:20: routes[1].to[1]: route "alerting": sqs sink "alerts" needs a queue_url here (or a default queue_url on the sink)`,
		"dead-letter-template.yaml": `dead-letter-template.yaml:12: sinks[1].dead_letter.subject: dead letters of sink "audit": "dead.{status}" holds a template variable, which dead letters do not fill in: write a fixed subject such as dead.audit`,
		"content-mode.yaml": `content-mode.yaml:8: sinks[0].content_mode: sink "bus": "Binary" is not a content mode: use "structured" (the whole CloudEvent as the body) or "binary" (data as the body, attributes as headers)
content-mode.yaml:12: sinks[1].content_mode: sink "events": "hybrid" is not a content mode: use "structured" (the whole CloudEvent as the body) or "binary" (data as the body, attributes as headers)`,
		"multiple-problems.yaml": `multiple-problems.yaml:5: sources[1].name: source name "browser-use" is used twice: names must be unique
multiple-problems.yaml:5: sources[1].path: path "/webhook" is used by another source: give each source its own path
multiple-problems.yaml:11: sinks[0].stream.storage: sink "bus": "disk": use "file" or "memory"
multiple-problems.yaml:19: routes[1].to[0].sink: route "audit": unknown sink "audit" (declared sinks: bus)`,
	}
	for file, want := range tests {
		t.Run(file, func(t *testing.T) {
			_, err := Load(filepath.Join("testdata/config", file), testEnv)
			if err == nil {
				t.Fatal("no error")
			}
			got := strings.ReplaceAll(err.Error(), "testdata/config/", "")
			if got != want {
				t.Errorf("error:\n%s\nwant:\n%s", got, want)
			}
			if strings.Contains(got, "whsec_from_env") {
				t.Error("the error shows a secret")
			}
		})
	}
	// Every failure file has a case.
	files, _ := filepath.Glob("testdata/config/*.yaml")
	for _, f := range files {
		base := filepath.Base(f)
		if _, ok := tests[base]; !ok && !strings.HasPrefix(base, "ok-") {
			t.Errorf("%s has no expected error in the table", base)
		}
	}
}

func TestExpandEnv(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{in: "plain", want: "plain"},
		{in: "${BROWSER_USE_WEBHOOK_SECRET}", want: "whsec_from_env"},
		{in: "a-${UNSET:-fallback}-b", want: "a-fallback-b"},
		{in: "${EMPTY:-d}", want: "d"},
		{in: "$$5 and $HOME", want: "$5 and $HOME"},
		{in: "${UNSET}", err: "environment variable UNSET is not set: export it (or write ${UNSET:-default} for a fallback)"},
		{in: "${EMPTY}", err: "environment variable EMPTY is set but empty: give it a value"},
		{in: "${1BAD}", err: "${1BAD} is not a valid variable reference: write ${NAME} or ${NAME:-default}"},
		{in: "${OPEN", err: "unterminated ${ in value: close it with } or write $$ for a literal $"},
	}
	for _, tt := range tests {
		d := newDecoder(testEnv)
		n := &yaml.Node{Kind: yaml.ScalarNode, Value: tt.in, Line: 1}
		got, ok := d.expand(n, "k")
		if tt.err != "" {
			if ok || len(d.errs) != 1 || d.errs[0].Error() != "k: "+tt.err {
				t.Errorf("expand(%q) = %q, %v; want error %q", tt.in, got, d.errs, tt.err)
			}
			continue
		}
		if !ok || got != tt.want {
			t.Errorf("expand(%q) = %q, %v, want %q", tt.in, got, d.errs, tt.want)
		}
	}
}

func TestSecretIsRedacted(t *testing.T) {
	s := Secret("hunter2")
	for _, got := range []string{s.String(), s.GoString()} {
		if strings.Contains(got, "hunter2") {
			t.Errorf("Secret formats as %q", got)
		}
	}
}

// TestSecretFiles: secrets read from files join the inline ones, and the
// errors name the file, never what it holds.
func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "secret")
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(good, []byte("  whsec_from_file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := func(files ...string) string {
		return `sources:
  - name: s
    secret_files: ["` + strings.Join(files, `", "`) + `"]
sinks:
  - {name: f, type: file, path: x.jsonl}
routes:
  - {name: r, status: ["*"], to: [{sink: f}]}
`
	}
	cfg, err := Parse("c.yaml", []byte(yaml(good)), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Sources[0].Secrets) != 1 || cfg.Sources[0].Secrets[0] != "whsec_from_file" {
		t.Errorf("secrets = %d, want the file's", len(cfg.Sources[0].Secrets))
	}
	_, err = Parse("c.yaml", []byte(yaml(good, empty, filepath.Join(dir, "missing"))), testEnv)
	want := fmt.Sprintf("c.yaml:3: sources[0].secret_files[1]: %q is empty: it must hold the webhook secret\n"+
		"c.yaml:3: sources[0].secret_files[2]: cannot read the secret: open %s: no such file or directory", empty, filepath.Join(dir, "missing"))
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
	if err != nil && strings.Contains(err.Error(), "whsec_from_file") {
		t.Error("an error shows a secret")
	}
}

// TestTargetTemplatesIncludeDeadLetters: a sink opens with the targets
// other sinks' dead_letter keys name on it, after its routes' ones and
// without repeats, so that it provisions them too (a JetStream stream
// covers a dead-letter subject no route uses).
func TestTargetTemplatesIncludeDeadLetters(t *testing.T) {
	cfg, err := Parse("dl.yaml", []byte(`
sources:
  - name: browser-use
    secrets: [whsec_x]
sinks:
  - name: bus
    type: nats
    url: nats://127.0.0.1:4222
    jetstream: true
  - name: audit
    type: file
    path: /tmp/audit.jsonl
    dead_letter: {sink: bus, subject: "dead.audit"}
  - name: other
    type: file
    path: /tmp/other.jsonl
    dead_letter: {sink: bus, subject: "task.failed"}
routes:
  - name: all
    status: ["*"]
    to:
      - {sink: bus, subject: "task.{status}"}
      - {sink: audit}
      - {sink: other}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tmpl := range cfg.TargetTemplates("bus") {
		got = append(got, tmpl.String())
	}
	if want := "task.{status} dead.audit task.failed"; strings.Join(got, " ") != want {
		t.Errorf("TargetTemplates(bus) = %q, want %q", got, want)
	}
	if got := cfg.TargetTemplates("audit"); len(got) != 0 {
		t.Errorf("TargetTemplates(audit) = %v, want none: a file sink takes no target", got)
	}
}

func TestWorstCaseMemoryAndLimits(t *testing.T) {
	var c Config
	c.SetDefaults()
	s := c.Server
	if got, want := s.DescribeWorstCase(), "worst-case request memory: 58 MiB (512 connections × 52 KiB + 32 MiB of bodies)"; got != want {
		t.Errorf("default worst case: %q, want %q", got, want)
	}
	files := map[string]string{}
	read := func(name string) ([]byte, error) {
		if v, ok := files[name]; ok {
			return []byte(v), nil
		}
		return nil, os.ErrNotExist
	}
	if l := memoryLimits(math.MaxInt64, read); len(l) != 0 {
		t.Errorf("no limits set: %v", l)
	}
	files["/sys/fs/cgroup/memory.max"] = "max\n"
	files["/sys/fs/cgroup/memory/memory.limit_in_bytes"] = "1000\n" // v2 present: not read
	if l := memoryLimits(math.MaxInt64, read); len(l) != 0 {
		t.Errorf("cgroup v2 without a limit: %v", l)
	}
	delete(files, "/sys/fs/cgroup/memory.max")
	files["/sys/fs/cgroup/memory/memory.limit_in_bytes"] = "9223372036854771712\n" // v1's "unlimited"
	if l := memoryLimits(math.MaxInt64, read); len(l) != 0 {
		t.Errorf("cgroup v1 without a limit: %v", l)
	}
	files["/sys/fs/cgroup/memory.max"] = "134217728\n"
	limits := memoryLimits(40<<20, read)
	if len(limits) != 2 || limits[0] != (MemoryLimit{"GOMEMLIMIT", 40 << 20}) || limits[1] != (MemoryLimit{"/sys/fs/cgroup/memory.max", 128 << 20}) {
		t.Fatalf("limits = %v", limits)
	}
	warn := s.MemoryWarnings(limits)
	if len(warn) != 1 || warn[0] != "worst-case request memory 58 MiB exceeds GOMEMLIMIT (40 MiB): lower server.max_connections or server.max_buffered_bytes" {
		t.Errorf("warnings = %q, want one for GOMEMLIMIT only", warn)
	}
	s.MaxConnections = 4096
	if warn := s.MemoryWarnings(limits); len(warn) != 2 {
		t.Errorf("4096 connections (%s): warnings %q, want both limits", s.DescribeWorstCase(), warn)
	}
}

// TestErrorsScrubEveryFormOfASecret: a validator quotes a bad value with
// %q, so a secret holding a quote, a backslash, a tab or a non-printable
// rune comes out escaped; the loader's scrubbing must remove that form
// too (it removed only the raw value before).
func TestErrorsScrubEveryFormOfASecret(t *testing.T) {
	for _, secret := range []string{`whsec"quo\te` + "\tCANARY", "CANARY\u2028x", `plain_CANARY`} {
		env := func(name string) (string, bool) {
			if name == "S" {
				return secret, true
			}
			return testEnv(name)
		}
		_, err := Parse("c.yaml", []byte(`server:
  listen: "${S}"
sources:
  - {name: s, secrets: ["${S}"]}
sinks:
  - {name: f, type: file, path: x.jsonl}
routes:
  - {name: r, status: ["*"], to: [{sink: f}]}
`), env)
		if err == nil || !strings.Contains(err.Error(), "server.listen") {
			t.Fatalf("%q: err = %v, want a server.listen error", secret, err)
		}
		if strings.Contains(err.Error(), "CANARY") || !strings.Contains(err.Error(), "[redacted]") {
			t.Errorf("%q: the error is not scrubbed: %v", secret, err)
		}
	}
}

// TestSecretsListsEveryCredential: Secrets, which the scrubbers are built
// from, holds the sources' secrets, the sinks' and the spool's
// credentials (the password in a NATS URL too) and every value from the
// environment.
func TestSecretsListsEveryCredential(t *testing.T) {
	cfg, err := Parse("c.yaml", []byte(`spool:
  backend: jetstream
  url: "nats://js:spool_pass@127.0.0.1:4222"
sources:
  - {name: s, secrets: [literal_webhook_secret]}
sinks:
  - {name: n, type: nats, url: "nats://u:url%2Fpass@127.0.0.1:4222, nats://tokenvalue@h:4222", token: nats_token, subject: x}
  - {name: k, type: kafka, brokers: ["h:9092"], topic: t, sasl: {mechanism: plain, username: u, password: kafka_pass}}
  - {name: q, type: sqs, region: us-east-1, queue_url: "https://sqs.us-east-1.amazonaws.com/1/q", access_key_id: AKID, secret_access_key: sqs_secret, session_token: sqs_session}
  - {name: f, type: file, path: "${FILE_PATH}"}
routes:
  - {name: r, status: ["*"], to: [{sink: n}, {sink: k}, {sink: q}, {sink: f}]}
`), func(name string) (string, bool) {
		if name == "FILE_PATH" {
			return "/from/the/env.jsonl", true
		}
		return testEnv(name)
	})
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.Secrets()
	for _, want := range []string{"spool_pass", "literal_webhook_secret", "url%2Fpass", "url/pass", "tokenvalue", "nats_token",
		"kafka_pass", "sqs_secret", "sqs_session", "/from/the/env.jsonl"} {
		if !slices.Contains(got, want) {
			t.Errorf("Secrets() lacks %q: %q", want, got)
		}
	}
	if slices.Contains(got, "AKID") || slices.Contains(got, "u") {
		t.Errorf("Secrets() holds an identifier that is not secret: %q", got)
	}
}

// TestRulesFollowChangesAfterValidation: Rules shares what Validate built
// while the routes are unchanged, and builds anew once they change, in
// place or not; a stale table would route by the old routes.
func TestRulesFollowChangesAfterValidation(t *testing.T) {
	cfg, err := Load("testdata/config/ok-when.yaml", testEnv)
	if err != nil {
		t.Fatal(err)
	}
	first, again := cfg.Rules(), cfg.Rules()
	if len(first) != 4 || &first[0] != &again[0] {
		t.Fatalf("a validated config builds its rules again: %d rules", len(first))
	}
	targets := func() []string {
		var out []string
		for _, r := range cfg.Rules() {
			for _, tg := range r.Targets {
				out = append(out, tg.Template.String())
			}
		}
		return out
	}
	cfg.Routes[0].To[0].Target = "changed.{status}" // in place
	if got := targets(); got[0] != "changed.{status}" {
		t.Errorf("after an in-place change: %v", got)
	}
	cfg.Routes[3].To = append(cfg.Routes[3].To, Target{Sink: "bus", Key: "subject", Target: "audit.{status}"})
	if got := targets(); len(got) != 5 || got[4] != "audit.{status}" {
		t.Errorf("after an append: %v", got)
	}
	cfg.Routes = cfg.Routes[:1]
	if got := cfg.Rules(); len(got) != 1 || got[0].When == nil {
		t.Errorf("after dropping routes: %d rules", len(got))
	}
}

// TestLoadFourSinks: the http, rabbitmq, redis and pubsub sinks load as
// users write them, and an event of any status reaches all four.
func TestLoadFourSinks(t *testing.T) {
	env := func(name string) (string, bool) {
		switch name {
		case "HOOKS_SIGNING_SECRET":
			return "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", true
		}
		return testEnv(name)
	}
	cfg, err := Load("testdata/config/ok-four-sinks.yaml", env)
	if err != nil {
		t.Fatal(err)
	}
	got := route.New(cfg.Rules()).Route(&event.Event{Status: "finished"}).Deliveries
	want := []route.Delivery{{Sink: "hooks", Target: "https://internal.example/browser-use"}, {Sink: "rabbit", Target: "task.finished"}, {Sink: "cache", Target: "tasks"}, {Sink: "gcp", Target: "tasks"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("deliveries %v, want %v", got, want)
	}
	for _, sk := range cfg.Sinks {
		if d := sk.Options.Describe(); strings.Contains(d, "guest:guest") {
			t.Errorf("%s: Describe shows the password: %s", sk.Name, d)
		}
	}
}

// TestSpoolMemory: a full local spool's index is added to what check
// prints and warns about; other spools and sync delivery add nothing.
func TestSpoolMemory(t *testing.T) {
	spooled := func(mod func(*Config)) *Config {
		c := &Config{Delivery: DeliverySpool, Routes: []Route{{Name: "all", Delivery: DeliverySpool}}}
		c.SetDefaults()
		c.Routes[0].Delivery = DeliverySpool
		mod(c)
		return c
	}
	const cache = SpoolCacheBytes
	tests := []struct {
		name     string
		cfg      *Config
		want     int64
		describe string
	}{
		{"defaults: max_events binds", spooled(func(*Config) {}), 1_000_000*SpoolIndexPerMessage + cache,
			"worst-case spool index memory: 175.8 MiB (1000000 waiting messages × 176 B + 8 MiB kept whole)"},
		{"max_bytes binds", spooled(func(c *Config) { c.Spool.MaxBytes = 64 << 20 }), (64<<20)/spoolMessageFloor*SpoolIndexPerMessage + cache,
			"worst-case spool index memory: 52 MiB (262144 waiting messages × 176 B + 8 MiB kept whole)"},
		{"only max_bytes", spooled(func(c *Config) { c.Spool.MaxEvents = 0; c.Spool.MaxBytes = 1 << 20 }), 4096*SpoolIndexPerMessage + cache, ""},
		{"unbounded", spooled(func(c *Config) { c.Spool.MaxEvents, c.Spool.MaxBytes = 0, 0 }), -1,
			"worst-case spool index memory: unbounded (neither spool.max_events nor spool.max_bytes is set): about 176 B per waiting message"},
		{"jetstream spool", spooled(func(c *Config) { c.Spool.Backend = SpoolJetStream }), 0, ""},
		{"sync delivery", spooled(func(c *Config) { c.Routes[0].Delivery = DeliverySync }), 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.cfg.SpoolMemory(); got != tt.want {
				t.Errorf("SpoolMemory = %d, want %d", got, tt.want)
			}
			if tt.describe != "" && tt.cfg.DescribeSpoolMemory() != tt.describe {
				t.Errorf("DescribeSpoolMemory = %q, want %q", tt.cfg.DescribeSpoolMemory(), tt.describe)
			}
		})
	}

	limits := []MemoryLimit{{"GOMEMLIMIT", 128 << 20}, {"/sys/fs/cgroup/memory.max", 512 << 20}}
	warn := tests[0].cfg.MemoryWarnings(limits)
	if len(warn) != 1 || !strings.HasPrefix(warn[0], "worst-case memory 233.8 MiB (requests 58 MiB + spool index 175.8 MiB) exceeds GOMEMLIMIT (128 MiB): lower spool.max_events") {
		t.Errorf("warnings %q, want one for GOMEMLIMIT", warn)
	}
	if warn := tests[3].cfg.MemoryWarnings(limits); len(warn) != 2 || !strings.Contains(warn[0], "unbounded") {
		t.Errorf("unbounded spool: warnings %q", warn)
	}
	if warn := tests[4].cfg.MemoryWarnings(limits); len(warn) != 0 {
		t.Errorf("jetstream spool: warnings %q", warn)
	}
}

// TestLoadTelemetry: the telemetry block's keys, and none filled in when
// it is left out: each then falls back to its OTEL_* variable, which a
// default written here would override (package telemetry).
func TestLoadTelemetry(t *testing.T) {
	cfg, err := Load("testdata/config/ok-telemetry.yaml", testEnv)
	if err != nil {
		t.Fatal(err)
	}
	arg := 0.25
	want := Telemetry{Exporter: "otlp", Endpoint: "http://otel-collector:4318", Protocol: "grpc",
		Sampler: "parentbased_traceidratio", SamplerArg: &arg, ServiceName: "hookbridge-eu",
		ResourceAttributes: "deployment.environment=prod,team=payments", TaskIDAttribute: true}
	if got := cfg.Telemetry; !reflect.DeepEqual(got, want) {
		t.Errorf("telemetry =\n%+v\nwant\n%+v", got, want)
	}
	pairs, err := cfg.Telemetry.Attributes()
	if err != nil || fmt.Sprint(pairs) != "[[deployment.environment prod] [team payments]]" {
		t.Errorf("attributes %v, %v", pairs, err)
	}
	def, err := Load("testdata/config/ok-defaults.yaml", testEnv)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(def.Telemetry, Telemetry{}) {
		t.Errorf("left out, telemetry = %+v: want nothing filled in", def.Telemetry)
	}
}
