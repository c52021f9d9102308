package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hookbridge/hookbridge/bridge/signature"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// Canaries: known secret values that must never appear in anything
// hookbridge writes. Every one holds the marker, which is what the test
// looks for (so a partial echo is caught too).
const (
	leakMarker       = "LEAKCANARY"
	canaryWebhook    = "whsec_LEAKCANARY_5f3a"      // $BROWSER_USE_WEBHOOK_SECRET
	canaryWebhookAlt = "whsec_LEAKCANARY_file_2b7d" // a secret_files file
	canaryNATS       = "pw_LEAKCANARY_9c1e"         // $NATS_PASSWORD
	canarySQS        = "sk_LEAKCANARY_77aa"         // $SQS_SECRET_ACCESS_KEY
	canaryKafka      = "kp_LEAKCANARY_31d0"         // $KAFKA_PASSWORD
	// $HOOKS_SIGNING_SECRET: a Standard Webhooks secret must be whsec_ and
	// the base64 of 24 to 64 bytes; these 44 characters are 33.
	canaryHooks = "whsec_LEAKCANARYhttpSigningSecret0123456789abcdefg"
	canaryRedis = "rp_LEAKCANARY_4e2f" // $REDIS_PASSWORD
)

// leakChecker collects everything the process wrote, by name.
type leakChecker struct {
	outputs map[string]string
	order   []string
}

func (l *leakChecker) add(name, out string) {
	if l.outputs == nil {
		l.outputs = map[string]string{}
	}
	if _, ok := l.outputs[name]; !ok {
		l.order = append(l.order, name)
	}
	l.outputs[name] += out
}

// check fails the test naming every output that holds a canary, in plain
// text or base64 (as in a Basic auth header).
func (l *leakChecker) check(t *testing.T) {
	t.Helper()
	needles := []string{leakMarker}
	for _, c := range []string{canaryWebhook, canaryWebhookAlt, canaryNATS, canarySQS, canaryKafka, canaryHooks, canaryRedis} {
		needles = append(needles, base64.StdEncoding.EncodeToString([]byte(c)),
			base64.StdEncoding.EncodeToString([]byte("hb:"+c)))
	}
	if os.Getenv("HOOKBRIDGE_LEAK_DUMP") != "" { // to review what the test saw
		for _, name := range l.order {
			t.Logf("=== %s\n%s", name, l.outputs[name])
		}
	}
	var leaks []string
	for _, name := range l.order {
		out := l.outputs[name]
		for _, n := range needles {
			if i := strings.Index(out, n); i >= 0 {
				lo, hi := max(0, i-120), min(len(out), i+len(n)+40)
				leaks = append(leaks, fmt.Sprintf("%s:\n\t…%s…", name, out[lo:hi]))
				break
			}
		}
	}
	if len(leaks) > 0 {
		t.Errorf("a secret appeared in %d of %d outputs:\n%s", len(leaks), len(l.order), strings.Join(leaks, "\n"))
	}
	if len(l.order) < 60 {
		t.Errorf("only %d outputs collected: the test lost coverage", len(l.order))
	}
}

// leakConfig is the config the serve part runs: the webhook secret from
// the environment and from a file, a NATS sink (unreachable) whose URL
// holds a password from the environment, an SQS sink (unreachable) with a
// static secret key from the environment, the embedded NATS and a file.
const leakConfig = `
server:
  listen: "{{WEBHOOK}}"
  admin_listen: "127.0.0.1:0"
  pprof: true
  max_body_bytes: 65536
  publish_timeout: 2s
  retry_after: 1s
spool:
  dir: {{DIR}}/spool
sources:
  - name: browser-use
    path: /webhook
    secrets: ["${BROWSER_USE_WEBHOOK_SECRET}"]
    secret_files: [{{DIR}}/webhook-secret]
    tolerance: 5m
sinks:
  - name: bus
    type: nats
    url: embedded
    jetstream: true
    embedded: {listen: "{{NATS}}", store_dir: {{DIR}}/nats}
  - name: remote
    type: nats
    url: "nats://hb:${NATS_PASSWORD}@{{CLOSED}}"
    connect_timeout: 1s
    skip_probe: true
  - name: alerts
    type: sqs
    region: us-east-1
    endpoint: "http://{{CLOSED}}"
    queue_url: "http://{{CLOSED}}/000000000000/alerts"
    access_key_id: AKIDHOOKBRIDGETEST
    secret_access_key: "${SQS_SECRET_ACCESS_KEY}"
    skip_probe: true
    retry: {min_backoff: 10ms, max_backoff: 50ms, max_attempts: 2}
  - name: audit
    type: file
    path: {{DIR}}/events.jsonl
  - name: hooks
    type: http
    url: "http://hb:${REDIS_PASSWORD}@{{CLOSED}}/hooks?token=${REDIS_PASSWORD}"
    secret: "${HOOKS_SIGNING_SECRET}"
    timeout: 1s
  - name: cache
    type: redis
    url: "redis://:${REDIS_PASSWORD}@{{CLOSED}}/0"
    connect_timeout: 1s
    skip_probe: true
  - name: rabbit
    type: rabbitmq
    url: "amqp://hb:${REDIS_PASSWORD}@{{CLOSED}}/"
    exchange: tasks
    routing_key: "task.{status}"
    connect_timeout: 1s
    skip_probe: true
routes:
  - name: finished
    status: [finished]
    to:
      - {sink: bus, subject: "task.{status}"}
  - name: alerting
    status: [paused]
    to:
      - {sink: alerts}
  - name: stopped-sync
    status: [stopped]
    delivery: sync
    to:
      - {sink: remote, subject: "task.{status}"}
  - name: everything
    status: ["*"]
    to:
      - {sink: audit}
  - name: initializing-sync
    status: [initializing]
    delivery: sync
    to:
      - {sink: hooks}
      - {sink: cache, stream: "tasks"}
      - {sink: rabbit}
`

// TestSecretLeak drives every path that could echo a secret — serve's
// logs, every webhook answer, the admin endpoints, reloads, and each
// command's output on valid and invalid configs — with known secrets, and
// fails naming each output that held one.
func TestSecretLeak(t *testing.T) {
	t.Run("escaped forms", testSecretLeakForms)
	dir := t.TempDir()
	webhookAddr, natsAddr, closedAddr := sinktest.FreeAddr(t), sinktest.FreeAddr(t), sinktest.FreeAddr(t)
	expand := func(s string) string {
		return strings.NewReplacer("{{WEBHOOK}}", webhookAddr, "{{NATS}}", natsAddr,
			"{{CLOSED}}", closedAddr, "{{DIR}}", dir).Replace(s)
	}
	write := func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("webhook-secret", canaryWebhookAlt+"\n")
	cfgPath := write("config.yaml", expand(leakConfig))
	vars := map[string]string{
		"BROWSER_USE_WEBHOOK_SECRET": canaryWebhook,
		"NATS_PASSWORD":              canaryNATS,
		"SQS_SECRET_ACCESS_KEY":      canarySQS,
		"KAFKA_PASSWORD":             canaryKafka,
		"HOOKS_SIGNING_SECRET":       canaryHooks,
		"REDIS_PASSWORD":             canaryRedis,
	}
	lookup := func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	var leaks leakChecker
	defer leaks.check(t)

	// runAll runs one command in-process and collects what it wrote.
	runAll := func(ctx context.Context, name string, stdin string, args ...string) (int, string, string) {
		t.Helper()
		var out, errb bytes.Buffer
		code := run(ctx, args, env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb, lookupEnv: lookup})
		leaks.add(name+" (stdout)", out.String())
		leaks.add(name+" (stderr)", errb.String())
		return code, out.String(), errb.String()
	}

	// --- serve, with debug logs, on the config above ---
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var serveOut, serveErr sinktest.Buffer
	serveDone := make(chan int, 1)
	go func() {
		serveDone <- run(ctx, []string{"serve", "-config", cfgPath, "-log-level", "debug", "-watch", "50ms"},
			env{stdin: strings.NewReader(""), stdout: &serveOut, stderr: &serveErr, lookupEnv: lookup})
	}()
	serveStopped := false
	defer func() {
		if !serveStopped {
			cancel()
			<-serveDone
		}
		leaks.add("serve logs (stdout)", serveOut.String())
		leaks.add("serve logs (stderr)", serveErr.String())
	}()
	adminRE := regexp.MustCompile(`hookbridge listening.*admin=(\S+)`)
	var adminAddr string
	sinktest.WaitFor(t, "serve to listen", func() bool {
		select {
		case code := <-serveDone:
			serveStopped = true
			t.Fatalf("serve exited %d: %s", code, serveErr.String())
		default:
		}
		m := adminRE.FindStringSubmatch(serveErr.String())
		if m != nil {
			adminAddr = m[1]
		}
		return m != nil
	})

	client := &http.Client{Timeout: 20 * time.Second}
	record := func(name string, resp *http.Response, err error) int {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var b strings.Builder
		fmt.Fprintf(&b, "%s\n", resp.Status)
		keys := make([]string, 0, len(resp.Header))
		for k := range resp.Header {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "%s: %s\n", k, strings.Join(resp.Header[k], ", "))
		}
		b.Write(body)
		leaks.add(name, b.String())
		return resp.StatusCode
	}
	get := func(path string) int {
		t.Helper()
		resp, err := client.Get("http://" + adminAddr + path)
		return record("admin GET "+path, resp, err)
	}

	now := func() string { return strconv.FormatInt(time.Now().Unix(), 10) }
	sign := func(secret, ts, body string) string {
		var cz signature.Canonicalizer
		c, err := cz.Canonicalize([]byte(body))
		if err != nil {
			return strings.Repeat("0", 64) // not JSON: any well-formed signature
		}
		return signature.Sign([]byte(secret), ts, c.JSON)
	}
	envelope := func(status, task string) string {
		return `{"type": "agent.task.status_update", "timestamp": "2025-05-25T09:22:22.269116+00:00", "payload": ` +
			`{"session_id": "s-` + task + `", "task_id": "` + task + `", "status": "` + status + `"}}`
	}
	deep := strings.Repeat("[", 200) + strings.Repeat("]", 200)
	webhookURL := "http://" + webhookAddr

	type webhook struct {
		name    string
		method  string
		path    string
		body    string
		secret  string            // signs the body when set
		ts      string            // default: now
		headers map[string]string // overrides, "" deletes
		want    int
	}
	hooks := []webhook{
		{name: "right secret (env)", body: envelope("finished", "t-env"), secret: canaryWebhook, want: 200},
		{name: "right secret (secret_files)", body: envelope("finished", "t-file"), secret: canaryWebhookAlt, want: 200},
		{name: "repeat: duplicate", body: envelope("finished", "t-env"), secret: canaryWebhook, want: 200},
		{name: "flat body", body: `{"session_id": "s1", "task_id": "t-flat", "status": "finished"}`, secret: canaryWebhook, want: 200},
		{name: "test delivery", body: `{"type": "test", "timestamp": "2025-05-25T09:22:22.269116+00:00", "payload": {"test": "ok"}}`, secret: canaryWebhook, want: 200},
		{name: "unrouted status", body: envelope("started", "t-started"), secret: canaryWebhook, want: 200},
		{name: "paused to unreachable SQS (spooled)", body: envelope("paused", "t-paused"), secret: canaryWebhook, want: 200},
		{name: "stopped to unreachable NATS (sync)", body: envelope("stopped", "t-stopped"), secret: canaryWebhook, want: 503},
		{name: "initializing to unreachable HTTP, Redis and RabbitMQ (sync)", body: envelope("initializing", "t-init"), secret: canaryWebhook, want: 503},
		{name: "wrong secret", body: envelope("finished", "t-wrong"), secret: "whsec_wrong", want: 403},
		{name: "secret with a suffix", body: envelope("finished", "t-wrong2"), secret: canaryWebhook + "x", want: 403},
		{name: "signature in upper case", body: envelope("finished", "t-upper"), secret: canaryWebhook,
			headers: map[string]string{signature.HeaderSignature: strings.ToUpper(sign(canaryWebhook, "", envelope("finished", "t-upper")))}, want: 403},
		{name: "signature truncated", body: envelope("finished", "t-trunc"), secret: canaryWebhook,
			headers: map[string]string{signature.HeaderSignature: "abc123"}, want: 403},
		{name: "tampered body", body: envelope("finished", "t-tampered"), secret: canaryWebhook,
			headers: map[string]string{signature.HeaderSignature: sign(canaryWebhook, "", envelope("finished", "t-other"))}, want: 403},
		{name: "stale timestamp", body: envelope("finished", "t-stale"), secret: canaryWebhook,
			ts: strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10), want: 403},
		{name: "future timestamp", body: envelope("finished", "t-future"), secret: canaryWebhook,
			ts: strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10), want: 403},
		{name: "unparseable timestamp", body: envelope("finished", "t-unparsed"), secret: canaryWebhook, ts: "yesterday", want: 403},
		{name: "missing signature", body: envelope("finished", "t-nosig"), secret: canaryWebhook,
			headers: map[string]string{signature.HeaderSignature: ""}, want: 400},
		{name: "missing timestamp", body: envelope("finished", "t-nots"), secret: canaryWebhook,
			headers: map[string]string{signature.HeaderTimestamp: ""}, want: 400},
		{name: "no headers at all", body: envelope("finished", "t-none"), want: 400},
		{name: "not JSON", body: "status=finished&secret=x", secret: canaryWebhook, want: 400},
		{name: "truncated JSON", body: `{"status": "fin`, secret: canaryWebhook, want: 400},
		{name: "invalid UTF-8", body: "{\"status\": \"fin\xff\xfe\"}", secret: canaryWebhook, want: 400},
		{name: "not an object", body: `["finished"]`, secret: canaryWebhook, want: 400},
		{name: "too deep", body: `{"a": ` + deep + `}`, secret: canaryWebhook, want: 400},
		{name: "huge integer", body: `{"status": "finished", "n": ` + strings.Repeat("9", 5000) + `}`, secret: canaryWebhook, want: 400},
		{name: "no status", body: `{"task_id": "t-nostatus"}`, secret: canaryWebhook, want: 422},
		{name: "too large", body: `{"pad": "` + strings.Repeat("x", 100<<10) + `"}`, secret: canaryWebhook, want: 413},
		{name: "GET", method: http.MethodGet, want: 405},
		{name: "unknown path", path: "/nope", body: "{}", secret: canaryWebhook, want: 404},
	}
	for _, h := range hooks {
		method, path := h.method, h.path
		if method == "" {
			method = http.MethodPost
		}
		if path == "" {
			path = "/webhook"
		}
		req, err := http.NewRequest(method, webhookURL+path, strings.NewReader(h.body))
		if err != nil {
			t.Fatal(err)
		}
		ts := h.ts
		if ts == "" {
			ts = now()
		}
		if h.secret != "" {
			req.Header.Set(signature.HeaderTimestamp, ts)
			req.Header.Set(signature.HeaderSignature, sign(h.secret, ts, h.body))
		}
		for k, v := range h.headers {
			if k == signature.HeaderSignature && v != "" && h.secret != "" && !strings.Contains(h.name, "truncated") && !strings.Contains(h.name, "tampered") {
				v = sign(canaryWebhook, ts, h.body) // re-sign with this request's timestamp
				if strings.Contains(h.name, "upper case") {
					v = strings.ToUpper(v)
				}
			}
			if v == "" {
				req.Header.Del(k)
			} else {
				req.Header.Set(k, v)
			}
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if got := record("webhook "+h.name, resp, err); got != h.want {
			t.Errorf("webhook %s: status %d, want %d (%s)", h.name, got, h.want, leaks.outputs["webhook "+h.name])
		}
	}

	// The spool dispatcher fails against the unreachable SQS and dead-letters.
	metrics := func() string {
		resp, err := client.Get("http://" + adminAddr + "/metrics")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	sinktest.WaitFor(t, "the SQS message to be dead-lettered", func() bool {
		return strings.Contains(metrics(), `hookbridge_dead_letters_total{sink="alerts"} 1`)
	})
	for _, p := range []string{"/metrics", "/healthz", "/readyz", "/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/goroutine?debug=1", "/nope"} {
		get(p)
	}

	// A reload to a file with errors right next to the secrets: the secret
	// used where a duration goes, a NATS URL with a password that is not a
	// URL, an SQS endpoint holding credentials. The running config stays.
	broken := strings.NewReplacer(
		"tolerance: 5m", `tolerance: "${BROWSER_USE_WEBHOOK_SECRET}"`,
		`url: "nats://hb:${NATS_PASSWORD}@`+closedAddr+`"`, `url: "nats://hb:${NATS_PASSWORD}@`+closedAddr+`:x/"`,
		`endpoint: "http://`+closedAddr+`"`, `endpoint: "http://AKIDHOOKBRIDGETEST:${SQS_SECRET_ACCESS_KEY}@`+closedAddr+`"`,
	).Replace(expand(leakConfig))
	if err := os.WriteFile(cfgPath, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	sinktest.WaitFor(t, "the reload to fail", func() bool {
		return strings.Contains(metrics(), `hookbridge_config_reloads_total{result="failure"} 1`)
	})
	// And back to a valid file with the secret file rotated: a reload that works.
	write("webhook-secret", canaryWebhookAlt+"_rotated\n")
	if err := os.WriteFile(cfgPath, []byte(expand(leakConfig)), 0o600); err != nil {
		t.Fatal(err)
	}
	sinktest.WaitFor(t, "the reload to succeed", func() bool {
		return strings.Contains(metrics(), `hookbridge_config_reloads_total{result="success"} 1`)
	})
	get("/metrics")
	get("/readyz")

	// send, against the running serve.
	runAll(ctx, "send right secret", "", "send", "-url", webhookURL+"/webhook", "-status", "finished")
	runAll(ctx, "send -secret rotated", "", "send", "-url", webhookURL+"/webhook", "-secret", canaryWebhookAlt+"_rotated", "-flat")
	if code, _, _ := runAll(ctx, "send wrong secret", "", "send", "-url", webhookURL+"/webhook", "-secret", "whsec_wrong_"+leakMarker[:4]); code != 1 {
		t.Errorf("send with a wrong secret: exit %d, want 1", code)
	}
	runAll(ctx, "send old file secret (rotated out)", "", "send", "-url", webhookURL+"/webhook", "-secret", canaryWebhookAlt)
	runAll(ctx, "send stopped (503)", "", "send", "-url", webhookURL+"/webhook", "-status", "stopped")
	runAll(ctx, "send to a closed port", "", "send", "-url", "http://"+closedAddr+"/webhook")
	runAll(ctx, "send to a bad URL", "", "send", "-url", "http://%zz/webhook")
	// tail: the remote NATS sink (password in its URL) is unreachable.
	runAll(ctx, "tail -sink remote", "", "tail", "-config", cfgPath, "-sink", "remote")
	runAll(ctx, "tail -url with a password", "", "tail", "-url", "nats://hb:"+canaryNATS+"@"+closedAddr)

	cancel()
	serveStopped = true
	if code := <-serveDone; code != 0 {
		t.Errorf("serve exited %d", code)
	}

	// --- commands on the stopped spool and on configs ---
	bg := context.Background()
	runAll(bg, "spool ls", "", "spool", "ls", "-config", cfgPath)
	runAll(bg, "spool ls -dead", "", "spool", "ls", "-config", cfgPath, "-dead")
	runAll(bg, "spool replay -all", "", "spool", "replay", "-config", cfgPath, "-all")
	runAll(bg, "spool drop -all", "", "spool", "drop", "-config", cfgPath, "-all")
	if code, _, stderr := runAll(bg, "check valid", "", "check", "-config", cfgPath); code != 0 {
		t.Errorf("check of the valid config: exit %d: %s", code, stderr)
	}
	runAll(bg, "check -explain", "", "check", "-config", cfgPath, "-explain", `{"status":"paused","task_id":"t1"}`)
	runAll(bg, "check -explain bad JSON", "", "check", "-config", cfgPath, "-explain", `{"status":`)

	// Invalid configs, each error next to a secret: check and serve must
	// both refuse them without quoting it.
	type broke struct {
		name     string
		old, new string
		unset    string // an environment variable to unset for this case
	}
	broken2 := []broke{
		{name: "bad duration next to the secret", old: "tolerance: 5m", new: "tolerance: 5 minutes"},
		{name: "the secret where a duration goes", old: "tolerance: 5m", new: `tolerance: "${BROWSER_USE_WEBHOOK_SECRET}"`},
		{name: "the secret where a number goes", old: "retry_after: 1s", new: "retry_after: 1s\n  max_body_bytes: ${BROWSER_USE_WEBHOOK_SECRET}"},
		{name: "the secret where a boolean goes", old: "pprof: true", new: `pprof: "${NATS_PASSWORD}"`},
		{name: "the secret inside a duration", old: "tolerance: 5m", new: `tolerance: "5m${BROWSER_USE_WEBHOOK_SECRET}"`},
		{name: "unknown key next to the secret", old: "    tolerance: 5m", new: "    tolerance: 5m\n    secret: \"${BROWSER_USE_WEBHOOK_SECRET}\""},
		{name: "unset variable", old: "", new: "", unset: "NATS_PASSWORD"},
		{name: "unset webhook secret", old: "", new: "", unset: "BROWSER_USE_WEBHOOK_SECRET"},
		{name: "missing secret file", old: dir + "/webhook-secret", new: dir + "/no-such-secret"},
		{name: "empty secret file", old: dir + "/webhook-secret", new: write("empty-secret", "\n")},
		{name: "NATS URL with a password and a bad port", old: `@` + closedAddr + `"`, new: `@` + closedAddr + `:x"`},
		{name: "NATS URL with a password and a bad scheme", old: `url: "nats://hb:`, new: `url: "http://hb:`},
		{name: "NATS URL with a password, not a URL", old: `url: "nats://hb:${NATS_PASSWORD}@` + closedAddr + `"`, new: `url: "hb:${NATS_PASSWORD}@%zz"`},
		{name: "NATS URL list with a password", old: `url: "nats://hb:${NATS_PASSWORD}@` + closedAddr + `"`, new: `url: "nats://hb:${NATS_PASSWORD}@` + closedAddr + `, ftp://hb:${NATS_PASSWORD}@h"`},
		{name: "NATS password without a user", old: `url: "nats://hb:${NATS_PASSWORD}@` + closedAddr + `"`, new: `url: "nats://` + closedAddr + `"` + "\n    password: \"${NATS_PASSWORD}\""},
		{name: "SQS endpoint with credentials", old: `endpoint: "http://` + closedAddr + `"`, new: `endpoint: "http://AKIDHOOKBRIDGETEST:${SQS_SECRET_ACCESS_KEY}@` + closedAddr + `"`},
		{name: "SQS endpoint not a URL", old: `endpoint: "http://` + closedAddr + `"`, new: `endpoint: "${SQS_SECRET_ACCESS_KEY}"`},
		{name: "SQS queue URL is the secret", old: `queue_url: "http://` + closedAddr + `/000000000000/alerts"`, new: `queue_url: "${SQS_SECRET_ACCESS_KEY}"`},
		{name: "SQS secret without key id", old: "    access_key_id: AKIDHOOKBRIDGETEST\n", new: ""},
		{name: "the secret as a sink type", old: "type: file", new: `type: "${SQS_SECRET_ACCESS_KEY}"`},
		{name: "the secret as a subject", old: `{sink: bus, subject: "task.{status}"}`, new: `{sink: bus, subject: "task.${NATS_PASSWORD}.{bad"}`},
		{name: "the secret as a listen address", old: `listen: "` + webhookAddr + `"`, new: `listen: "${BROWSER_USE_WEBHOOK_SECRET}"`},
		{name: "the secret as a spool backend", old: "  dir: " + dir + "/spool", new: "  dir: " + dir + "/spool\n  backend: \"${BROWSER_USE_WEBHOOK_SECRET}\""},
		{name: "kafka sasl password with a bad mechanism", old: "routes:", new: "  - name: events\n    type: kafka\n    brokers: [\"" + closedAddr + "\"]\n    topic: t\n    sasl: {mechanism: \"${KAFKA_PASSWORD}\", username: hb, password: \"${KAFKA_PASSWORD}\"}\nroutes:"},
		{name: "kafka broker is the secret", old: "routes:", new: "  - name: events\n    type: kafka\n    brokers: [\"${KAFKA_PASSWORD}\"]\n    topic: t\nroutes:"},
		{name: "kafka broker with credentials", old: "routes:", new: "  - name: events\n    type: kafka\n    brokers: [\"hb:${KAFKA_PASSWORD}@" + closedAddr + "\"]\n    topic: t\nroutes:"},
		{name: "YAML syntax error", old: "sources:", new: "sources: [\n"},
	}
	for _, b := range broken2 {
		cfg := expand(leakConfig)
		if b.old != "" {
			if !strings.Contains(cfg, b.old) {
				t.Fatalf("%s: the config has no %q: update the case", b.name, b.old)
			}
			cfg = strings.Replace(cfg, b.old, b.new, 1)
		}
		p := write("broken.yaml", cfg)
		saved, had := vars[b.unset]
		if b.unset != "" {
			delete(vars, b.unset)
		}
		for _, cmd := range []string{"check", "serve"} {
			// The bound only stops a serve that started by mistake.
			cctx, ccancel := context.WithTimeout(bg, time.Minute)
			if code, _, stderr := runAll(cctx, cmd+" "+b.name, "", cmd, "-config", p); code != 1 {
				t.Errorf("%s %s: exit %d, want 1: %s", cmd, b.name, code, stderr)
			}
			ccancel()
		}
		runAll(bg, "spool ls "+b.name, "", "spool", "ls", "-config", p)
		if had {
			vars[b.unset] = saved
		}
	}

	// serve fails to start: brokers with credentials that cannot be reached.
	startFail := []broke{
		{name: "NATS unreachable, password in the URL", old: "    connect_timeout: 1s\n    skip_probe: true\n", new: "    connect_timeout: 1s\n"},
		{name: "NATS unreachable, user and password keys", old: `url: "nats://hb:${NATS_PASSWORD}@` + closedAddr + `"` + "\n    connect_timeout: 1s\n    skip_probe: true\n",
			new: `url: "nats://` + closedAddr + `"` + "\n    user: hb\n    password: \"${NATS_PASSWORD}\"\n    connect_timeout: 1s\n"},
		{name: "jetstream spool unreachable, password in the URL", old: "spool:\n  dir: " + dir + "/spool\n",
			new: "spool:\n  backend: jetstream\n  url: \"nats://hb:${NATS_PASSWORD}@" + closedAddr + "\"\n  connect_timeout: 1s\n"},
		{name: "jetstream spool unreachable, user and password keys", old: "spool:\n  dir: " + dir + "/spool\n",
			new: "spool:\n  backend: jetstream\n  url: \"nats://" + closedAddr + "\"\n  user: hb\n  password: \"${NATS_PASSWORD}\"\n  connect_timeout: 1s\n"},
		{name: "SQS unreachable, static keys", old: "    skip_probe: true\n    retry:", new: "    retry:"},
		{name: "Kafka unreachable, sasl password", old: "routes:", new: "  - name: events\n    type: kafka\n    brokers: [\"" + closedAddr + "\"]\n    topic: t\n    write_timeout: 2s\n    sasl: {mechanism: plain, username: hb, password: \"${KAFKA_PASSWORD}\"}\nroutes:"},
	}
	for i, b := range startFail {
		cfg := expand(leakConfig)
		if !strings.Contains(cfg, b.old) {
			t.Fatalf("%s: the config has no %q: update the case", b.name, b.old)
		}
		cfg = strings.Replace(cfg, b.old, b.new, 1)
		// Its own ports and storage: the embedded NATS must start for the
		// failure to be the broker's.
		cfg = strings.NewReplacer(webhookAddr, sinktest.FreeAddr(t), natsAddr, sinktest.FreeAddr(t),
			dir+"/spool", filepath.Join(dir, "spool"+strconv.Itoa(i)), dir+"/nats", filepath.Join(dir, "nats"+strconv.Itoa(i))).Replace(cfg)
		p := write("startfail.yaml", cfg)
		runAll(bg, "check "+b.name, "", "check", "-config", p)
		runAll(bg, "spool ls "+b.name, "", "spool", "ls", "-config", p)
		sctx, scancel := context.WithTimeout(bg, 2*time.Minute) // a bound, not an assertion
		if code, _, stderr := runAll(sctx, "serve "+b.name, "", "serve", "-config", p, "-log-level", "debug"); code != 1 {
			t.Errorf("serve %s: exit %d, want 1: %s", b.name, code, stderr)
		}
		scancel()
	}

	// verify and sign.
	body := envelope("finished", "t-verify")
	ts := now()
	good := sign(canaryWebhook, ts, body)
	runAll(bg, "verify valid -v", body, "verify", "-secret", canaryWebhook, "-timestamp", ts, "-signature", good, "-v")
	runAll(bg, "verify wrong signature -v", body, "verify", "-secret", canaryWebhook, "-timestamp", ts, "-signature", sign("whsec_other", ts, body), "-v")
	runAll(bg, "verify wrong secret", body, "verify", "-secret", canaryWebhookAlt, "-timestamp", ts, "-signature", good)
	runAll(bg, "verify malformed signature", body, "verify", "-secret", canaryWebhook, "-timestamp", ts, "-signature", "zz")
	runAll(bg, "verify not JSON", "secret="+"x", "verify", "-secret", canaryWebhook, "-timestamp", ts, "-signature", good)
	runAll(bg, "verify stale", body, "verify", "-secret", canaryWebhook, "-timestamp", "1000000000", "-signature", sign(canaryWebhook, "1000000000", body), "-tolerance", "5m")
	runAll(bg, "verify unparseable timestamp", body, "verify", "-secret", canaryWebhook, "-timestamp", "soon", "-signature", sign(canaryWebhook, "soon", body), "-tolerance", "5m")
	runAll(bg, "verify missing -signature", body, "verify", "-secret", canaryWebhook, "-timestamp", ts)
	if code, stdout, _ := runAll(bg, "sign", body, "sign", "-secret", canaryWebhook, "-timestamp", ts); code != 0 || !strings.Contains(stdout, good) {
		t.Errorf("sign: exit %d, stdout %q, want the signature %s", code, stdout, good)
	}
	runAll(bg, "sign not JSON", "{", "sign", "-secret", canaryWebhook)
	runAll(bg, "help sign", "", "help", "sign")
}

// formsConfig is the config of the escaped-forms cases: a file sink and a
// NATS sink that each case bends to hold $LEAK_SECRET somewhere.
const formsConfig = `
server:
  listen: "{{LISTEN}}"
  admin_listen: "127.0.0.1:0"
spool:
  dir: {{DIR}}/spool
sources:
  - name: browser-use
    secrets: ["${BROWSER_USE_WEBHOOK_SECRET}"]
sinks:
  - name: audit
    type: file
    path: {{DIR}}/events.jsonl
routes:
  - name: everything
    status: ["*"]
    to: [{sink: audit}]
`

// testSecretLeakForms runs check and serve with secrets that Go, JSON and
// URL escaping change (quotes, backslashes, tabs, %, non-ASCII), each
// put where it ends up in an error or a log line: at config load (quoted
// with %q by a validator), at start-up (a file sink path that cannot be
// created), in check's output, and in serve's logs, text and JSON (a
// reload whose file sink cannot be opened). Every form must be scrubbed:
// each canary holds leakMarker, which escaping leaves intact. Every one of
// these cases failed before the redact package existed...
//
// Except the NATS cases other than the comma one (a password in the URL or
// in the password key, the broker unreachable), which passed before too, since
// natssink.Redact drops user info and the client does not quote a
// password: they guard that path, which now has the scrubber behind it.
func testSecretLeakForms(t *testing.T) {
	secrets := []struct{ name, value string }{
		{"quotes", `q"LEAKCANARY"q`},
		{"backslashes", `b\LEAKCANARY\x`},
		{"tabs", "t\tLEAKCANARY\tt"},
		{"percent", "p%LEAKCANARY%2Fx"},
		{"non-ASCII", "üLEAKCANARYé€\u2028"},
	}
	type scenario struct {
		name     string
		old, new string
		cmd      string // check or serve
		code     int    // the exit code serve or check must give
		// reload: serve starts on formsConfig, and the change is a
		// reload that fails; its log line must be scrubbed.
		reload bool
		args   []string // more arguments
		// skip names secrets the case does not apply to: a validator's
		// %q leaves a % as it is, so the raw-value scrub always caught
		// it there.
		skip string
		// only runs the case with this secret alone.
		only *struct{ name, value string }
	}
	// A comma splits a NATS URL list inside the password: the validator
	// quoted the pieces, which are no form of the whole secret.
	comma := &struct{ name, value string }{"comma", "c,LEAKCANARY,c"}
	const (
		listen   = `listen: "{{LISTEN}}"`
		path     = "path: {{DIR}}/events.jsonl"
		badPath  = "path: \"{{DIR}}/not-a-dir/${LEAK_SECRET}/events.jsonl\""
		secPath  = "path: \"{{DIR}}/${LEAK_SECRET}.jsonl\""
		natsURL  = "  - name: remote\n    type: nats\n    url: \"nats://hb:${LEAK_SECRET}@{{CLOSED}}\"\n    connect_timeout: 1s\nroutes:"
		natsPass = "  - name: remote\n    type: nats\n    url: \"nats://{{CLOSED}}\"\n    user: hb\n    password: \"${LEAK_SECRET}\"\n    connect_timeout: 1s\nroutes:"
	)
	scenarios := []scenario{
		{name: "config load: check, the secret as the listen address", old: listen, new: `listen: "${LEAK_SECRET}"`, cmd: "check", code: 1, skip: "percent"},
		{name: "config load: serve, the secret as the listen address", old: listen, new: `listen: "${LEAK_SECRET}"`, cmd: "serve", code: 1, skip: "percent"},
		{name: "start-up: a file sink path from the secret that cannot be created", old: path, new: badPath, cmd: "serve", code: 1},
		{name: "check output: a file sink path from the secret", old: path, new: secPath, cmd: "check", code: 0},
		{name: "logs: a reload whose file sink path from the secret cannot be created", old: path, new: badPath, cmd: "serve", reload: true},
		{name: "logs (json): a reload whose file sink path from the secret cannot be created", old: path, new: badPath, cmd: "serve", reload: true, args: []string{"-log-format", "json"}},
		{name: "a NATS URL holding the password (refused at load, or failing to connect)", old: "routes:", new: natsURL, cmd: "serve", code: 1},
		{name: "config load: a NATS URL whose password holds a comma", old: "routes:", new: natsURL, cmd: "check", code: 1, only: comma},
		{name: "start-up: a NATS password key that fails to connect", old: "routes:", new: natsPass, cmd: "serve", code: 1},
	}
	for _, sc := range scenarios {
		secrets := secrets
		if sc.only != nil {
			secrets = secrets[:0:0]
			secrets = append(secrets, *sc.only)
		}
		for _, sec := range secrets {
			if sec.name == sc.skip {
				continue
			}
			t.Run(sc.name+"/"+sec.name, func(t *testing.T) {
				dir := t.TempDir()
				if err := os.WriteFile(filepath.Join(dir, "not-a-dir"), nil, 0o600); err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(formsConfig, sc.old) {
					t.Fatalf("the config has no %q: update the case", sc.old)
				}
				expand := strings.NewReplacer("{{LISTEN}}", sinktest.FreeAddr(t), "{{CLOSED}}", sinktest.FreeAddr(t), "{{DIR}}", dir).Replace
				changed := expand(strings.Replace(formsConfig, sc.old, sc.new, 1))
				first := changed
				if sc.reload {
					first = expand(formsConfig)
				}
				p := filepath.Join(dir, "config.yaml")
				if err := os.WriteFile(p, []byte(first), 0o600); err != nil {
					t.Fatal(err)
				}
				vars := map[string]string{"BROWSER_USE_WEBHOOK_SECRET": "whsec_forms_test", "LEAK_SECRET": sec.value}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // a bound, not an assertion
				defer cancel()
				var out, errb sinktest.Buffer
				args := append([]string{sc.cmd, "-config", p}, sc.args...)
				if sc.cmd == "serve" {
					args = append(args, "-log-level", "debug", "-watch", "20ms")
				}
				done := make(chan int, 1)
				go func() {
					done <- run(ctx, args, env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb,
						lookupEnv: func(k string) (string, bool) { v, ok := vars[k]; return v, ok }})
				}()
				if sc.reload {
					sinktest.WaitFor(t, "serve to listen", func() bool { return strings.Contains(errb.String(), "hookbridge listening") })
					if err := os.WriteFile(p, []byte(changed), 0o600); err != nil {
						t.Fatal(err)
					}
					sinktest.WaitFor(t, "the reload to fail", func() bool { return strings.Contains(errb.String(), "config reload failed") })
					cancel()
				}
				if code := <-done; code != sc.code {
					t.Errorf("%s: exit %d, want %d: %s", sc.cmd, code, sc.code, errb.String())
				}
				for name, s := range map[string]string{"stdout": out.String(), "stderr": errb.String()} {
					if i := strings.Index(s, leakMarker); i >= 0 {
						t.Errorf("the secret is in %s's %s:\n\t…%s…", sc.cmd, name, s[max(0, i-120):min(len(s), i+60)])
					}
				}
			})
		}
	}
}
