package route_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"

	"github.com/hookbridge/hookbridge/bridge/event"
	"github.com/hookbridge/hookbridge/bridge/route"
	"github.com/hookbridge/hookbridge/bridge/signature"
)

// signedAt is the signed timestamp of the test events: 2026-12-04
// 09:30:00 UTC.
var signedAt = time.Date(2026, 12, 4, 9, 30, 0, 0, time.UTC)

// normalize makes the event serve would make of body, as Browser Use's
// sender would have written it.
func normalize(t testing.TB, body string) *event.Event {
	t.Helper()
	var cz signature.Canonicalizer
	c, err := cz.Canonicalize([]byte(body))
	if err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	ev, err := event.Normalize("browser-use", "1796376600", signedAt, c, event.Trace{})
	if err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	return ev
}

func compile(t testing.TB, expr string) *route.Condition {
	t.Helper()
	c, err := route.NewCompiler(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	cond, err := c.Compile(expr)
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return cond
}

// Bodies in both shapes Browser Use sends, written as its Python sender
// writes them (", " and ": " separators, keys in any order).
const (
	vipEnvelope = `{"type": "agent.task.status_update", "timestamp": "2026-12-04T09:29:59.123456+00:00", "payload": {"task_id": "t1", "session_id": "s1", "status": "finished", "metadata": {"tier": "vip", "team": "ops", "env": "prod"}}}`
	flatNoMeta  = `{"session_id": "s2", "task_id": "t2", "status": "paused"}`
	nullMeta    = `{"type": "agent.task.status_update", "timestamp": "2026-12-04T09:29:59Z", "payload": {"task_id": "t3", "status": "stopped", "metadata": null}}`
	nested      = `{"type": "agent.task.status_update", "timestamp": "2026-12-04T09:29:59Z", "payload": {"task_id": "t4", "status": "finished", "metadata": {"a": {"b": [1, 2, {"c": "d"}]}, "flags": ["beta", "eu"]}, "steps": [{"n": 1, "ok": true}, {"n": 2, "ok": false}]}}`
	unicode     = `{"task_id": "t5", "status": "finished", "metadata": {"\u00e9quipe": "s\u00e9curit\u00e9", "emoji": "\ud83d\ude80", "équipe2": "直接"}}`
	numbers     = `{"task_id": "t6", "status": "finished", "metadata": {"u": 18446744073709551615, "big": 123456789012345678901234567890, "neg": -9223372036854775809, "i": 42, "f": 2.50, "e": 1e100, "z": -0.0, "huge": 1e400, "nan": NaN}}`
)

func TestConditionMatching(t *testing.T) {
	tests := []struct {
		name, expr, body string
		want             bool
		err              string // a substring of the evaluation error; "" for none
	}{
		// The examples, on events with and without metadata.
		{"tier vip", `data.?metadata.?tier.orValue("") == "vip"`, vipEnvelope, true, ""},
		{"tier on flat body without metadata", `data.?metadata.?tier.orValue("") == "vip"`, flatNoMeta, false, ""},
		{"tier on null metadata", `data.?metadata.?tier.orValue("") == "vip"`, nullMeta, false, ""},
		{"team in list", `data.?metadata.?team.orValue("") in ["ops", "infra"]`, vipEnvelope, true, ""},
		{"not staging, no metadata", `data.?metadata.?env.orValue("") != "staging"`, flatNoMeta, true, ""},
		{"plain select on a missing key errors", `data.metadata.tier == "vip"`, flatNoMeta, false, "no such key: metadata"},
		{"plain select through null errors", `data.metadata.tier == "vip"`, nullMeta, false, "no such key"},
		{"has", `has(data.metadata) && !has(data.metadata.nope)`, vipEnvelope, true, ""},
		{"has on null", `has(data.metadata)`, nullMeta, true, ""},

		// The CloudEvent's attributes.
		{"status", `status == "finished" && subject == "t1"`, vipEnvelope, true, ""},
		{"type and source", `type == "com.browser-use.agent.task.status_update" && source == "browser-use"`, vipEnvelope, true, ""},
		{"id", `size(id) == 32`, vipEnvelope, true, ""},
		{"envelope time", `time == timestamp("2026-12-04T09:29:59.123456Z")`, vipEnvelope, true, ""},
		{"flat body takes the signed time", `time == timestamp("2026-12-04T09:30:00Z") && time.getHours() == 9`, flatNoMeta, true, ""},
		{"time of day in a zone", `time.getHours("Europe/Paris") == 10 && time.getDayOfWeek() == 5`, vipEnvelope, true, ""},
		{"subject empty without a task id", `subject == ""`, `{"status": "started"}`, true, ""},
		{"status in data too", `data.status == status`, flatNoMeta, true, ""},

		// Nesting, lists, iteration, equality with literals.
		{"nested index", `data.metadata.a.b[2].c == "d" && data.metadata.a.b[0] == 1`, nested, true, ""},
		{"index out of range", `data.metadata.a.b[3] == 1`, nested, false, "out of bounds"},
		{"list membership", `"eu" in data.metadata.flags`, nested, true, ""},
		{"exists", `data.steps.exists(s, !s.ok)`, nested, true, ""},
		{"all", `data.steps.all(s, s.n > 0)`, nested, true, ""},
		{"size", `size(data.steps) == 2 && size(data.metadata) == 2`, nested, true, ""},
		{"map equality", `data.metadata.a == {"b": [1, 2, {"c": "d"}]}`, nested, true, ""},
		{"list equality", `data.metadata.flags == ["beta", "eu"]`, nested, true, ""},
		{"key membership", `"tier" in data.metadata`, vipEnvelope, true, ""},
		{"map comprehension over keys", `data.metadata.exists(k, k == "team")`, vipEnvelope, true, ""},
		{"list concatenation", `size(data.metadata.flags + ["x"]) == 3`, nested, true, ""},

		// Non-ASCII keys and values.
		{"escaped key and value", `data.metadata["équipe"] == "sécurité"`, unicode, true, ""},
		{"raw UTF-8 in the body", `data.metadata["équipe2"] == "直接"`, unicode, true, ""},
		{"astral plane", `data.metadata.emoji == "🚀"`, unicode, true, ""},
		{"a lone surrogate in a key reads as U+FFFD, as in the decoded event", `data.m["\uFFFD"] == "lone" && size(data.m) == 1`, `{"status": "x", "m": {"\ud800": "lone"}}`, true, ""},
		{"strings extension", `data.metadata["équipe"].upperAscii() == "SéCURITé"`, unicode, true, ""},

		// Numbers, as int, uint or double as they fit.
		{"int", `data.metadata.i == 42 && type(data.metadata.i) == int`, numbers, true, ""},
		{"uint beyond int64", `data.metadata.u == 18446744073709551615u && type(data.metadata.u) == uint`, numbers, true, ""},
		{"big integer becomes double", `type(data.metadata.big) == double && data.metadata.big > 1.2e29`, numbers, true, ""},
		{"negative beyond int64 becomes double", `data.metadata.neg < -9.2e18 && type(data.metadata.neg) == double`, numbers, true, ""},
		{"float", `data.metadata.f == 2.5 && type(data.metadata.f) == double`, numbers, true, ""},
		{"int and double compare", `data.metadata.i < 42.5 && data.metadata.f > 2`, numbers, true, ""},
		{"exponent", `data.metadata.e == 1e100`, numbers, true, ""},
		{"negative zero", `data.metadata.z == 0.0`, numbers, true, ""},
		{"infinity as CPython sends it, a string in data", `data.metadata.huge == "Infinity"`, numbers, true, ""},
		{"NaN as CPython sends it, a string in data", `data.metadata.nan == "NaN"`, numbers, true, ""},

		// Results that are not booleans, and type errors.
		{"dyn bool", `data.?metadata.?vip.orValue(false)`, vipEnvelope, false, ""},
		{"dyn non-bool", `data.metadata.tier`, vipEnvelope, false, "gave string, not bool"},
		{"type mismatch", `data.metadata.tier > 5`, vipEnvelope, false, "no such overload"},
		{"division by zero", `data.metadata.i / 0 == 1`, numbers, false, "division by zero"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := compile(t, tt.expr).Eval(normalize(t, tt.body))
			switch {
			case tt.err == "" && err != nil:
				t.Fatalf("%s: %v", tt.expr, err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("%s: error %v, want one with %q", tt.expr, err, tt.err)
			}
			if got != tt.want {
				t.Errorf("%s = %v, want %v", tt.expr, got, tt.want)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct{ expr, err string }{
		{`dat.x == 1`, `column 1: undeclared reference to 'dat' (did you mean 'data'?)`},
		{"data.x ==\n  dat", `line 2, column 3: undeclared reference to 'dat' (did you mean 'data'?)`},
		{`data.x ==`, `column 10: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}`},
		{`status + 1 == 2`, `column 8: found no matching overload for '_+_' applied to '(string, int)'`},
		{`1 + 2`, `the expression gives int, not bool: compare it to something (== "vip", > 5, in [...])`},
		{`status`, `the expression gives string, not bool: compare it to something (== "vip", > 5, in [...])`},
		{`  `, `empty expression: write one that is true for the events the route takes, or remove when`},
		{`time.getHours("Mars/Olympus") > 9`, `getHours("Mars/Olympus"): unknown time zone Mars/Olympus: use an IANA name such as "Europe/Paris", or an offset such as "+02:00"`},
		{`time.getHours("+25:00") > 9`, `getHours("+25:00"): timezone offset hours out of range [-23, 23]: +25:00: use an IANA name such as "Europe/Paris", or an offset such as "+02:00"`},
		{`data.l.exists(a, data.l.exists(b, a == b))`, `may cost up to 14413223054278659 on a body of max_body_bytes (1048576), more than the limit of 10000000: avoid a pass over a list inside another pass, or lower server.max_body_bytes`},
		{`data.s.matches(data.r)`, `may cost up to`},
	}
	c, err := route.NewCompiler(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		_, err := c.Compile(tt.expr)
		if err == nil || !strings.HasPrefix(err.Error(), tt.err) {
			t.Errorf("Compile(%q) = %v\nwant %s", tt.expr, err, tt.err)
		}
	}
	// What the limit admits: one pass over a list of the body, regular
	// expressions written in the condition, time zones that exist.
	for _, ok := range []string{
		`data.?steps.orValue([]).exists(s, s.?status.orValue("") == "failed")`,
		`data.?metadata.?team.orValue("").matches("^(ops|infra)-[a-z]+$")`,
		`time.getHours("America/New_York") >= 9 && time.getHours("+05:30") < 18`,
	} {
		if _, err := c.Compile(ok); err != nil {
			t.Errorf("Compile(%q): %v", ok, err)
		}
	}
}

// TestConditionCostLimit: the limit also holds while evaluating. A
// compiler told bodies are tiny admits a nested pass, which the limit then
// stops on a large event instead of running for minutes.
func TestConditionCostLimit(t *testing.T) {
	c, err := route.NewCompiler(64)
	if err != nil {
		t.Fatal(err)
	}
	cond, err := c.Compile(`data.l.exists(a, data.l.exists(b, a + b == -1))`)
	if err != nil {
		t.Fatal(err)
	}
	var body strings.Builder
	body.WriteString(`{"status": "finished", "l": [0`)
	for range 20000 {
		body.WriteString(", 1")
	}
	body.WriteString(`]}`)
	ok, err := cond.Eval(normalize(t, body.String()))
	if ok || err == nil || !strings.Contains(err.Error(), "cost limit exceeded") {
		t.Fatalf("nested pass over 20001 elements = %v, %v; want the cost limit", ok, err)
	}
}

func TestTemplateDataFields(t *testing.T) {
	long := strings.Repeat("x", 300)
	body := `{"task_id": "t1", "status": "stopped", "metadata": {"team": "ops", "dot": "a.b", "star": "*", "gt": ">", "slash": "x/y", "space": "a b", "empty": "", ` +
		`"long": "` + long + `", "\u00e9quipe": "s\u00e9cu", "n": 2.50, "i": -7, "big": 123456789012345678901234567890, "t": true, "f": false, "nil": null, ` +
		`"obj": {"x": "y"}, "list": [1], "nested": {"deeper": {"team": "infra"}}, "ctl": "a\nb\u0000c", "quote": "a\"b\\c", "nan": NaN}}`
	ev := normalize(t, body)
	tests := []struct{ tmpl, want string }{
		{"alerts.{data.metadata.team}.{status}", "alerts.ops.stopped"},
		{"t.{data.metadata.nested.deeper.team}", "t.infra"},
		{"t.{data.task_id}", "t.t1"},
		// Hostile values cannot add tokens, wildcards or path segments.
		{"t.{data.metadata.dot}", "t.a_b"},
		{"t.{data.metadata.star}", "t._"},
		{"t.{data.metadata.gt}", "t._"},
		{"t.{data.metadata.slash}", "t.x_y"},
		{"t.{data.metadata.space}", "t.a_b"},
		{"t.{data.metadata.ctl}", "t.a_b_c"},
		{"t.{data.metadata.quote}", "t.a_b_c"},
		{"t.{data.metadata.empty}", "t._"},
		{"t.{data.metadata.long}", "t." + long[:route.MaxValueBytes]},
		// Non-ASCII: every byte of the UTF-8 value is one _.
		{"t.{data.metadata.équipe}", "t.s__cu"},
		// Numbers and booleans as the JSON writes them; the rest is _.
		{"t.{data.metadata.n}", "t.2_5"},
		{"t.{data.metadata.i}", "t.-7"},
		{"t.{data.metadata.big}", "t.123456789012345678901234567890"},
		{"t.{data.metadata.t}.{data.metadata.f}", "t.true.false"},
		{"t.{data.metadata.nil}", "t._"},
		{"t.{data.metadata.obj}", "t._"},
		{"t.{data.metadata.list}", "t._"},
		{"t.{data.metadata.nan}", "t.NaN"},
		{"t.{data.metadata.missing}", "t._"},
		{"t.{data.nope.team}", "t._"},
		{"t.{data.metadata.team.deeper}", "t._"},
	}
	for _, tt := range tests {
		tmpl, err := route.ParseTemplate(tt.tmpl)
		if err != nil {
			t.Errorf("ParseTemplate(%q): %v", tt.tmpl, err)
			continue
		}
		if got := tmpl.Expand(ev); got != tt.want {
			t.Errorf("%s = %q, want %q", tt.tmpl, got, tt.want)
		}
		if tmpl.Static() {
			t.Errorf("%s: Static", tt.tmpl)
		}
	}
	// A flat body without metadata, and a long status: every variable is
	// cut to MaxValueBytes.
	flat := normalize(t, `{"task_id": "t2", "status": "`+long+`"}`)
	tmpl, _ := route.ParseTemplate("{status}.{data.metadata.team}")
	if got, want := tmpl.Expand(flat), long[:route.MaxValueBytes]+"._"; got != want {
		t.Errorf("flat body: %q, want %q", got, want)
	}
	if got := tmpl.Wildcard('.', "*"); got != "*.*" {
		t.Errorf("Wildcard = %q", got)
	}

	for _, bad := range []struct{ tmpl, err string }{
		{"t.{data}", `target "t.{data}": {data} names no field: write {data.<key>}, e.g. {data.metadata.team}`},
		{"t.{data.}", `target "t.{data.}": {data.} has an empty key: write {data.<key>[.<key>...]} with no leading, trailing or double dots`},
		{"t.{data..team}", `target "t.{data..team}": {data..team} has an empty key: write {data.<key>[.<key>...]} with no leading, trailing or double dots`},
		{"t.{data.metadata.}", `target "t.{data.metadata.}": {data.metadata.} has an empty key: write {data.<key>[.<key>...]} with no leading, trailing or double dots`},
		{"t.{data. team}", `target "t.{data. team}": {data. team}: key " team" has surrounding spaces`},
		{"t.{datas.team}", `target "t.{datas.team}": unknown variable {datas.team}: use {status}, {source}, {task_id} or {data.<key>[.<key>...]}`},
		{"t.{data.a{b}", `target "t.{data.a{b}": {data.a{b} has a { inside: close each variable before opening the next`},
	} {
		if _, err := route.ParseTemplate(bad.tmpl); err == nil || err.Error() != bad.err {
			t.Errorf("ParseTemplate(%q) = %v\nwant %s", bad.tmpl, err, bad.err)
		}
	}
}

// exampleRules are the routes of the example: status and when,
// when alone, status alone, data fields in targets.
func exampleRules(t *testing.T) []route.Rule {
	target := func(tmpl string) []route.Target {
		parsed, err := route.ParseTemplate(tmpl)
		if err != nil {
			t.Fatal(err)
		}
		return []route.Target{{Sink: "bus", Template: parsed}}
	}
	return []route.Rule{
		{Name: "vip-finished", Statuses: []string{"finished"}, When: compile(t, `data.?metadata.?tier.orValue("") == "vip"`), Targets: target("vip.task.{status}")},
		{Name: "per-team-alerts", Statuses: []string{"paused", "stopped"}, When: compile(t, `data.?metadata.?team.orValue("") in ["ops", "infra"]`), Targets: target("alerts.{data.metadata.team}.{status}")},
		{Name: "not-staging", Statuses: []string{"*"}, When: compile(t, `data.?metadata.?env.orValue("") != "staging"`), Targets: target("task.{status}")},
		{Name: "team-audit", Statuses: []string{"stopped"}, Targets: target("task.team.{data.metadata.team}")},
		{Name: "strict", Statuses: []string{"paused"}, When: compile(t, `data.metadata.tier == "vip"`), Sync: true, Targets: target("task.paused")},
	}
}

func envelope(status, metadata string) string {
	return `{"type": "agent.task.status_update", "timestamp": "2026-12-04T09:29:59Z", "payload": {"task_id": "t1", "status": "` + status + `"` + metadata + `}}`
}

func TestRouterConditions(t *testing.T) {
	r := route.New(exampleRules(t))
	tests := []struct {
		name       string
		body       string
		deliveries []route.Delivery
		routes     []string
		failed     []string
	}{
		{"vip finished in prod", envelope("finished", `, "metadata": {"tier": "vip", "env": "prod"}`),
			[]route.Delivery{{Sink: "bus", Target: "vip.task.finished"}, {Sink: "bus", Target: "task.finished"}},
			[]string{"vip-finished", "not-staging"}, nil},
		{"staging finished, not vip: nothing", envelope("finished", `, "metadata": {"env": "staging"}`),
			[]route.Delivery{}, []string{}, nil},
		{"ops stopped", envelope("stopped", `, "metadata": {"team": "ops"}`),
			[]route.Delivery{{Sink: "bus", Target: "alerts.ops.stopped"}, {Sink: "bus", Target: "task.stopped"}, {Sink: "bus", Target: "task.team.ops"}},
			[]string{"per-team-alerts", "not-staging", "team-audit"}, nil},
		{"stopped without metadata", envelope("stopped", ``),
			[]route.Delivery{{Sink: "bus", Target: "task.stopped"}, {Sink: "bus", Target: "task.team._"}},
			[]string{"not-staging", "team-audit"}, nil},
		{"a failing condition does not match, and is reported", envelope("paused", `, "metadata": {"team": "infra"}`),
			[]route.Delivery{{Sink: "bus", Target: "alerts.infra.paused"}, {Sink: "bus", Target: "task.paused"}},
			[]string{"per-team-alerts", "not-staging"}, []string{"strict"}},
		{"a sync conditional rule makes the shared delivery sync", envelope("paused", `, "metadata": {"tier": "vip", "env": "staging"}`),
			[]route.Delivery{{Sink: "bus", Target: "task.paused", Sync: true}},
			[]string{"strict"}, nil},
		{"flat body", `{"task_id": "t9", "status": "started"}`,
			[]route.Delivery{{Sink: "bus", Target: "task.started"}}, []string{"not-staging"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := r.Route(normalize(t, tt.body))
			if fmt.Sprint(got.Deliveries) != fmt.Sprint(tt.deliveries) || fmt.Sprint(got.Routes) != fmt.Sprint(tt.routes) {
				t.Errorf("Route = %v %v, want %v %v", got.Deliveries, got.Routes, tt.deliveries, tt.routes)
			}
			var failed []string
			for _, f := range got.Failed {
				failed = append(failed, f.Route)
				if !strings.Contains(f.Err.Error(), "no such key: tier") {
					t.Errorf("%s failed with %v", f.Route, f.Err)
				}
			}
			if fmt.Sprint(failed) != fmt.Sprint(tt.failed) {
				t.Errorf("failed %v, want %v", failed, tt.failed)
			}
		})
	}
}

func TestRouterExplain(t *testing.T) {
	r := route.New(exampleRules(t))
	got := r.Explain(normalize(t, envelope("paused", `, "metadata": {"team": "ops", "env": "staging"}`)))
	want := []route.Verdict{
		{Route: "vip-finished", Why: `status "paused" is not one of finished`},
		{Route: "per-team-alerts", Matched: true, Targets: []route.Delivery{{Sink: "bus", Target: "alerts.ops.paused"}}},
		{Route: "not-staging", Why: "when is false"},
		{Route: "team-audit", Why: `status "paused" is not one of stopped`},
		{Route: "strict", Why: "when failed: no such key: tier"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Explain =\n%v\nwant\n%v", got, want)
	}
}

// TestTableWithConditions: a conditional rule's rows stay, with its
// condition; rows of rules without one merge as before.
func TestTableWithConditions(t *testing.T) {
	r := route.New(exampleRules(t))
	var got []string
	for _, row := range r.Table() {
		got = append(got, fmt.Sprintf("%s %s %s %v %q", row.Status, row.Route, row.Target, row.Sync, row.When))
	}
	want := []string{
		`finished vip-finished vip.task.finished false "data.?metadata.?tier.orValue(\"\") == \"vip\""`,
		`finished not-staging task.finished false "data.?metadata.?env.orValue(\"\") != \"staging\""`,
		`paused per-team-alerts alerts.{data.metadata.team}.paused false "data.?metadata.?team.orValue(\"\") in [\"ops\", \"infra\"]"`,
		`paused not-staging task.paused false "data.?metadata.?env.orValue(\"\") != \"staging\""`,
		`paused strict task.paused true "data.metadata.tier == \"vip\""`,
		`stopped per-team-alerts alerts.{data.metadata.team}.stopped false "data.?metadata.?team.orValue(\"\") in [\"ops\", \"infra\"]"`,
		`stopped not-staging task.stopped false "data.?metadata.?env.orValue(\"\") != \"staging\""`,
		`stopped team-audit task.team.{data.metadata.team} false ""`,
		`* not-staging task.{status} false "data.?metadata.?env.orValue(\"\") != \"staging\""`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Table =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestZoneFunctionsAgreeWithCEL: the timestamp methods that take a time
// zone are redefined to use zones loaded once; on every method, zone
// (named in the expression or read from data) and time, across daylight
// saving changes, they give what CEL's own give.
func TestZoneFunctionsAgreeWithCEL(t *testing.T) {
	methods := []string{"getFullYear", "getMonth", "getDayOfYear", "getDayOfMonth", "getDate", "getDayOfWeek", "getHours", "getMinutes", "getSeconds", "getMilliseconds"}
	zones := []string{"Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "UTC", "+05:30", "-11:00"}
	times := []string{"2026-03-29T00:59:59.999Z", "2026-03-29T01:00:00.5Z", "2026-11-01T05:30:00Z", "2026-12-31T23:59:59.123Z", "2024-02-29T12:00:00Z"}
	c, err := route.NewCompiler(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range methods {
		for _, zone := range zones {
			named, err := c.Compile(fmt.Sprintf(`time.%s(%q) == data.want`, m, zone))
			if err != nil {
				t.Fatal(err)
			}
			fromData, err := c.Compile(fmt.Sprintf(`time.%s(data.zone) == data.want`, m))
			if err != nil {
				t.Fatal(err)
			}
			for _, ts := range times {
				at, _ := time.Parse(time.RFC3339Nano, ts)
				want := types.Timestamp{Time: at}.Receive(m, "", []ref.Val{types.String(zone)})
				ev := normalize(t, fmt.Sprintf(`{"type": "agent.task.status_update", "timestamp": %q, "payload": {"status": "finished", "zone": %q, "want": %d}}`, ts, zone, want))
				for _, cond := range []*route.Condition{named, fromData} {
					if ok, err := cond.Eval(ev); !ok || err != nil {
						t.Errorf("%s at %s: %v %v, CEL's own gives %v", cond, ts, ok, err, want)
					}
				}
			}
		}
	}
}

// TestTemplatePatternMatchesExpansions: every expansion of a template,
// however hostile the values, matches its Pattern, and Private says which
// templates may show a task id or payload.
func TestTemplatePatternMatchesExpansions(t *testing.T) {
	tests := []struct {
		template          string
		private, withTask bool // Private(false), Private(true)
		other             string
	}{
		{"task.{status}", false, false, "task.a.b"},
		{"{source}-{status}", false, false, "x"},
		{"t.{task_id}", true, false, "t."},
		{"team.{data.metadata.team}.{status}", true, true, "team..finished"},
		{"fixed.subject", false, false, "fixed.subjects"},
		{"https://x.test/{status}?a=(b)", false, false, "https://x.test/a?a=b"},
	}
	envelopes := []string{
		envelope("finished", `, "metadata": {"team": "ops"}`),
		envelope("a.b*>{}\x7f", `, "metadata": {"team": "`+strings.Repeat("é", 200)+`"}`),
		`{"task_id": "", "status": ""}`,
	}
	for _, tt := range tests {
		tmpl, err := route.ParseTemplate(tt.template)
		if err != nil {
			t.Fatal(err)
		}
		re := regexp.MustCompile(tmpl.Pattern())
		for _, body := range envelopes {
			if got := tmpl.Expand(normalize(t, body)); !re.MatchString(got) {
				t.Errorf("%q: expansion %q does not match %s", tt.template, got, tmpl.Pattern())
			}
		}
		if re.MatchString(tt.other) {
			t.Errorf("%q: %q matches %s", tt.template, tt.other, tmpl.Pattern())
		}
		if tmpl.Private(false) != tt.private || tmpl.Private(true) != tt.withTask {
			t.Errorf("%q: Private(false), Private(true) = %v, %v; want %v, %v", tt.template,
				tmpl.Private(false), tmpl.Private(true), tt.private, tt.withTask)
		}
	}
}
