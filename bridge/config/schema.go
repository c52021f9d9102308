package config

//go:generate go run ./internal/gendescriptions

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/hookbridge/hookbridge/bridge/queue/jetstream"
	"github.com/hookbridge/hookbridge/sinks"
	kafkasink "github.com/hookbridge/hookbridge/sinks/kafka"
	natssink "github.com/hookbridge/hookbridge/sinks/nats"
)

// This file writes the JSON Schema (draft 2020-12) of the configuration
// file that `hookbridge schema` prints and docs/config.schema.json ships,
// for editors (yaml-language-server) to complete and check config.yaml.
// Nothing in it is written twice:
//
//   - keys and their types come from the config types' yaml tags, walked
//     as the decoder walks them (walkKeys), each sink kind's from the
//     configuration its sinks.Kind makes;
//   - defaults are the values SetDefaults fills in (each kind's own
//     SetDefaults for its keys), given for the keys whose default
//     docs/configuration.md writes as one literal (a test holds those
//     literals to the same values);
//   - enums are the constants and lists validation checks against;
//   - descriptions are docs/configuration.md's meaning column, through
//     the generated descriptions.go.
//
// The schema accepts what the decoder accepts where YAML allows it: an
// explicit null (the default) for any optional key, ${VAR} references in
// any value (they are expanded before the value is read), durations as Go
// durations, and whole numbers written with _ separators.

// SchemaDraft is the JSON Schema dialect of Schema.
const SchemaDraft = "https://json-schema.org/draft/2020-12/schema"

// Schema returns the JSON Schema of the configuration file, indented, with
// a final newline.
func Schema() ([]byte, error) {
	g := &schemaGen{enums: schemaEnums()}
	root := g.root()
	if len(g.missing) > 0 {
		return nil, fmt.Errorf("docs/configuration.md has no row for %s: add one and run go generate ./bridge/config", strings.Join(g.missing, ", "))
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(root); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// referenceEntry is one key's row of docs/configuration.md (see
// descriptions.go).
type referenceEntry struct {
	meaning        string
	literalDefault bool
}

// jsonSchema is one schema object; its fields marshal in this order.
type jsonSchema struct {
	Schema                string        `json:"$schema,omitempty"`
	Title                 string        `json:"title,omitempty"`
	Description           string        `json:"description,omitempty"`
	Ref                   string        `json:"$ref,omitempty"`
	Type                  any           `json:"type,omitempty"`
	Const                 any           `json:"const,omitempty"`
	Enum                  []any         `json:"enum,omitempty"`
	Default               any           `json:"default,omitempty"`
	Pattern               string        `json:"pattern,omitempty"`
	MinLength             *int          `json:"minLength,omitempty"`
	Minimum               *int64        `json:"minimum,omitempty"`
	Maximum               *int64        `json:"maximum,omitempty"`
	MinItems              *int          `json:"minItems,omitempty"`
	MaxProperties         *int          `json:"maxProperties,omitempty"`
	Items                 *jsonSchema   `json:"items,omitempty"`
	Properties            *properties   `json:"properties,omitempty"`
	Required              []string      `json:"required,omitempty"`
	AnyOf                 []*jsonSchema `json:"anyOf,omitempty"`
	AllOf                 []*jsonSchema `json:"allOf,omitempty"`
	If                    *jsonSchema   `json:"if,omitempty"`
	Then                  *jsonSchema   `json:"then,omitempty"`
	AdditionalProperties  *bool         `json:"additionalProperties,omitempty"`
	UnevaluatedProperties *bool         `json:"unevaluatedProperties,omitempty"`
	Defs                  *properties   `json:"$defs,omitempty"`
}

// properties is a schema's properties in the order of the config types'
// fields.
type properties struct {
	names   []string
	schemas []*jsonSchema
}

func (p *properties) add(name string, s *jsonSchema) {
	p.names = append(p.names, name)
	p.schemas = append(p.schemas, s)
}

func (p *properties) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, name := range p.names {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(name)
		b.Write(k)
		b.WriteByte(':')
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(p.schemas[i]); err != nil {
			return nil, err
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// Shared definitions, in $defs.
const (
	defEnv      = "env"
	defDuration = "duration"
	defInteger  = "integer"
	defBoolean  = "boolean"
	defTarget   = "target"
)

func ref(def string) *jsonSchema { return &jsonSchema{Ref: "#/$defs/" + def} }

func ptr[T any](v T) *T { return &v }

var nullSchema = &jsonSchema{Type: "null"}

// The patterns of a ${VAR} reference (see decoder.expand) and of a
// duration time.ParseDuration takes (the decoder refuses negative ones).
const (
	envPattern      = `\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}`
	durationPattern = `^\+?(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$`
	integerPattern  = `^[-+]?[0-9][0-9_]*$`
)

// Enums: the values validation accepts, by the key the reference writes.
func schemaEnums() map[string][]string {
	return map[string][]string{
		"delivery":             {DeliverySpool, DeliverySync},
		"routes[].delivery":    {DeliverySpool, DeliverySync},
		"server.replay_cache":  {ReplayMemory, ReplayNATS},
		"spool.backend":        {SpoolLocal, SpoolJetStream},
		"telemetry.exporter":   {ExporterOTLP, ExporterNone},
		"telemetry.protocol":   {ProtocolGRPC, ProtocolHTTPProtobuf},
		"telemetry.sampler":    Samplers,
		"spool.storage":        natssink.StorageValues,
		"nats.stream.storage":  natssink.StorageValues,
		"kafka.acks":           kafkasink.AcksValues(),
		"kafka.compression":    kafkasink.CompressionValues(),
		"kafka.sasl.mechanism": kafkasink.Mechanisms,
	}
}

// contentModes are the values of every content_mode key.
var contentModes = []string{string(sinks.Structured), string(sinks.Binary)}

// Required keys, by the path of the mapping that needs them; a list of
// several names means one of them. Validation reports each missing.
var schemaRequired = map[string][][]string{
	"":          {{"sources"}, {"routes"}},
	"sources[]": {{"name"}, {"secrets", "secret_files"}},
	"sinks[]":   {{"name"}, {"type"}},
	"routes[]":  {{"name"}, {"to"}, {"status", "when"}},
	"nats":      {{"url"}},
	"kafka":     {{"brokers"}},
	"pubsub":    {{"project"}},
	"file":      {{"path"}},
	"redis":     {{"url"}},
	"rabbitmq":  {{"url"}},
	"http":      {{"secret", "secrets"}},
}

// schemaRanges are the bounds validation sets on whole numbers; 0 is
// in each, as it stands for the default (SetDefaults fills it in).
var schemaRanges = map[string][2]int64{
	"server.replay_cache_size": {0, MaxReplayCacheSize},
	"spool.replicas":           {0, jetstream.MaxReplicas},
	"spool.partitions":         {0, jetstream.MaxPartitions},
}

// schemaMinItems are the lists that must not be empty.
var schemaMinItems = map[string]bool{"sources": true, "routes": true, "routes[].to": true}

type schemaGen struct {
	enums   map[string][]string // schemaEnums, built once per schema
	missing []string            // keys without a row in the reference
}

func (g *schemaGen) root() *jsonSchema {
	// The defaults: a config with one of each list item, SetDefaults
	// applied; the jetstream spool's keys from its own SetDefaults (the
	// local backend leaves them empty).
	cfg := Config{Sources: []Source{{}}, Sinks: []Sink{{}}, Routes: []Route{{To: []Target{{}}}}}
	cfg.SetDefaults()
	cfg.Spool.JetStream.SetDefaults()

	root := g.object(reflect.TypeFor[Config](), reflect.ValueOf(cfg), "")
	root.Schema = SchemaDraft
	root.Title = "hookbridge configuration"
	root.Description = "hookbridge's config.yaml (hookbridge serve -config FILE). Generated by `hookbridge schema` from the config types and docs/configuration.md, the reference."
	root.Type = "object"

	defs := &properties{}
	defs.add(defEnv, &jsonSchema{
		Description: "A string holding a ${VAR} or ${VAR:-default} reference, expanded from the environment before the value is read.",
		Type:        "string", Pattern: envPattern,
	})
	defs.add(defDuration, &jsonSchema{
		Description: "A Go duration such as 200ms, 30s, 5m or 1h30m; 0 is none.",
		AnyOf: []*jsonSchema{
			{Type: "string", Pattern: durationPattern},
			{Type: "integer", Const: 0},
			ref(defEnv),
		},
	})
	defs.add(defInteger, &jsonSchema{
		Description: "A whole number; _ separators are allowed (1_000_000).",
		AnyOf: []*jsonSchema{
			{Type: "integer"},
			{Type: "string", Pattern: integerPattern},
			ref(defEnv),
		},
	})
	defs.add(defBoolean, &jsonSchema{
		AnyOf: []*jsonSchema{{Type: "boolean"}, ref(defEnv)},
	})
	defs.add(defTarget, g.target())
	root.Defs = defs
	spoolBackends(root.Properties.schemas[slices.Index(root.Properties.names, "spool")])
	return root
}

// spoolBackends adds to the spool's schema what validateSpool checks of
// its backend: the jetstream backend's keys (jetstream.Config's) are
// refused with backend local, written or left to the default, and
// jetstream needs url (jetstream.Config.Validate). A backend from ${VAR}
// is left to the loader.
func spoolBackends(s *jsonSchema) {
	onlyNull := &properties{}
	walkKeys(reflect.TypeFor[jetstream.Config](), nil, func(name string, _ []int) { onlyNull.add(name, nullSchema) })
	backendIs := func(values ...any) *properties {
		return &properties{names: []string{"backend"}, schemas: []*jsonSchema{{Enum: values}}}
	}
	s.AllOf = append(s.AllOf,
		&jsonSchema{If: &jsonSchema{Properties: backendIs(SpoolLocal, nil)}, Then: &jsonSchema{Properties: onlyNull}},
		&jsonSchema{If: &jsonSchema{Properties: backendIs(SpoolJetStream), Required: []string{"backend"}}, Then: &jsonSchema{Required: []string{"url"}}},
	)
}

// describe sets s's description and default from the reference row of
// key and the defaulted value v. Every value but a mapping or a list of
// mappings (whose keys have their own rows) must have a row.
func (g *schemaGen) describe(s *jsonSchema, key string, v reflect.Value, leaf bool) {
	entry, ok := referenceRows[key]
	if !ok {
		if leaf {
			g.missing = append(g.missing, key)
		}
		return
	}
	s.Description = entry.meaning
	if entry.literalDefault {
		s.Default = jsonDefault(v)
	}
}

// object is the schema of struct type t, whose defaulted value is v; path
// is t's key path ("server", "sources[]", "nats.stream"), "" at the top.
func (g *schemaGen) object(t reflect.Type, v reflect.Value, path string) *jsonSchema {
	s := &jsonSchema{Type: "object", Properties: &properties{}, AdditionalProperties: ptr(false)}
	required := map[string]bool{}
	for _, names := range schemaRequired[path] {
		if len(names) == 1 {
			s.Required = append(s.Required, names[0])
			required[names[0]] = true
			continue
		}
		var anyOf []*jsonSchema
		for _, n := range names {
			anyOf = append(anyOf, &jsonSchema{Required: []string{n}})
		}
		s.AllOf = append(s.AllOf, &jsonSchema{AnyOf: anyOf})
	}
	walkKeys(t, nil, func(name string, index []int) {
		key := joinKey(path, name)
		var fv reflect.Value
		if v.IsValid() {
			fv = v.FieldByIndex(index)
		}
		s.Properties.add(name, g.value(t.FieldByIndex(index).Type, fv, key, required[name]))
	})
	return s
}

// value is the schema of a value of type t at key, defaulted to v.
func (g *schemaGen) value(t reflect.Type, v reflect.Value, key string, required bool) *jsonSchema {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
		if v.IsValid() {
			if v.IsNil() {
				v = reflect.Value{}
			} else {
				v = v.Elem()
			}
		}
	}
	var s *jsonSchema
	switch {
	case t == reflect.TypeFor[Sink]():
		s = g.sink()
	case t == reflect.TypeFor[Target]():
		s = ref(defTarget)
	case t == durationType:
		s = ref(defDuration)
	case t.Kind() == reflect.Struct:
		s = g.object(t, v, key)
	case t.Kind() == reflect.Slice:
		var first reflect.Value
		if v.IsValid() && v.Len() > 0 {
			first = v.Index(0)
		}
		s = &jsonSchema{Type: "array", Items: g.value(t.Elem(), first, key+"[]", true)}
		if schemaMinItems[key] {
			s.MinItems = ptr(1)
		}
	case t.Kind() == reflect.String:
		values := g.enums[key]
		if t == reflect.TypeFor[sinks.ContentMode]() {
			values = contentModes
		}
		s = &jsonSchema{Type: "string"}
		if values != nil {
			enum := &jsonSchema{}
			for _, e := range values {
				enum.Enum = append(enum.Enum, e)
			}
			s = &jsonSchema{AnyOf: []*jsonSchema{enum, ref(defEnv)}}
		} else if required {
			s.MinLength = ptr(1)
		}
	case t.Kind() == reflect.Bool:
		s = ref(defBoolean)
	case reflect.Int <= t.Kind() && t.Kind() <= reflect.Uint64:
		s = ref(defInteger)
	case t.Kind() == reflect.Float64:
		s = &jsonSchema{AnyOf: []*jsonSchema{{Type: "number"}, ref(defEnv)}}
	default:
		panic(fmt.Sprintf("config schema: %s: no JSON type for %s", key, t))
	}
	if r, ok := schemaRanges[key]; ok {
		s.Minimum, s.Maximum = &r[0], &r[1]
	}
	if !strings.HasSuffix(key, "[]") {
		elem := t
		if t.Kind() == reflect.Slice {
			elem = t.Elem()
		}
		g.describe(s, key, v, elem.Kind() != reflect.Struct || elem == durationType)
	}
	if required || strings.HasSuffix(key, "[]") {
		return s
	}
	return nullable(s)
}

// nullable lets s be null too: an explicit null keeps the default.
func nullable(s *jsonSchema) *jsonSchema {
	switch {
	case s.Type == "object" || s.Type == "array" || s.Type == "string":
		s.Type = []string{s.Type.(string), "null"}
	case s.AnyOf != nil:
		s.AnyOf = append(s.AnyOf, nullSchema)
	default: // a $ref, which takes siblings in 2020-12
		s.AnyOf = []*jsonSchema{nullSchema, {Ref: s.Ref}}
		s.Ref = ""
	}
	return s
}

// sink is the schema of a sinks item: name, type, retry and dead_letter,
// and for each type, that kind's own keys and no other.
func (g *schemaGen) sink() *jsonSchema {
	cfg := Config{Sinks: []Sink{{}}}
	cfg.SetDefaults()
	s := g.object(reflect.TypeFor[sinkKeys](), reflect.ValueOf(sinkKeys{Retry: cfg.Sinks[0].Retry}), "sinks[]")
	ks := kinds()
	slices.SortFunc(ks, func(a, b sinks.Kind) int { return strings.Compare(a.Name, b.Name) })
	typ := s.Properties.schemas[slices.Index(s.Properties.names, "type")]
	for _, k := range ks {
		typ.Enum = append(typ.Enum, k.Name)
	}
	typ.Type, typ.MinLength = "string", nil
	for _, k := range ks {
		opts := k.NewConfig()
		// A nats sink's embedded keys apply, and are defaulted, only
		// with url: embedded: their defaults are those of such a sink.
		if o, ok := opts.(*natssink.Config); ok {
			o.URL = natssink.Embedded
		}
		opts.SetDefaults()
		own := g.object(reflect.TypeOf(opts).Elem(), reflect.ValueOf(opts).Elem(), k.Name)
		own.Type, own.AdditionalProperties = nil, nil
		s.AllOf = append(s.AllOf, &jsonSchema{
			If:   &jsonSchema{Properties: &properties{names: []string{"type"}, schemas: []*jsonSchema{{Const: k.Name}}}, Required: []string{"type"}},
			Then: own,
		})
	}
	// The kind's keys are evaluated by its branch: any other key, another
	// kind's included, is unknown.
	s.AdditionalProperties, s.UnevaluatedProperties = nil, ptr(false)
	return s
}

// sinkKeys are the keys of a sink besides its kind's, as Sink.decodeNode
// reads them.
type sinkKeys struct {
	Name       string  `yaml:"name"`
	Type       string  `yaml:"type"`
	Retry      Retry   `yaml:"retry"`
	DeadLetter *Target `yaml:"dead_letter"`
}

// target is the schema of a route's to item and of a dead_letter: sink
// and at most one target key.
func (g *schemaGen) target() *jsonSchema {
	s := &jsonSchema{Type: "object", Properties: &properties{}, Required: []string{"sink"}, MaxProperties: ptr(2), AdditionalProperties: ptr(false)}
	sink := &jsonSchema{Type: "string", MinLength: ptr(1)}
	g.describe(sink, "routes[].to[].sink", reflect.Value{}, true)
	s.Properties.add("sink", sink)
	for _, k := range targetKeys() {
		p := &jsonSchema{Type: "string"}
		g.describe(p, "routes[].to[]."+k, reflect.Value{}, true)
		s.Properties.add(k, nullable(p))
	}
	return s
}

// jsonDefault is v as a JSON default: durations as the file writes them.
func jsonDefault(v reflect.Value) any {
	if !v.IsValid() {
		return nil
	}
	if v.Type() == durationType {
		return shortDuration(time.Duration(v.Int()))
	}
	switch v.Kind() {
	case reflect.Bool:
		return v.Bool()
	case reflect.String:
		return v.String()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return v.Uint()
	}
	return nil
}

// shortDuration is d as written in a config: 2m, 168h, 200ms, 0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
