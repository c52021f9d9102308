package route

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/hookbridge/hookbridge/bridge/event"
)

// Rule is one route as the router sees it: the events whose status is in
// Statuses, and for which When holds, go to every target in Targets.
type Rule struct {
	// Name identifies the rule in results, metrics and the table.
	Name string
	// Statuses lists the statuses the rule takes; "*" takes every status.
	Statuses []string
	// When, if not nil, must also hold for the rule to match; a condition
	// that fails on an event (see Routing.Failed) does not match.
	When *Condition
	// Sync asks for each target's confirmation before the webhook is
	// answered (the route's delivery: sync).
	Sync bool
	// Targets are where the events go, in order.
	Targets []Target
}

// Target is one (sink, target template) of a rule.
type Target struct {
	Sink string
	// Template names the destination within the sink; the zero Template
	// (for sinks that take none) expands to "", the sink's own default.
	Template Template
}

// Delivery is one (sink, target) an event is routed to.
type Delivery struct {
	Sink   string
	Target string // expanded; empty means the sink's default
	// Sync asks for the sink's confirmation before the webhook is
	// answered, instead of the spool's fsync (a route's delivery: sync).
	Sync bool
}

// Routing is where one event goes.
type Routing struct {
	// Deliveries are the (sink, target)s, de-duplicated.
	Deliveries []Delivery
	// Routes are the names of the rules that matched, in file order. They
	// may be shared with other results: callers must not modify them.
	Routes []string
	// Failed are the rules whose condition could not be evaluated on the
	// event (they did not match), with why.
	Failed []ConditionFailure
}

// ConditionFailure is a rule whose condition failed on an event.
type ConditionFailure struct {
	Route string
	Err   error
}

// Router matches events to deliveries. It is built once from the config,
// never modified, and safe for concurrent use.
//
// Matching: every rule whose status list holds the event's status fires,
// and so does every rule listing "*", if its condition holds; rules fire
// in file order. An event
// goes at most once to each (sink, target): the first rule naming it wins
// and later ones add nothing, except that a sync rule makes the delivery
// sync whichever rule named it first.
type Router struct {
	rules    []Rule
	byStatus map[string]*match // for each named status, "*" rules merged in
	anyOnly  *match            // for statuses no rule names
}

// match is the rules that fire for a status, worked out once.
type match struct {
	idx     []int    // rule indexes, in file order
	names   []string // their names, shared by every Route result
	targets int      // targets over all of them: deliveries at most
	// conditional: some of the rules have a condition, so which match
	// is known only per event.
	conditional bool
}

func (m *match) add(i int, r *Rule) {
	m.idx = append(m.idx, i)
	m.names = append(m.names, r.Name)
	m.targets += len(r.Targets)
	m.conditional = m.conditional || r.When != nil
}

// New builds a router over rules, which it keeps: the caller must not
// modify them afterwards.
func New(rules []Rule) *Router {
	r := &Router{rules: rules, byStatus: map[string]*match{}, anyOnly: &match{}}
	for _, rule := range rules {
		for _, st := range rule.Statuses {
			if st != "*" {
				r.byStatus[st] = &match{}
			}
		}
	}
	for i := range rules {
		rule := &r.rules[i]
		wild := slices.Contains(rule.Statuses, "*")
		if wild {
			r.anyOnly.add(i, rule)
		}
		for st, m := range r.byStatus {
			if wild || slices.Contains(rule.Statuses, st) {
				m.add(i, rule)
			}
		}
	}
	return r
}

// Names reports whether some rule names status (not counting "*").
func (r *Router) Names(status string) bool {
	_, ok := r.byStatus[status]
	return ok
}

func (r *Router) match(status string) *match {
	if m, ok := r.byStatus[status]; ok {
		return m
	}
	return r.anyOnly
}

// Route returns where ev goes: the deliveries, de-duplicated, and the
// rules that matched, both empty for an unrouted event, and the rules
// whose condition failed on it.
func (r *Router) Route(ev *event.Event) Routing {
	m := r.match(ev.Status)
	if !m.conditional {
		if m.targets == 0 {
			return Routing{Routes: m.names}
		}
		deliveries := make([]Delivery, 0, m.targets)
		for _, i := range m.idx {
			deliveries = r.rules[i].add(deliveries, ev)
		}
		return Routing{Deliveries: deliveries, Routes: m.names}
	}
	out := Routing{Deliveries: make([]Delivery, 0, m.targets), Routes: make([]string, 0, len(m.idx))}
	vars := vars{ev: ev} // shared, so that data is read once
	for _, i := range m.idx {
		rule := &r.rules[i]
		if rule.When != nil {
			ok, err := rule.When.eval(&vars)
			if err != nil {
				out.Failed = append(out.Failed, ConditionFailure{Route: rule.Name, Err: err})
			}
			if !ok {
				continue
			}
		}
		out.Routes = append(out.Routes, rule.Name)
		out.Deliveries = rule.add(out.Deliveries, ev)
	}
	return out
}

// add adds the rule's targets, expanded for ev, to list.
func (rule *Rule) add(list []Delivery, ev *event.Event) []Delivery {
	for _, t := range rule.Targets {
		list = addDelivery(list, Delivery{Sink: t.Sink, Target: t.Template.Expand(ev), Sync: rule.Sync})
	}
	return list
}

// Verdict is one rule's outcome for one event, for `hookbridge check
// -explain`.
type Verdict struct {
	Route   string
	Matched bool
	// Why says why the rule did not match; "" when it did.
	Why string
	// Targets are the rule's targets expanded for the event, before
	// de-duplication across rules; nil when it did not match.
	Targets []Delivery
}

// Explain returns every rule's verdict on ev, in file order.
func (r *Router) Explain(ev *event.Event) []Verdict {
	vars := vars{ev: ev}
	out := make([]Verdict, 0, len(r.rules))
	for i := range r.rules {
		rule := &r.rules[i]
		v := Verdict{Route: rule.Name}
		switch {
		case !slices.Contains(rule.Statuses, "*") && !slices.Contains(rule.Statuses, ev.Status):
			v.Why = fmt.Sprintf("status %q is not one of %s", ev.Status, strings.Join(rule.Statuses, ", "))
		case rule.When != nil:
			ok, err := rule.When.eval(&vars)
			switch {
			case err != nil:
				v.Why = "when failed: " + err.Error()
			case !ok:
				v.Why = "when is false"
			}
		}
		if v.Matched = v.Why == ""; v.Matched {
			for _, t := range rule.Targets {
				v.Targets = append(v.Targets, Delivery{Sink: t.Sink, Target: t.Template.Expand(ev), Sync: rule.Sync})
			}
		}
		out = append(out, v)
	}
	return out
}

// addDelivery appends d unless its (sink, target) is there already; a
// sync rule makes the delivery sync whichever rule named it first.
func addDelivery(list []Delivery, d Delivery) []Delivery {
	for i := range list {
		if list[i].Sink == d.Sink && list[i].Target == d.Target {
			list[i].Sync = list[i].Sync || d.Sync
			return list
		}
	}
	return append(list, d)
}

// TableRow is one line of the routing table shown by `hookbridge check`.
type TableRow struct {
	Status string // a status named by some rule, or "*" for all others
	Route  string // the first rule naming the (sink, target); "" when the status is unrouted
	// When is the rule's condition as written, "" for none: the row
	// applies only to the events it holds for.
	When string
	Sink string
	// Target is the target with {status} filled in for a named status
	// ("task.finished"), as written for "*" ("task.{status}"); "" for the
	// sink's default. Other variables stay as written ("by-task.{task_id}").
	Target string
	Sync   bool // the delivery waits for the sink (some rule naming it is sync)
}

// Table lists, for each status named by a rule (sorted) and then for every
// other status ("*"), the (sink, target) deliveries that status gets, with
// the de-duplication Route applies where it is certain: a (sink, target)
// named by a rule without a condition has one row, the first such rule's,
// sync if any such rule is, and absorbs the rows later conditional rules
// would add unless they could make it sync. A conditional rule's targets
// otherwise keep rows of their own, with the condition.
func (r *Router) Table() []TableRow {
	var rows []TableRow
	emit := func(status string, m *match) {
		start := len(rows)
		for _, i := range m.idx {
			rule := &r.rules[i]
			when := ""
			if rule.When != nil {
				when = rule.When.String()
			}
			for _, t := range rule.Targets {
				target := t.Template.String()
				if status != "*" {
					target = t.Template.withStatus(status)
				}
				dup := false
				for j := start; j < len(rows); j++ {
					row := &rows[j]
					if row.Sink != t.Sink || row.Target != target || row.When != "" {
						continue
					}
					if when == "" {
						row.Sync = row.Sync || rule.Sync
						dup = true
					} else {
						dup = row.Sync || !rule.Sync
					}
					break
				}
				if !dup {
					rows = append(rows, TableRow{Status: status, Route: rule.Name, When: when, Sink: t.Sink, Target: target, Sync: rule.Sync})
				}
			}
		}
		if len(m.idx) == 0 {
			rows = append(rows, TableRow{Status: status})
		}
	}
	for _, st := range slices.Sorted(maps.Keys(r.byStatus)) {
		emit(st, r.byStatus[st])
	}
	emit("*", r.anyOnly)
	return rows
}
