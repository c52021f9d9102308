package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbridge/hookbridge/bridge/event"
	"github.com/hookbridge/hookbridge/bridge/signature"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// exampleRoutes is the routing-on-content example of
// docs/configuration.md, exactly as bridge/config/testdata/config/ok-when.yaml
// has it: the tests below run it end to end and through check.
const exampleRoutes = `routes:
  - name: vip-finished
    status: [finished]
    when: 'data.?metadata.?tier.orValue("") == "vip"'
    to:
      - {sink: bus, subject: "vip.task.{status}"}
  - name: per-team-alerts
    status: [paused, stopped]
    when: 'data.?metadata.?team.orValue("") in ["ops", "infra"]'
    to:
      - {sink: bus, subject: "alerts.{data.metadata.team}.{status}"}
  - name: not-staging
    when: 'data.?metadata.?env.orValue("") != "staging"'
    to:
      - {sink: bus, subject: "task.{status}"}
  - name: team-audit
    status: [stopped]
    to:
      - {sink: bus, subject: "task.team.{data.metadata.team}"}
`

const routingSecret = "whsec_routing"

// routingConfig is a serve config on webhookAddr with one JetStream sink,
// bus, on the NATS at natsURL, delivery sync (a 200 means the messages are
// in the stream already), and routes.
func routingConfig(webhookAddr, natsURL, routes string) string {
	return fmt.Sprintf(`
server:
  listen: %q
  admin_listen: "127.0.0.1:0"
delivery: sync
sources:
  - name: browser-use
    secrets: [%q]
sinks:
  - name: bus
    type: nats
    url: %q
    jetstream: true
`, webhookAddr, routingSecret, natsURL) + routes
}

// served is a hookbridge serve running in-process, logging JSON, until the
// test ends.
type served struct {
	url, admin string // the webhook URL and the admin address
	logs       sinktest.Buffer
}

// startServe runs serve -config path -log-format json with extra flags
// and waits until it listens.
func startServe(t *testing.T, path string, extra ...string) *served {
	t.Helper()
	s := &served{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	args := append([]string{"serve", "-config", path, "-log-format", "json"}, extra...)
	go func() {
		done <- run(ctx, args, env{stdin: strings.NewReader(""), stdout: &s.logs, stderr: &s.logs,
			lookupEnv: func(string) (string, bool) { return "", false }})
	}()
	exited := false
	t.Cleanup(func() {
		cancel()
		if !exited {
			if code := <-done; code != 0 {
				t.Errorf("serve exited %d:\n%s", code, s.logs.String())
			}
		}
	})
	sinktest.WaitFor(t, "serve to listen", func() bool {
		select {
		case code := <-done:
			exited = true
			t.Fatalf("serve exited %d:\n%s", code, s.logs.String())
		default:
		}
		for _, l := range s.lines(t) {
			if l["msg"] == "hookbridge listening" {
				s.url, s.admin = "http://"+l["addr"].(string)+"/webhook", l["admin"].(string)
				return true
			}
		}
		return false
	})
	return s
}

// lines are serve's complete JSON log lines so far.
func (s *served) lines(t *testing.T) []map[string]any {
	t.Helper()
	return jsonLines(t, s.logs.String())
}

// jsonLines parses the complete lines of a JSON log (a last line still
// being written is left out).
func jsonLines(t *testing.T, all string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(all[:strings.LastIndexByte(all, '\n')+1], "\n") {
		if line == "" {
			continue
		}
		var l map[string]any
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		out = append(out, l)
	}
	return out
}

// linesWith are the log lines whose message starts with prefix.
func (s *served) linesWith(t *testing.T, prefix string) []map[string]any {
	t.Helper()
	return slices.DeleteFunc(s.lines(t), func(l map[string]any) bool {
		msg, _ := l["msg"].(string)
		return !strings.HasPrefix(msg, prefix)
	})
}

// metrics returns the admin /metrics page.
func (s *served) metrics(t *testing.T) string {
	t.Helper()
	_, body := httpGet(t, "http://"+s.admin+"/metrics")
	return body
}

// httpGet returns the status and body of a GET of url.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	resp, body := roundTrip(t, http.DefaultClient, req)
	return resp.StatusCode, body
}

// roundTrip sends req and returns the answer with its whole body.
func roundTrip(t *testing.T, client *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// answer is serve's 200 answer to a webhook.
type answer struct {
	ID     string
	Routes *int
}

// post signs body as Browser Use does and posts it; anything but a 200
// {"id", "routes"} fails the test.
func (s *served) post(t *testing.T, body []byte) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.url, strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	if err := signature.SignRequest(req, body, []byte(routingSecret), strconv.FormatInt(time.Now().Unix(), 10)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var a answer
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &a) != nil || a.ID == "" || a.Routes == nil {
		t.Fatalf("webhook %s answered %s %s", body, resp.Status, b)
	}
	return a
}

// envelope is a status update as Browser Use sends it now, at the n-th
// second: distinct n give distinct event ids.
func envelope(task, status string, n int, metadata map[string]string) []byte {
	return event.Sample{Status: status, TaskID: task, SessionID: "session-" + task,
		Time: time.Date(2026, 12, 4, 9, 0, n, 0, time.UTC), Metadata: metadata}.Body()
}

// published is what the stream holds: "subject event-id", each once.
func published(t *testing.T, js jetstream.JetStream) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, m := range sinktest.ReadStream(t, js, "HOOKBRIDGE") {
		out[m.Subject()+" "+sinktest.ReadCloudEvent(t, m.Data()).ID]++
	}
	return out
}

// writeFileAtomic replaces path's content in one rename, so that serve's
// file watch never reads a half-written config.
func writeFileAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestRoutingOnContentEndToEnd runs the documented example through the
// real serve into a real JetStream: conditions on metadata pick the
// routes, {data.metadata.team} fills subjects (made safe when hostile,
// "_" when missing), an event no condition admits is answered 200 and
// counted unrouted, and the stream holds exactly the messages the routes
// call for, nothing more.
func TestRoutingOnContentEndToEnd(t *testing.T) {
	// The example as the docs and the config tests have it: if one
	// changes, this test must be looked at again.
	shipped, err := os.ReadFile("../../bridge/config/testdata/config/ok-when.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(shipped), exampleRoutes) {
		t.Fatal("ok-when.yaml's routes are no longer this test's exampleRoutes: update one or the other")
	}
	srv := sinktest.NATS(t)
	_, js := sinktest.JetStream(t, srv.ClientURL())
	s := startServe(t, writeConfig(t, routingConfig(sinktest.FreeAddr(t), srv.ClientURL(), exampleRoutes)))

	tests := []struct {
		name   string
		body   []byte
		routes int
		want   []string // subjects it is published on
	}{
		{"vip finished in prod", envelope("t-vip", "finished", 1, map[string]string{"tier": "vip", "env": "prod"}),
			2, []string{"vip.task.finished", "task.finished"}},
		// vip-finished wants vip, not-staging refuses staging: no route.
		{"non-vip finished in staging", envelope("t-staging", "finished", 2, map[string]string{"tier": "free", "env": "staging"}),
			0, nil},
		{"ops stopped", envelope("t-ops", "stopped", 3, map[string]string{"team": "ops", "env": "prod"}),
			3, []string{"alerts.ops.stopped", "task.stopped", "task.team.ops"}},
		// The flat shape has no metadata: the ?-conditions read "", and
		// {data.metadata.team} of a missing member is "_".
		{"stopped without metadata (flat)", event.Sample{Status: "stopped", TaskID: "t-flat", SessionID: "session-t-flat", Flat: true}.Body(),
			2, []string{"task.stopped", "task.team._"}},
		// growth is not in [ops, infra], staging is refused, and
		// team-audit takes stopped only.
		{"paused from growth in staging", envelope("t-growth", "paused", 5, map[string]string{"team": "growth", "env": "staging"}),
			0, nil},
		// A team value with NATS token separators, wildcards and a space
		// cannot add tokens to the subject: each such byte becomes "_".
		{"stopped from a hostile team", envelope("t-hostile", "stopped", 6, map[string]string{"team": "a.b*>c d"}),
			2, []string{"task.stopped", "task.team.a_b__c_d"}},
	}
	want := map[string]int{}
	for _, tt := range tests {
		a := s.post(t, tt.body)
		if *a.Routes != tt.routes {
			t.Errorf("%s: answered routes %d, want %d", tt.name, *a.Routes, tt.routes)
		}
		for _, subject := range tt.want {
			want[subject+" "+a.ID]++
		}
	}
	// delivery: sync answered 200 once JetStream had every message, so
	// the stream is complete now: compare it whole.
	if got := published(t, js); !maps.Equal(got, want) {
		t.Errorf("the stream holds\n%v\nwant\n%v", got, want)
	}

	metrics := s.metrics(t)
	for _, line := range []string{
		`hookbridge_webhooks_total{result="unrouted",source="browser-use"} 2`,
		`hookbridge_webhooks_total{result="accepted",source="browser-use"} 4`,
		// Every conditional route has its series from the start; the
		// example's ?-syntax never fails, so they stay 0.
		`hookbridge_route_errors_total{route="vip-finished"} 0`,
		`hookbridge_route_errors_total{route="per-team-alerts"} 0`,
		`hookbridge_route_errors_total{route="not-staging"} 0`,
	} {
		if !strings.Contains(metrics, line+"\n") {
			t.Errorf("/metrics lacks %s", line)
		}
	}
	if strings.Contains(metrics, `hookbridge_route_errors_total{route="team-audit"}`) {
		t.Error("/metrics counts condition errors for team-audit, which has no condition")
	}
}

// TestRoutingConditionErrorsAreCounted: a condition that cannot be
// evaluated on an event (a missing key read without ?) makes its route not
// match; it neither fails the webhook nor stops the other routes. Every
// failure is counted, but the log gets one line per route per minute, with
// the event id and never the body.
func TestRoutingConditionErrorsAreCounted(t *testing.T) {
	srv := sinktest.NATS(t)
	_, js := sinktest.JetStream(t, srv.ClientURL())
	s := startServe(t, writeConfig(t, routingConfig(sinktest.FreeAddr(t), srv.ClientURL(), `routes:
  - name: strict-vip
    when: 'data.metadata.tier == "vip"'
    to: [{sink: bus, subject: "vip.{status}"}]
  - name: all
    status: ["*"]
    to: [{sink: bus, subject: "task.{status}"}]
`)))

	// No metadata, so data.metadata fails. The session ids stand for
	// the body's content, which the log must not show.
	canaries := []string{"session-canary-one", "session-canary-two"}
	want := map[string]int{}
	var ids []string
	for i, session := range canaries {
		a := s.post(t, event.Sample{Status: "finished", TaskID: fmt.Sprintf("task-canary-%d", i), SessionID: session,
			Time: time.Date(2026, 12, 4, 9, 0, i, 0, time.UTC)}.Body())
		if *a.Routes != 1 {
			t.Errorf("event %d: answered routes %d, want 1 (all)", i, *a.Routes)
		}
		want["task.finished "+a.ID]++
		ids = append(ids, a.ID)
	}
	if got := published(t, js); !maps.Equal(got, want) {
		t.Errorf("the stream holds %v, want %v", got, want)
	}
	if m := s.metrics(t); !strings.Contains(m, `hookbridge_route_errors_total{route="strict-vip"} 2`+"\n") {
		t.Errorf("/metrics does not count both failures of strict-vip:\n%s", grepLines(m, "hookbridge_route_errors_total"))
	}
	// Failures are counted and logged before the webhook is answered:
	// both answers are in, so both failures are recorded.
	failed := s.linesWith(t, "route condition failed")
	if len(failed) != 1 {
		t.Fatalf("%d route condition failed lines, want 1 (the second failure within the minute is held):\n%s", len(failed), s.logs.String())
	}
	line, _ := json.Marshal(failed[0])
	if failed[0]["route"] != "strict-vip" || failed[0]["id"] != ids[0] || !strings.Contains(fmt.Sprint(failed[0]["err"]), "metadata") {
		t.Errorf("the failure line does not name route strict-vip, event %s and the missing key: %s", ids[0], line)
	}
	for _, c := range append(canaries, "task-canary-0") {
		if strings.Contains(string(line), c) {
			t.Errorf("the failure line shows the body's %q: %s", c, line)
		}
	}
}

// TestRoutingConditionsReload: a changed when takes effect at the file
// watch's reload, without a restart; a when that does not compile fails
// the reload, keeps the running routes, and the log says where and why.
func TestRoutingConditionsReload(t *testing.T) {
	srv := sinktest.NATS(t)
	_, js := sinktest.JetStream(t, srv.ClientURL())
	webhookAddr := sinktest.FreeAddr(t)
	config := func(when string) string {
		return routingConfig(webhookAddr, srv.ClientURL(), `routes:
  - name: picked
    when: '`+when+`'
    to: [{sink: bus, subject: "picked.{data.metadata.tier}"}]
`)
	}
	path := writeConfig(t, config(`data.?metadata.?tier.orValue("") == "vip"`))
	// The file watch, not SIGHUP, so that this test cannot signal
	// another serve.
	s := startServe(t, path, "-watch", "20ms")

	n := 0 // distinct timestamps: distinct events, never duplicates
	send := func(tier string) answer {
		n++
		return s.post(t, envelope("t-"+tier, "finished", n, map[string]string{"tier": tier}))
	}
	want := map[string]int{}
	// routed sends an event of each tier and checks that only tier is
	// routed.
	routed := func(stage, tier string) {
		t.Helper()
		for _, sent := range []string{"vip", "free"} {
			a := send(sent)
			wantRoutes := 0
			if sent == tier {
				wantRoutes = 1
				want["picked."+sent+" "+a.ID]++
			}
			if *a.Routes != wantRoutes {
				t.Errorf("%s: a %s event is answered routes %d, want %d", stage, sent, *a.Routes, wantRoutes)
			}
		}
	}
	reloads := func(result string, n int) func() bool {
		return func() bool {
			return strings.Contains(s.metrics(t), fmt.Sprintf(`hookbridge_config_reloads_total{result=%q} %d`, result, n))
		}
	}

	routed("at start", "vip")

	writeFileAtomic(t, path, config(`data.?metadata.?tier.orValue("") == "free"`))
	sinktest.WaitFor(t, "the reload to tier free", reloads("success", 1))
	routed("after the reload", "free")

	broken := config(`dat.x == 1`)
	writeFileAtomic(t, path, broken)
	sinktest.WaitFor(t, "the reload to fail", reloads("failure", 1))
	routed("after the failed reload", "free")

	failed := s.linesWith(t, "config reload failed")
	whenLine := strings.Count(broken[:strings.Index(broken, "when:")], "\n") + 1
	wantErr := fmt.Sprintf("%s:%d: ", path, whenLine) + `routes[0].when: route "picked": column 1: undeclared reference to 'dat' (did you mean 'data'?)`
	if len(failed) != 1 || failed[0]["err"] != wantErr {
		t.Errorf("reload failure lines %v, want one with err %q", failed, wantErr)
	}
	if !strings.Contains(fmt.Sprint(failed), "the running config stays") {
		t.Errorf("the failure line does not say the running config stays: %v", failed)
	}
	if got := published(t, js); !maps.Equal(got, want) {
		t.Errorf("the stream holds %v, want %v", got, want)
	}
}

// TestCheckRoutingOnContent: check shows each conditional row's when in
// the routing table, -explain gives every route's verdict and why not,
// and a when that does not compile is refused with file:line, key and
// CEL's message.
func TestCheckRoutingOnContent(t *testing.T) {
	path := writeConfig(t, routingConfig("127.0.0.1:8080", "nats://127.0.0.1:4222", exampleRoutes))
	code, stdout, stderr := runCmd(t, "", nil, "check", "-config", path)
	if code != 0 {
		t.Fatalf("check: %d %s", code, stderr)
	}
	// Runs of spaces folded: column widths are tabwriter's.
	table := strings.Join(strings.Fields(stdout[strings.Index(stdout, "STATUS"):]), " ")
	const (
		vip   = `data.?metadata.?tier.orValue("") == "vip"`
		team  = `data.?metadata.?team.orValue("") in ["ops", "infra"]`
		notSt = `data.?metadata.?env.orValue("") != "staging"`
	)
	wantTable := strings.Join([]string{
		"STATUS ROUTE SINK TARGET DELIVERY WHEN (the row applies only if true)",
		"finished vip-finished bus vip.task.finished sync " + vip,
		"finished not-staging bus task.finished sync " + notSt,
		"paused per-team-alerts bus alerts.{data.metadata.team}.paused sync " + team,
		"paused not-staging bus task.paused sync " + notSt,
		"stopped per-team-alerts bus alerts.{data.metadata.team}.stopped sync " + team,
		"stopped not-staging bus task.stopped sync " + notSt,
		"stopped team-audit bus task.team.{data.metadata.team} sync -",
		"* not-staging bus task.{status} sync " + notSt,
	}, " ")
	if table != wantTable {
		t.Errorf("routing table:\n%s\nwant\n%s", table, wantTable)
	}

	tests := []struct {
		name   string
		sample string
		want   string // the folded output
	}{
		{"ops stopped",
			`{"type": "agent.task.status_update", "timestamp": "2026-12-04T09:00:00.000000+00:00", "payload": {"session_id": "s1", "task_id": "t1", "status": "stopped", "metadata": {"team": "ops"}}}`,
			`status "stopped" (task "t1") matches 3 route(s): per-team-alerts, not-staging, team-audit ` +
				`ROUTE MATCHED TARGETS, OR WHY NOT ` +
				`vip-finished no status "stopped" is not one of finished ` +
				`per-team-alerts yes bus alerts.ops.stopped ` +
				`not-staging yes bus task.stopped ` +
				`team-audit yes bus task.team.ops ` +
				`deliveries, each (sink, target) once: SINK TARGET DELIVERY ` +
				`bus alerts.ops.stopped sync bus task.stopped sync bus task.team.ops sync`},
		// Two whens false, two statuses not taken: no delivery.
		{"growth paused in staging",
			`{"type": "agent.task.status_update", "timestamp": "2026-12-04T09:00:00.000000+00:00", "payload": {"session_id": "s2", "task_id": "t2", "status": "paused", "metadata": {"team": "growth", "env": "staging"}}}`,
			`status "paused" (task "t2") matches 0 route(s): ` +
				`ROUTE MATCHED TARGETS, OR WHY NOT ` +
				`vip-finished no status "paused" is not one of finished ` +
				`per-team-alerts no when is false ` +
				`not-staging no when is false ` +
				`team-audit no status "paused" is not one of stopped ` +
				`no route takes it: answered 200 and counted as unrouted`},
	}
	for _, tt := range tests {
		code, stdout, stderr := runCmd(t, "", nil, "check", "-config", path, "-explain", tt.sample)
		if folded := strings.Join(strings.Fields(stdout), " "); code != 0 || folded != tt.want {
			t.Errorf("check -explain, %s: code %d stderr %q\n%s\nwant\n%s", tt.name, code, stderr, folded, tt.want)
		}
	}

	bad := writeConfig(t, `sources: [{name: browser-use, secrets: [whsec_x]}]
sinks: [{name: bus, type: nats, url: "nats://127.0.0.1:4222", jetstream: true}]
routes:
  - name: x
    when: dat.x == 1
    to: [{sink: bus, subject: a}]
`)
	code, stdout, stderr = runCmd(t, "", nil, "check", "-config", bad)
	want := "hookbridge check: " + bad + `:5: routes[0].when: route "x": column 1: undeclared reference to 'dat' (did you mean 'data'?)` + "\n"
	if code != 1 || stdout != "" || stderr != want {
		t.Errorf("check of a bad when: code %d stdout %q stderr %q, want 1 and %q", code, stdout, stderr, want)
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
