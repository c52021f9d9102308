package bridge

import (
	"reflect"
	"testing"
)

func TestRouterRoute(t *testing.T) {
	r, err := NewRouter([]RouteConfig{
		{Name: "finished", Status: []string{"finished"}, To: []TargetConfig{{Sink: "bus", Key: "subject", Target: "task.{status}"}}},
		{Name: "alerting", Status: []string{"paused", "stopped"}, To: []TargetConfig{{Sink: "bus", Key: "subject", Target: "alerts.task.{status}"}}},
		{Name: "everything", Status: []string{"*"}, To: []TargetConfig{{Sink: "audit"}}},
		// Names the same (sink, target) as "finished" for finished events:
		// it must not be delivered twice.
		{Name: "again", Status: []string{"finished", "started"}, To: []TargetConfig{
			{Sink: "bus", Key: "subject", Target: "task.finished"},
			{Sink: "bus", Key: "subject", Target: "by-task.{task_id}.{source}"},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		ev         Event
		deliveries []Delivery
		routes     []string
	}{
		{"finished fans out and de-duplicates", Event{Status: "finished", TaskID: "t1", Source: "bu"},
			[]Delivery{{Sink: "bus", Target: "task.finished"}, {Sink: "audit", Target: ""}, {Sink: "bus", Target: "by-task.t1.bu"}},
			[]string{"finished", "everything", "again"}},
		{"paused goes to alerting and the catch-all", Event{Status: "paused"},
			[]Delivery{{Sink: "bus", Target: "alerts.task.paused"}, {Sink: "audit", Target: ""}},
			[]string{"alerting", "everything"}},
		{"started", Event{Status: "started", TaskID: "t2", Source: "bu"},
			[]Delivery{{Sink: "audit", Target: ""}, {Sink: "bus", Target: "task.finished"}, {Sink: "bus", Target: "by-task.t2.bu"}},
			[]string{"everything", "again"}},
		{"unknown status takes only * routes", Event{Status: "timed_out"},
			[]Delivery{{Sink: "audit", Target: ""}},
			[]string{"everything"}},
		{"status matching is exact", Event{Status: "Finished"},
			[]Delivery{{Sink: "audit", Target: ""}},
			[]string{"everything"}},
		{"hostile values cannot add tokens or wildcards", Event{Status: "started", TaskID: "a.b*>c d/é", Source: "bu"},
			[]Delivery{{Sink: "audit", Target: ""}, {Sink: "bus", Target: "task.finished"}, {Sink: "bus", Target: "by-task.a_b__c_d___.bu"}},
			[]string{"everything", "again"}},
		{"empty values become _", Event{Status: "started"},
			[]Delivery{{Sink: "audit", Target: ""}, {Sink: "bus", Target: "task.finished"}, {Sink: "bus", Target: "by-task._._"}},
			[]string{"everything", "again"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, routes := r.Route(&tt.ev)
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
	r, err := NewRouter([]RouteConfig{{Name: "f", Status: []string{"finished"}, To: []TargetConfig{{Sink: "s"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if d, routes := r.Route(&Event{Status: "paused"}); len(d) != 0 || len(routes) != 0 {
		t.Errorf("unrouted status got %v %v", d, routes)
	}
	want := []TableRow{{Status: "finished", Route: "f", Sink: "s"}, {Status: "*"}}
	if got := r.Table(); !reflect.DeepEqual(got, want) {
		t.Errorf("Table() = %v, want %v", got, want)
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
		{in: "task.{stauts}", err: `target "task.{stauts}" uses unknown variable {stauts}: use {status}, {source} or {task_id}`},
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
