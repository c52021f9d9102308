package route

import (
	"maps"
	"slices"

	"github.com/hookbridge/hookbridge/bridge/event"
)

// Rule is one route as the router sees it: the events whose status is in
// Statuses go to every target in Targets.
type Rule struct {
	// Name identifies the rule in results, metrics and the table.
	Name string
	// Statuses lists the statuses the rule takes; "*" takes every status.
	Statuses []string
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

// Router matches events to deliveries. It is built once from the config,
// never modified, and safe for concurrent use.
//
// Matching: every rule whose status list holds the event's status fires,
// and so does every rule listing "*"; rules fire in file order. An event
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
}

func (m *match) add(i int, r *Rule) {
	m.idx = append(m.idx, i)
	m.names = append(m.names, r.Name)
	m.targets += len(r.Targets)
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

// Route returns the deliveries for ev, de-duplicated, and the names of the
// rules that matched. Both are empty for an unrouted event. The names are
// shared: callers must not modify them.
func (r *Router) Route(ev *event.Event) (deliveries []Delivery, rules []string) {
	m := r.match(ev.Status)
	if m.targets == 0 {
		return nil, m.names
	}
	deliveries = make([]Delivery, 0, m.targets)
	for _, i := range m.idx {
		rule := &r.rules[i]
		for _, t := range rule.Targets {
			deliveries = addDelivery(deliveries, Delivery{Sink: t.Sink, Target: t.Template.Expand(ev), Sync: rule.Sync})
		}
	}
	return deliveries, m.names
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
	Sink   string
	// Target is the target with {status} filled in for a named status
	// ("task.finished"), as written for "*" ("task.{status}"); "" for the
	// sink's default. Other variables stay as written ("by-task.{task_id}").
	Target string
	Sync   bool // the delivery waits for the sink (some rule naming it is sync)
}

// Table lists, for each status named by a rule (sorted) and then for every
// other status ("*"), the (sink, target) deliveries that status gets, with
// the same de-duplication Route applies: one row per (sink, target), the
// first rule naming it, sync if any rule naming it is.
func (r *Router) Table() []TableRow {
	var rows []TableRow
	emit := func(status string, m *match) {
		start := len(rows)
		for _, i := range m.idx {
			rule := &r.rules[i]
			for _, t := range rule.Targets {
				target := t.Template.String()
				if status != "*" {
					target = t.Template.withStatus(status)
				}
				dup := false
				for j := start; j < len(rows); j++ {
					if rows[j].Sink == t.Sink && rows[j].Target == target {
						rows[j].Sync = rows[j].Sync || rule.Sync
						dup = true
						break
					}
				}
				if !dup {
					rows = append(rows, TableRow{Status: status, Route: rule.Name, Sink: t.Sink, Target: target, Sync: rule.Sync})
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
