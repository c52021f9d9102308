package config

import (
	"maps"
	"reflect"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/hookbridge/hookbridge/bridge/route"
	"github.com/hookbridge/hookbridge/sinks"
	filesink "github.com/hookbridge/hookbridge/sinks/file"
	httpsink "github.com/hookbridge/hookbridge/sinks/http"
	kafkasink "github.com/hookbridge/hookbridge/sinks/kafka"
	natssink "github.com/hookbridge/hookbridge/sinks/nats"
	pubsubsink "github.com/hookbridge/hookbridge/sinks/pubsub"
	rabbitmqsink "github.com/hookbridge/hookbridge/sinks/rabbitmq"
	redissink "github.com/hookbridge/hookbridge/sinks/redis"
	sqssink "github.com/hookbridge/hookbridge/sinks/sqs"
)

// kinds lists every sink kind a config may name with `type:`. Adding a
// broker is a package under sinks/ and a line here.
func kinds() []sinks.Kind {
	return []sinks.Kind{natssink.Kind, kafkasink.Kind, sqssink.Kind, filesink.Kind, httpsink.Kind,
		rabbitmqsink.Kind, redissink.Kind, pubsubsink.Kind}
}

// kindNamed returns the kind whose type name is name.
func kindNamed(name string) (sinks.Kind, bool) {
	for _, k := range kinds() {
		if k.Name == name {
			return k, true
		}
	}
	return sinks.Kind{}, false
}

// targetKeys is the sorted set of every kind's target key.
func targetKeys() []string {
	set := map[string]bool{}
	for _, k := range kinds() {
		if k.TargetKey != "" {
			set[k.TargetKey] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// decodeNode implements nodeDecoder: a target is {sink: NAME} plus at most
// one target key, checked against the sink's kind once all sinks are known.
func (t *Target) decodeNode(d *decoder, n *yaml.Node, key string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, key, "must be a mapping such as {sink: bus, subject: \"task.{status}\"}")
		return
	}
	targetKeys := targetKeys()
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		path := joinKey(key, k.Value)
		var s string
		d.decode(v, path, reflect.ValueOf(&s).Elem())
		switch {
		case k.Value == "sink":
			t.Sink = s
		case slices.Contains(targetKeys, k.Value):
			if t.Key != "" {
				d.errorf(k, path, "a target names one destination: remove %s or %s", t.Key, k.Value)
				continue
			}
			t.Key, t.Target = k.Value, s
		default:
			d.errorf(k, path, "unknown key (a target takes sink and one of: %s)", strings.Join(targetKeys, ", "))
		}
	}
}

// decodeNode implements nodeDecoder: `type` picks the kind whose
// configuration the remaining keys decode into.
func (s *Sink) decodeNode(d *decoder, n *yaml.Node, key string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, key, "must be a mapping with name, type and the type's own keys")
		return
	}
	rest := &yaml.Node{Kind: yaml.MappingNode, Line: n.Line, Column: n.Column}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "name":
			d.decode(v, joinKey(key, "name"), reflect.ValueOf(&s.Name).Elem())
		case "type":
			d.decode(v, joinKey(key, "type"), reflect.ValueOf(&s.Type).Elem())
			kind, ok := kindNamed(s.Type)
			if !ok && s.Type != "" {
				d.errorf(v, joinKey(key, "type"), "unknown sink type %q (known types: %s)", s.Type, sinks.KindNames(kinds()))
				return
			}
			s.Kind = kind
		case "retry":
			d.decode(v, joinKey(key, "retry"), reflect.ValueOf(&s.Retry).Elem())
		case "dead_letter":
			s.DeadLetter = new(Target)
			d.decode(v, joinKey(key, "dead_letter"), reflect.ValueOf(s.DeadLetter).Elem())
		default:
			rest.Content = append(rest.Content, k, v)
		}
	}
	if s.Type == "" {
		d.errorf(n, joinKey(key, "type"), "missing: say which broker this is (%s)", sinks.KindNames(kinds()))
		return
	}
	s.Options = s.Kind.NewConfig()
	d.decodeStruct(rest, key, reflect.ValueOf(s.Options).Elem())
}

// Rules returns the routes as the router takes them, conditions compiled
// and templates parsed. A valid config (Load's) returns the ones Validate
// built, shared (a caller must not modify them), as long as its routes
// and max_body_bytes are still what Validate saw. Otherwise (a config
// built in code, or changed after validation) they are built on each
// call, and a route whose condition does not compile is left out and a
// target that does not parse goes to the sink's default.
func (c *Config) Rules() []route.Rule {
	if b := c.built; b != nil && b.maxBody == c.Server.MaxBodyBytes && reflect.DeepEqual(b.routes, c.Routes) {
		return b.rules
	}
	sinkByName := map[string]Sink{}
	for _, sk := range c.Sinks {
		sinkByName[sk.Name] = sk
	}
	rules, _ := c.validateRoutes(sinkByName)
	return rules
}

// cloneRoutes copies routes deeply, so that a change to the config's
// routes, in place or not, shows against the copy.
func cloneRoutes(routes []Route) []Route {
	out := slices.Clone(routes)
	for i := range out {
		out[i].Status = slices.Clone(out[i].Status)
		out[i].To = slices.Clone(out[i].To)
	}
	return out
}

// TargetTemplates returns the target templates routes and other sinks'
// dead_letter targets use with the named sink, in file order (routes
// first), without repeats; targets of a sink that takes none add none.
// The sink provisions or checks them when it opens: a JetStream stream
// must cover a dead-letter subject as it does a route's, or dead letters
// sent there are retried for ever.
func (c *Config) TargetTemplates(sink string) []sinks.TargetTemplate {
	var out []sinks.TargetTemplate
	seen := map[string]bool{}
	add := func(name string, tmpl route.Template) {
		if name != sink || tmpl.String() == "" || seen[tmpl.String()] {
			return
		}
		seen[tmpl.String()] = true
		out = append(out, tmpl)
	}
	for _, r := range c.Rules() {
		for _, t := range r.Targets {
			add(t.Sink, t.Template)
		}
	}
	for _, sk := range c.Sinks {
		// Validate has parsed every dead-letter target (fixed ones), so
		// this cannot fail.
		if dl := sk.DeadLetter; dl != nil {
			if tmpl, err := route.ParseTemplate(dl.Target); err == nil {
				add(dl.Sink, tmpl)
			}
		}
	}
	return out
}

// SkipProbes makes every sink start without contacting its broker, for
// brokers that come up after hookbridge (serve -skip-probe).
func (c *Config) SkipProbes() {
	for _, sk := range c.Sinks {
		if sk.Options != nil {
			sk.Options.WithoutProbe()
		}
	}
}

// UsesSpool reports whether any route delivers through the spool.
func (c *Config) UsesSpool() bool {
	for _, r := range c.Routes {
		if r.Delivery == DeliverySpool {
			return true
		}
	}
	return false
}
