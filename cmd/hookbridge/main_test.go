package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCmd runs the CLI in-process.
func runCmd(t *testing.T, stdin string, envVars map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, env{
		stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb,
		lookupEnv: func(k string) (string, bool) { v, ok := envVars[k]; return v, ok },
	})
	return code, out.String(), errb.String()
}

// The first CPython vector of ../../shared/vectors/signatures.json.
const (
	vecSecret = "whsec_test_secret"
	vecTS     = "1776397250"
	vecBody   = `{"session_id": "602c8809-61ee-461d-acfd-3e8783f23326", "task_id": "b9792a06-0411-4838-96de-c720f34206a2", "status": "initializing"}`
	vecSig    = "1cff26ad2e4015ceb1ceadec6eda8f58ab932757598d00fb3266127ce2fbe47c"
	vecSigned = `1776397250.{"session_id":"602c8809-61ee-461d-acfd-3e8783f23326","status":"initializing","task_id":"b9792a06-0411-4838-96de-c720f34206a2"}`
)

func TestMisuseIsOneLineAndExit2(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `hookbridge: unknown command "frobnicate": run 'hookbridge help' for the list`},
		{[]string{"verify", "-nope"}, `hookbridge verify: flag provided but not defined: -nope (run 'hookbridge help verify')`},
		{[]string{"verify", "-secret", "s", "-timestamp", "1"}, `hookbridge verify: -signature is required (run 'hookbridge help verify')`},
		{[]string{"sign"}, `hookbridge sign: no secret: set BROWSER_USE_WEBHOOK_SECRET or pass -secret-file FILE (run 'hookbridge help sign')`},
		{[]string{"verify", "-timestamp", "1", "-signature", "s"}, `hookbridge verify: no secret: set BROWSER_USE_WEBHOOK_SECRET or pass -secret-file FILE (run 'hookbridge help verify')`},
		{[]string{"sign", "-secret", "s", "-secret-file", "f"}, `hookbridge sign: give -secret or -secret-file, not both (run 'hookbridge help sign')`},
		{[]string{"check", "extra"}, `hookbridge check: unexpected argument "extra" (run 'hookbridge help check')`},
		{[]string{"verify", "-tolerance", "soon"}, `hookbridge verify: invalid value "soon" for flag -tolerance: parse error (run 'hookbridge help verify')`},
		{[]string{"help", "nope"}, `hookbridge help: unknown help topic "nope": run 'hookbridge help' for the list`},
		{[]string{"send"}, `hookbridge send: no secret: set BROWSER_USE_WEBHOOK_SECRET or pass -secret-file FILE (run 'hookbridge help send')`},
		{[]string{"serve", "-log-level", "loud"}, `hookbridge serve: -log-level "loud": use debug, info, warn or error (run 'hookbridge help serve')`},
	}
	for _, tt := range tests {
		code, stdout, stderr := runCmd(t, "", nil, tt.args...)
		if code != 2 || stdout != "" || stderr != tt.want+"\n" {
			t.Errorf("%v: code %d stdout %q stderr %q; want 2 and %q", tt.args, code, stdout, stderr, tt.want)
		}
	}
}

func TestVerify(t *testing.T) {
	args := []string{"verify", "-secret", vecSecret, "-timestamp", vecTS, "-signature", vecSig}
	code, stdout, stderr := runCmd(t, vecBody, nil, append(args, "-v")...)
	if code != 0 || stdout != vecSigned+"\nvalid\n" || stderr != "" {
		t.Errorf("valid vector: code %d stdout %q stderr %q", code, stdout, stderr)
	}
	tests := []struct {
		name  string
		body  string
		extra []string
		want  string
	}{
		{"tampered body", strings.Replace(vecBody, "initializing", "finished", 1), nil, "hookbridge verify: invalid: signature does not match\n"},
		{"not JSON", "status=finished", nil, "hookbridge verify: invalid: body is not valid JSON: "},
		{"stale with -tolerance", vecBody, []string{"-tolerance", "5m"}, "hookbridge verify: invalid: timestamp is "},
	}
	for _, tt := range tests {
		code, _, stderr := runCmd(t, tt.body, nil, append(args, tt.extra...)...)
		if code != 1 || !strings.HasPrefix(stderr, tt.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%s: code %d stderr %q, want 1 and %q", tt.name, code, stderr, tt.want)
		}
		if strings.Contains(stderr, vecSecret) {
			t.Errorf("%s: the secret is in the output", tt.name)
		}
	}
}

func TestSignMatchesCPython(t *testing.T) {
	code, stdout, stderr := runCmd(t, vecBody, nil, "sign", "-secret", vecSecret, "-timestamp", vecTS)
	want := "X-Browser-Use-Timestamp: " + vecTS + "\nX-Browser-Use-Signature: " + vecSig + "\n"
	if code != 0 || stdout != want {
		t.Errorf("code %d stdout %q stderr %q, want %q", code, stdout, stderr, want)
	}
}

// TestSecretSources checks where sign and verify take the secret from
// besides -secret, which shows in ps: $BROWSER_USE_WEBHOOK_SECRET and
// -secret-file, and that the flags win over the environment.
func TestSecretSources(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "secret")
	if err := os.WriteFile(file, []byte("  "+vecSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	right := map[string]string{"BROWSER_USE_WEBHOOK_SECRET": vecSecret}
	wrong := map[string]string{"BROWSER_USE_WEBHOOK_SECRET": "whsec_wrong"}
	wantSign := "X-Browser-Use-Timestamp: " + vecTS + "\nX-Browser-Use-Signature: " + vecSig + "\n"
	tests := []struct {
		name   string
		env    map[string]string
		secret []string
		code   int
		stderr string // a prefix
	}{
		{"environment", right, nil, 0, ""},
		{"-secret-file (white space trimmed)", nil, []string{"-secret-file", file}, 0, ""},
		{"-secret-file wins over the environment", wrong, []string{"-secret-file", file}, 0, ""},
		{"-secret wins over the environment", wrong, []string{"-secret", vecSecret}, 0, ""},
		{"missing -secret-file", right, []string{"-secret-file", filepath.Join(dir, "nope")}, 1, "hookbridge %s: -secret-file: open "},
		{"empty -secret-file", right, []string{"-secret-file", empty}, 1, "hookbridge %s: -secret-file " + empty + " is empty: put the webhook secret in it\n"},
	}
	prefix := func(format, cmd string) string {
		if format == "" {
			return ""
		}
		return fmt.Sprintf(format, cmd)
	}
	for _, tt := range tests {
		code, stdout, stderr := runCmd(t, vecBody, tt.env, append([]string{"sign", "-timestamp", vecTS}, tt.secret...)...)
		if code != tt.code || !strings.HasPrefix(stderr, prefix(tt.stderr, "sign")) || (code == 0 && stdout != wantSign) {
			t.Errorf("sign, %s: code %d stdout %q stderr %q; want %d", tt.name, code, stdout, stderr, tt.code)
		}
		code, stdout, stderr = runCmd(t, vecBody, tt.env, append([]string{"verify", "-timestamp", vecTS, "-signature", vecSig}, tt.secret...)...)
		if code != tt.code || !strings.HasPrefix(stderr, prefix(tt.stderr, "verify")) || (code == 0 && stdout != "valid\n") {
			t.Errorf("verify, %s: code %d stdout %q stderr %q; want %d", tt.name, code, stdout, stderr, tt.code)
		}
	}
}

func TestCheck(t *testing.T) {
	env := map[string]string{"BROWSER_USE_WEBHOOK_SECRET": "whsec_do_not_print"}
	code, stdout, stderr := runCmd(t, "", env, "check", "-config", "../../config.yaml")
	if code != 0 {
		t.Fatalf("check of the default config: code %d stderr %s", code, stderr)
	}
	// Compare with runs of spaces folded: column widths are tabwriter's.
	folded := strings.Join(strings.Fields(stdout), " ")
	for _, want := range []string{
		"../../config.yaml is valid.",
		"publish_timeout: 10s",
		"browser-use /webhook 1 (redacted) 5m0s rejected",
		"delivery: spool (spool in ./data/spool, at most 1073741824 bytes and 1000000 messages)",
		"STATUS ROUTE SINK TARGET DELIVERY paused all-statuses bus task.paused spool paused alerting bus alerts.task.paused spool " +
			"stopped all-statuses bus task.stopped spool stopped alerting bus alerts.task.stopped spool * all-statuses bus task.{status} spool",
		"tracing: off",
	} {
		if !strings.Contains(folded, want) {
			t.Errorf("check output lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout+stderr, "whsec_do_not_print") {
		t.Error("check printed the secret")
	}

	code, _, stderr = runCmd(t, "", nil, "check", "-config", "../../config.yaml")
	want := "hookbridge check: ../../config.yaml:31: sources[0].secrets[0]: environment variable BROWSER_USE_WEBHOOK_SECRET is not set: export it (or write ${BROWSER_USE_WEBHOOK_SECRET:-default} for a fallback)\n"
	if code != 1 || stderr != want {
		t.Errorf("unset secret: code %d stderr %q, want 1 and %q", code, stderr, want)
	}
}

// TestCheckTableIsWhatRouteDoes: where routing de-duplicates, the table
// shows the one delivery an event gets. A spooled catch-all to
// task.{status} and a sync route to task.finished on the same sink deliver
// a finished event once, sync, as check -explain says; the table once
// showed two finished rows, one of them spool.
func TestCheckTableIsWhatRouteDoes(t *testing.T) {
	config := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(config, []byte(`
sources: [{name: browser-use, secrets: [whsec_x]}]
sinks: [{name: bus, type: nats, url: "nats://127.0.0.1:4222", jetstream: true}]
routes:
  - {name: a, status: ["*"], to: [{sink: bus, subject: "task.{status}"}]}
  - {name: b, status: [finished], delivery: sync, to: [{sink: bus, subject: task.finished}]}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCmd(t, "", nil, "check", "-config", config)
	if code != 0 {
		t.Fatalf("check: %d %s", code, stderr)
	}
	table := strings.Join(strings.Fields(stdout[strings.Index(stdout, "STATUS"):]), " ")
	if want := "STATUS ROUTE SINK TARGET DELIVERY finished a bus task.finished sync * a bus task.{status} spool"; table != want {
		t.Errorf("routing table:\n%s\nwant %s", table, want)
	}
	code, stdout, _ = runCmd(t, "", nil, "check", "-config", config, "-explain", `{"status":"finished","task_id":"t1"}`)
	if folded := strings.Join(strings.Fields(stdout), " "); code != 0 || !strings.HasSuffix(folded, "SINK TARGET DELIVERY bus task.finished sync") {
		t.Errorf("check -explain: %d %s", code, stdout)
	}
}

func TestHelp(t *testing.T) {
	code, stdout, _ := runCmd(t, "", nil, "help")
	if code != 0 || !strings.Contains(stdout, "hookbridge <command> [arguments]") {
		t.Errorf("help: %d %q", code, stdout)
	}
	for _, c := range commands() {
		if !strings.Contains(stdout, "\t"+c.name) {
			t.Errorf("help does not list %s", c.name)
		}
		code, stdout, _ := runCmd(t, "", nil, c.name, "-h")
		if code != 0 || !strings.HasPrefix(stdout, "usage: hookbridge "+c.name) {
			t.Errorf("%s -h: %d %q", c.name, code, stdout)
		}
	}
}

// TestCheckTracing: check says where spans go, from the environment
// (the default config has no telemetry block), and refuses an OTEL_*
// value hookbridge cannot honour.
func TestCheckTracing(t *testing.T) {
	env := map[string]string{"BROWSER_USE_WEBHOOK_SECRET": "whsec_x", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
	code, stdout, stderr := runCmd(t, "", env, "check", "-config", "../../config.yaml")
	if code != 0 || !strings.Contains(stdout, "tracing: OTLP grpc to the OTEL_EXPORTER_OTLP_ENDPOINT") {
		t.Errorf("code %d, stdout:\n%s\nstderr %s", code, stdout, stderr)
	}
	env["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/json"
	if code, _, stderr = runCmd(t, "", env, "check", "-config", "../../config.yaml"); code == 0 || !strings.Contains(stderr, `protocol "http/json"`) {
		t.Errorf("http/json: code %d, stderr %s", code, stderr)
	}
}
