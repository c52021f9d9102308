package bridge

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Template is a route target such as "task.{status}". Variables are
// {status}, {source} and {task_id}; their values are made safe for any
// broker's names: every byte outside [A-Za-z0-9_-] becomes "_", and an empty
// value becomes "_", so a hostile status cannot add NATS tokens, wildcards
// or path segments.
type Template struct {
	raw   string
	parts []templatePart
}

type templatePart struct {
	literal string
	field   eventField // 0 for a literal
}

type eventField int

const (
	fieldNone eventField = iota
	fieldStatus
	fieldSource
	fieldTaskID
)

var templateFields = map[string]eventField{
	"status":  fieldStatus,
	"source":  fieldSource,
	"task_id": fieldTaskID,
}

// ParseTemplate parses a target template.
func ParseTemplate(s string) (Template, error) {
	t := Template{raw: s}
	rest := s
	for rest != "" {
		open := strings.IndexByte(rest, '{')
		if open < 0 {
			if strings.IndexByte(rest, '}') >= 0 {
				return Template{}, fmt.Errorf("target %q has a } without {", s)
			}
			t.parts = append(t.parts, templatePart{literal: rest})
			break
		}
		if open > 0 {
			if strings.IndexByte(rest[:open], '}') >= 0 {
				return Template{}, fmt.Errorf("target %q has a } without {", s)
			}
			t.parts = append(t.parts, templatePart{literal: rest[:open]})
		}
		end := strings.IndexByte(rest[open:], '}')
		if end < 0 {
			return Template{}, fmt.Errorf("target %q has an unclosed {", s)
		}
		name := rest[open+1 : open+end]
		f, ok := templateFields[name]
		if !ok {
			return Template{}, fmt.Errorf("target %q uses unknown variable {%s}: use {status}, {source} or {task_id}", s, name)
		}
		t.parts = append(t.parts, templatePart{field: f})
		rest = rest[open+end+1:]
	}
	return t, nil
}

// String returns the template as written.
func (t Template) String() string { return t.raw }

// static reports whether the template has no variable.
func (t Template) static() bool {
	for _, p := range t.parts {
		if p.field != fieldNone {
			return false
		}
	}
	return true
}

// Expand fills the template's variables from ev.
func (t Template) Expand(ev *Event) string {
	if t.static() {
		return t.raw
	}
	var b strings.Builder
	b.Grow(len(t.raw) + 32)
	for _, p := range t.parts {
		switch p.field {
		case fieldNone:
			b.WriteString(p.literal)
		case fieldStatus:
			writeSafe(&b, ev.Status)
		case fieldSource:
			writeSafe(&b, ev.Source)
		case fieldTaskID:
			writeSafe(&b, ev.TaskID)
		}
	}
	return b.String()
}

// Wildcard returns the pattern that covers every expansion of the template
// when names are split into tokens by sep: a token holding a variable
// becomes wildcard. For NATS, Wildcard('.', "*") of "task.{status}" is
// "task.*".
func (t Template) Wildcard(sep byte, wildcard string) string {
	if t.static() {
		return t.raw
	}
	// Mark variables with a byte that cannot appear in a literal token of
	// interest, then replace every token containing one.
	var b strings.Builder
	for _, p := range t.parts {
		if p.field == fieldNone {
			b.WriteString(p.literal)
		} else {
			b.WriteByte(0)
		}
	}
	tokens := strings.Split(b.String(), string(sep))
	for i, tok := range tokens {
		if strings.IndexByte(tok, 0) >= 0 {
			tokens[i] = wildcard
		}
	}
	return strings.Join(tokens, string(sep))
}

func writeSafe(b *strings.Builder, v string) {
	if v == "" {
		b.WriteByte('_')
		return
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
			b.WriteByte(c)
		default:
			b.WriteByte('_')
		}
	}
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
// Matching: every route whose status list holds the event's status fires,
// and so does every route listing "*"; routes fire in file order. An event
// goes at most once to each (sink, target): the first route naming it wins
// and later ones add nothing.
type Router struct {
	routes   []route
	byStatus map[string]*match // for each named status, "*" routes merged in
	anyOnly  *match            // for statuses no route names
}

// match is the routes that fire for a status, worked out once.
type match struct {
	idx     []int    // route indexes, in file order
	names   []string // their names, shared by every Route result
	targets int      // targets over all of them: deliveries at most
}

func (m *match) add(i int, rt *route) {
	m.idx = append(m.idx, i)
	m.names = append(m.names, rt.name)
	m.targets += len(rt.targets)
}

type route struct {
	name    string
	sync    bool
	targets []routeTarget
}

type routeTarget struct {
	sink string
	tmpl Template
	set  bool // a target template was given
}

// NewRouter builds the routing table from validated route configs.
func NewRouter(cfgs []RouteConfig) (*Router, error) {
	r := &Router{byStatus: map[string]*match{}, anyOnly: &match{}}
	for _, rc := range cfgs {
		rt := route{name: rc.Name, sync: rc.Delivery == DeliverySync}
		for _, tc := range rc.To {
			t := routeTarget{sink: tc.Sink, set: tc.Target != ""}
			if t.set {
				tmpl, err := ParseTemplate(tc.Target)
				if err != nil {
					return nil, fmt.Errorf("route %q: %w", rc.Name, err)
				}
				t.tmpl = tmpl
			}
			rt.targets = append(rt.targets, t)
		}
		r.routes = append(r.routes, rt)
		for _, st := range rc.Status {
			if st != "*" {
				r.byStatus[st] = &match{}
			}
		}
	}
	for i, rc := range cfgs {
		wild := contains(rc.Status, "*")
		if wild {
			r.anyOnly.add(i, &r.routes[i])
		}
		for st, m := range r.byStatus {
			if wild || contains(rc.Status, st) {
				m.add(i, &r.routes[i])
			}
		}
	}
	return r, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Names reports whether some route names status (not counting "*").
func (r *Router) Names(status string) bool {
	_, ok := r.byStatus[status]
	return ok
}

// Route returns the deliveries for ev, de-duplicated, and the names of the
// routes that matched. Both are empty for an unrouted event. The names are
// shared: callers must not modify them.
func (r *Router) Route(ev *Event) (deliveries []Delivery, routes []string) {
	m, ok := r.byStatus[ev.Status]
	if !ok {
		m = r.anyOnly
	}
	if m.targets == 0 {
		return nil, m.names
	}
	deliveries = make([]Delivery, 0, m.targets)
	for _, i := range m.idx {
		rt := &r.routes[i]
		for _, t := range rt.targets {
			d := Delivery{Sink: t.sink, Sync: rt.sync}
			if t.set {
				d.Target = t.tmpl.Expand(ev)
			}
			deliveries = addDelivery(deliveries, d)
		}
	}
	return deliveries, m.names
}

// addDelivery appends d unless its (sink, target) is there already; a
// sync route makes the delivery sync whichever route named it first.
func addDelivery(list []Delivery, d Delivery) []Delivery {
	for i := range list {
		if list[i].Sink == d.Sink && list[i].Target == d.Target {
			list[i].Sync = list[i].Sync || d.Sync
			return list
		}
	}
	return append(list, d)
}

func containsDelivery(list []Delivery, d Delivery) bool {
	for _, x := range list {
		if x == d {
			return true
		}
	}
	return false
}

// TableRow is one line of the routing table shown by `hookbridge check`.
type TableRow struct {
	Status string // a status named by some route, or "*" for all others
	Route  string
	Sink   string
	Target string // the template as written; "" for the sink's default
	Sync   bool   // the route's delivery is sync rather than spool
}

// Table lists, for each status named by a route (sorted) and then for every
// other status ("*"), the route, sink and target it reaches, after the same
// de-duplication Route applies.
func (r *Router) Table() []TableRow {
	var rows []TableRow
	statuses := slices.Sorted(maps.Keys(r.byStatus))
	emit := func(status string, idx []int) {
		var seen []Delivery
		for _, i := range idx {
			rt := &r.routes[i]
			for _, t := range rt.targets {
				d := Delivery{Sink: t.sink, Target: t.tmpl.raw}
				if containsDelivery(seen, d) {
					continue
				}
				seen = append(seen, d)
				rows = append(rows, TableRow{Status: status, Route: rt.name, Sink: t.sink, Target: t.tmpl.raw, Sync: rt.sync})
			}
		}
		if len(idx) == 0 {
			rows = append(rows, TableRow{Status: status})
		}
	}
	for _, st := range statuses {
		emit(st, r.byStatus[st].idx)
	}
	emit("*", r.anyOnly.idx)
	return rows
}
