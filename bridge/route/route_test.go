package route

import (
	"reflect"
	"testing"

	"github.com/hookbridge/hookbridge/bridge/event"
)

// to returns a target of sink; tmpl "" is the sink's default.
func to(t *testing.T, sink, tmpl string) Target {
	t.Helper()
	if tmpl == "" {
		return Target{Sink: sink}
	}
	parsed, err := ParseTemplate(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	return Target{Sink: sink, Template: parsed}
}

func TestRouterRoute(t *testing.T) {
	r := New([]Rule{
		{Name: "finished", Statuses: []string{"finished"}, Targets: []Target{to(t, "bus", "task.{status}")}},
		{Name: "alerting", Statuses: []string{"paused", "stopped"}, Targets: []Target{to(t, "bus", "alerts.task.{status}")}},
		{Name: "everything", Statuses: []string{"*"}, Targets: []Target{to(t, "audit", "")}},
		// Names the same (sink, target) as "finished" for finished events:
		// it must not be delivered twice.
		{Name: "again", Statuses: []string{"finished", "started"}, Targets: []Target{
			to(t, "bus", "task.finished"),
			to(t, "bus", "by-task.{task_id}.{source}"),
		}},
	})
	tests := []struct {
		name       string
		ev         event.Event
		deliveries []Delivery
		routes     []string
	}{
		{"finished fans out and de-duplicates", event.Event{Status: "finished", TaskID: "t1", Source: "bu"},
			[]Delivery{{Sink: "bus", Target: "task.finished"}, {Sink: "audit", Target: ""}, {Sink: "bus", Target: "by-task.t1.bu"}},
			[]string{"finished", "everything", "again"}},
		{"paused goes to alerting and the catch-all", event.Event{Status: "paused"},
			[]Delivery{{Sink: "bus", Target: "alerts.task.paused"}, {Sink: "audit", Target: ""}},
			[]string{"alerting", "everything"}},
		{"started", event.Event{Status: "started", TaskID: "t2", Source: "bu"},
			[]Delivery{{Sink: "audit", Target: ""}, {Sink: "bus", Target: "task.finished"}, {Sink: "bus", Target: "by-task.t2.bu"}},
			[]string{"everything", "again"}},
		{"unknown status takes only * routes", event.Event{Status: "timed_out"},
			[]Delivery{{Sink: "audit", Target: ""}},
			[]string{"everything"}},
		{"status matching is exact", event.Event{Status: "Finished"},
			[]Delivery{{Sink: "audit", Target: ""}},
			[]string{"everything"}},
		{"hostile values cannot add tokens or wildcards", event.Event{Status: "started", TaskID: "a.b*>c d/é", Source: "bu"},
			[]Delivery{{Sink: "audit", Target: ""}, {Sink: "bus", Target: "task.finished"}, {Sink: "bus", Target: "by-task.a_b__c_d___.bu"}},
			[]string{"everything", "again"}},
		{"empty values become _", event.Event{Status: "started"},
			[]Delivery{{Sink: "audit", Target: ""}, {Sink: "bus", Target: "task.finished"}, {Sink: "bus", Target: "by-task._._"}},
			[]string{"everything", "again"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := r.Route(&tt.ev)
			d, routes := got.Deliveries, got.Routes
			if !reflect.DeepEqual(d, tt.deliveries) {
				t.Errorf("deliveries = %v, want %v", d, tt.deliveries)
			}
			if !reflect.DeepEqual(routes, tt.routes) {
				t.Errorf("routes = %v, want %v", routes, tt.routes)
			}
		})
	}
}

func TestRouterNoCatchAll(t *testing.T) {
	r := New([]Rule{{Name: "f", Statuses: []string{"finished"}, Targets: []Target{to(t, "s", "")}}})
	if got := r.Route(&event.Event{Status: "paused"}); len(got.Deliveries) != 0 || len(got.Routes) != 0 {
		t.Errorf("unrouted status got %v %v", got.Deliveries, got.Routes)
	}
	want := []TableRow{{Status: "finished", Route: "f", Sink: "s"}, {Status: "*"}}
	if got := r.Table(); !reflect.DeepEqual(got, want) {
		t.Errorf("Table() = %v, want %v", got, want)
	}
}

// TestTableShowsWhatRouteDoes checks the table against Route itself: for
// each status the table names, its rows are exactly the deliveries an
// event of that status gets, sync where Route makes it sync. A spooled
// catch-all to task.{status} and a sync route to task.finished on the
// same sink deliver a finished event once, sync: the table once showed two
// finished rows, one of them spool.
func TestTableShowsWhatRouteDoes(t *testing.T) {
	rules := []Rule{
		{Name: "a", Statuses: []string{"*"}, Targets: []Target{to(t, "bus", "task.{status}")}},
		{Name: "b", Statuses: []string{"finished"}, Sync: true, Targets: []Target{to(t, "bus", "task.finished"), to(t, "bus", "by-task.{task_id}")}},
		{Name: "c", Statuses: []string{"paused", "finished"}, Targets: []Target{to(t, "audit", ""), to(t, "bus", "by-task.{task_id}")}},
	}
	r := New(rules)
	want := []TableRow{
		{Status: "finished", Route: "a", Sink: "bus", Target: "task.finished", Sync: true},
		{Status: "finished", Route: "b", Sink: "bus", Target: "by-task.{task_id}", Sync: true},
		{Status: "finished", Route: "c", Sink: "audit"},
		{Status: "paused", Route: "a", Sink: "bus", Target: "task.paused"},
		{Status: "paused", Route: "c", Sink: "audit"},
		{Status: "paused", Route: "c", Sink: "bus", Target: "by-task.{task_id}"},
		{Status: "*", Route: "a", Sink: "bus", Target: "task.{status}"},
	}
	got := r.Table()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Table() =\n%v\nwant\n%v", got, want)
	}
	// And row for row what Route does, for an event of each named status.
	for _, st := range []string{"finished", "paused"} {
		ds := r.Route(&event.Event{Status: st, TaskID: "{task_id}"}).Deliveries
		var rows []Delivery
		for _, row := range got {
			if row.Status == st {
				rows = append(rows, Delivery{Sink: row.Sink, Target: row.Target, Sync: row.Sync})
			}
		}
		// Route makes the task id safe; the table keeps the variable.
		for i := range ds {
			if ds[i].Target == "by-task._task_id_" {
				ds[i].Target = "by-task.{task_id}"
			}
		}
		if !reflect.DeepEqual(rows, ds) {
			t.Errorf("status %s: table rows %v, Route %v", st, rows, ds)
		}
	}
}

func TestTemplate(t *testing.T) {
	tests := []struct {
		in       string
		err      string
		wildcard string
	}{
		{in: "task.{status}", wildcard: "task.*"},
		{in: "alerts.task.{status}", wildcard: "alerts.task.*"},
		{in: "static.subject", wildcard: "static.subject"},
		{in: "t.{source}-{status}.x", wildcard: "t.*.x"},
		{in: "{task_id}", wildcard: "*"},
		{in: "task.{stauts}", err: `target "task.{stauts}": unknown variable {stauts}: use {status}, {source}, {task_id} or {data.<key>[.<key>...]}`},
		{in: "task.{status", err: `target "task.{status" has an unclosed {`},
		{in: "task.status}", err: `target "task.status}" has a } without {`},
	}
	for _, tt := range tests {
		tmpl, err := ParseTemplate(tt.in)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("ParseTemplate(%q) error = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseTemplate(%q): %v", tt.in, err)
			continue
		}
		if got := tmpl.Wildcard('.', "*"); got != tt.wildcard {
			t.Errorf("Wildcard(%q) = %q, want %q", tt.in, got, tt.wildcard)
		}
		if tmpl.String() != tt.in {
			t.Errorf("String() = %q, want %q", tmpl.String(), tt.in)
		}
	}
}
