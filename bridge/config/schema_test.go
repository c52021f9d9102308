package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/hookbridge/hookbridge/bridge/config/internal/refdoc"
	"github.com/hookbridge/hookbridge/bridge/config/schematest"
)

// compileSchema compiles Schema with a real draft 2020-12 validator.
func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	raw, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	return schematest.Compile(t, raw)
}

// TestDescriptionsUpToDate: descriptions.go is what go generate writes
// from docs/configuration.md today.
func TestDescriptionsUpToDate(t *testing.T) {
	md, err := os.ReadFile(reference)
	if err != nil {
		t.Fatal(err)
	}
	want, err := refdoc.Generate(md)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("descriptions.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("descriptions.go is out of date with %s: run go generate ./bridge/config", reference)
	}
}

// TestSchemaDefaultsAreTheReferences: each default the schema gives is
// the reference's literal for that key (which TestConfigReferenceDefaults
// holds to what Load fills in), and each literal has its default.
func TestSchemaDefaultsAreTheReferences(t *testing.T) {
	raw, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	var root map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // numbers as written: 1000000, not 1e+06
	if err := dec.Decode(&root); err != nil {
		t.Fatal(err)
	}
	defaults := map[string]any{}
	// walk collects the defaults under node, whose key is key; a sink
	// type's branch holds that kind's keys, under its name.
	var walk func(node any, key string)
	walk = func(node any, key string) {
		m, ok := node.(map[string]any)
		if !ok {
			return
		}
		if d, ok := m["default"]; ok {
			defaults[key] = d
		}
		props, _ := m["properties"].(map[string]any)
		for name, p := range props {
			walk(p, joinKey(key, name))
		}
		walk(m["items"], key+"[]")
		for _, list := range []string{"allOf", "anyOf"} {
			subs, _ := m[list].([]any)
			for _, sub := range subs {
				walk(sub, key)
			}
		}
		if kind, ok := jsonAt(m, "if", "properties", "type", "const").(string); ok {
			walk(m["then"], kind)
		} else {
			walk(m["then"], key)
		}
	}
	walk(root, "")
	rows := readReference(t)
	for key, d := range defaults {
		r, ok := rows[key]
		if !ok || !r.LiteralDefault {
			t.Errorf("the schema gives %s the default %v, the reference no literal", key, d)
			continue
		}
		if got, want := fmt.Sprint(d), strings.Trim(r.Default, "`"); got != want {
			t.Errorf("the schema gives %s the default %q, the reference %q", key, got, want)
		}
	}
	for key, r := range rows {
		if _, ok := defaults[key]; r.LiteralDefault && !ok {
			t.Errorf("the reference gives %s the default %s, the schema none", key, r.Default)
		}
	}
	if len(defaults) < 50 {
		t.Errorf("only %d defaults in the schema", len(defaults))
	}
}

// jsonAt is the value at path under v, nil if there is none.
func jsonAt(v any, path ...string) any {
	for _, k := range path {
		m, _ := v.(map[string]any)
		v = m[k]
	}
	return v
}

// TestSchemaAcceptsRepoConfigs: the repository's config.yaml and every
// valid config of testdata/config pass the schema (deploy's configs are
// checked in package deploy).
func TestSchemaAcceptsRepoConfigs(t *testing.T) {
	sch := compileSchema(t)
	files, err := filepath.Glob("testdata/config/ok-*.yaml")
	if err != nil || len(files) < 5 {
		t.Fatalf("too few valid configs in testdata/config (%d): %v", len(files), err)
	}
	files = append(files, "../../config.yaml")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := schematest.ValidateYAML(sch, data); err != nil {
				t.Errorf("%s: the schema refuses a valid config: %v", f, err)
			}
		})
	}
}

// TestSchemaRefusesInvalidConfigs: the invalid configs of testdata/config
// whose problem the schema can express (an unknown key, a wrong type, a
// value outside an enum or range, a missing required key) are refused by
// the schema too, for that problem. The others need the loader (cross
// references, templates, CEL, environment, relations between values) and
// are listed as such, so that a new invalid file must be placed in one
// list or the other.
func TestSchemaRefusesInvalidConfigs(t *testing.T) {
	refused := map[string][]string{ // file: what the schema's error names
		"unknown-top-key.yaml":         {"'servre'"},
		"nats-unknown-key.yaml":        {"/sinks/0/jetstream_x"},
		"status-not-list.yaml":         {"/routes/0/status"},
		"bad-duration.yaml":            {"/sources/0/tolerance"},
		"unknown-sink-type.yaml":       {"/sinks/0/type"},
		"content-mode.yaml":            {"/sinks/0/content_mode", "/sinks/1/content_mode"},
		"no-secret.yaml":               {"/sources/0", "'secrets'"},
		"nats-missing-url.yaml":        {"/sinks/0", "'url'"},
		"kafka-sqs-problems.yaml":      {"/sinks/0/compression", "'brokers'"},
		"multiple-problems.yaml":       {"/sinks/0/stream/storage"},
		"replay-cache-size.yaml":       {"/server/replay_cache_size"},
		"jetstream-problems.yaml":      {"/spool/replicas", "/spool/partitions"},
		"not-mapping.yaml":             {"want object"},
		"jetstream-keys-on-local.yaml": {"/spool/url", "/spool/partitions"},
		"telemetry-problems.yaml":      {"/telemetry/exporter", "/telemetry/protocol", "/telemetry/sampler"},
	}
	loaderOnly := []string{
		"budgets.yaml", "dead-letter-template.yaml", "duplicate-route.yaml", "duplicate-sink.yaml",
		"unknown-sink-in-route.yaml", "unknown-template-var.yaml",
		"unset-env.yaml", "when-problems.yaml", "write-timeout.yaml", "wrong-target-key.yaml",
		"yaml-syntax.yaml", "telemetry-values.yaml",
	}
	sch := compileSchema(t)
	files, _ := filepath.Glob("testdata/config/*.yaml")
	for _, f := range files {
		base := filepath.Base(f)
		if strings.HasPrefix(base, "ok-") {
			continue
		}
		want, ok := refused[base]
		if !ok {
			if !slices.Contains(loaderOnly, base) {
				t.Errorf("%s: add it to the files the schema refuses, or to those only the loader can", base)
			}
			continue
		}
		t.Run(base, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Load(f, testEnv); err == nil {
				t.Fatal("Load accepts it: it is no invalid case")
			}
			checkRefused(t, sch, data, want)
		})
	}
	// A name left in either list after its file went would hide nothing,
	// but says a case is covered that is not.
	for _, file := range append(slices.Collect(maps.Keys(refused)), loaderOnly...) {
		if _, err := os.Stat(filepath.Join("testdata/config", file)); err != nil {
			t.Errorf("%s: %v", file, err)
		}
	}
}

// checkRefused checks that sch refuses data with an error that names each
// of want.
func checkRefused(t *testing.T, sch *jsonschema.Schema, data []byte, want []string) {
	t.Helper()
	err := schematest.ValidateYAML(sch, data)
	if err == nil {
		t.Fatal("the schema accepts it")
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("not a validation error: %v", err)
	}
	msg := fmt.Sprintf("%#v", ve)
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("the schema's error does not name %s:\n%s", w, msg)
		}
	}
}

// schemaBase is a valid config with a file sink, for the cases below.
const schemaBase = `sources: [{name: s, secrets: [whsec_x]}]
sinks: [{name: f, type: file, path: ./events.jsonl}]
routes: [{name: r, status: ["*"], to: [{sink: f}]}]
`

// kindBase are a valid sink of each kind, so that a case adds one key.
var kindBase = map[string]string{
	"nats":     "{name: k, type: nats, url: embedded, subject: task.all%s}",
	"kafka":    "{name: k, type: kafka, brokers: [kafka:9092]%s}",
	"sqs":      "{name: k, type: sqs, queue_url: https://sqs.us-east-1.amazonaws.com/123456789012/q%s}",
	"file":     "{name: k, type: file, path: ./x.jsonl%s}",
	"http":     "{name: k, type: http, url: https://example.com/hook, secret: whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA%s}",
	"rabbitmq": "{name: k, type: rabbitmq, url: amqp://rabbitmq:5672%s}",
	"redis":    "{name: k, type: redis, url: redis://redis:6379/0%s}",
	"pubsub":   "{name: k, type: pubsub, project: p, topic: tasks%s}",
}

func withSink(kind, extra string) string {
	return fmt.Sprintf("sources: [{name: s, secrets: [whsec_x]}]\nsinks: ["+kindBase[kind]+"]\nroutes: [{name: r, status: [\"*\"], to: [{sink: k}]}]\n", extra)
}

// TestSchemaEnumsAreValidations: each value an enum of the schema lists
// is one the loader takes at that key, and a value outside it is refused
// by both.
func TestSchemaEnumsAreValidations(t *testing.T) {
	type enumCase struct {
		config string // a config with %s where the value goes
		errKey string // the key the loader names
		values []string
	}
	enums := schemaEnums()
	cases := map[string]enumCase{
		"delivery":            {"delivery: %s\n" + schemaBase, "delivery", enums["delivery"]},
		"routes[].delivery":   {strings.Replace(schemaBase, `status: ["*"],`, `status: ["*"], delivery: %s,`, 1), "routes[0].delivery", enums["routes[].delivery"]},
		"server.replay_cache": {"server: {replay_cache: %s}\nspool: {backend: jetstream, url: nats://nats:4222}\n" + schemaBase, "server.replay_cache", enums["server.replay_cache"]},
		"spool.backend":       {"spool: {backend: %s}\n" + schemaBase, "spool.backend", enums["spool.backend"]},
		"spool.storage":       {"spool: {backend: jetstream, url: nats://nats:4222, storage: %s}\n" + schemaBase, "spool.storage", enums["spool.storage"]},
		"nats.stream.storage": {withSink("nats", ", stream: {storage: %s}"), "sinks[0].stream.storage", enums["nats.stream.storage"]},
		"kafka.acks":          {withSink("kafka", ", acks: %s"), "sinks[0].acks", enums["kafka.acks"]},
		"kafka.compression":   {withSink("kafka", ", compression: %s"), "sinks[0].compression", enums["kafka.compression"]},
		"telemetry.exporter":  {"telemetry: {exporter: %s}\n" + schemaBase, "telemetry.exporter", enums["telemetry.exporter"]},
		"telemetry.protocol":  {"telemetry: {protocol: %s}\n" + schemaBase, "telemetry.protocol", enums["telemetry.protocol"]},
		"telemetry.sampler":   {"telemetry: {sampler: %s}\n" + schemaBase, "telemetry.sampler", enums["telemetry.sampler"]},
		"kafka.sasl.mechanism": {withSink("kafka", ", sasl: {mechanism: %s, username: u, password: p}"),
			"sinks[0].sasl.mechanism", enums["kafka.sasl.mechanism"]},
	}
	keys := configKeys()
	for key := range enums {
		if _, ok := cases[key]; !ok {
			t.Errorf("enum %s has no case here", key)
		}
		if !slices.Contains(keys, key) {
			t.Errorf("enum %s is not a key of the config", key)
		}
	}
	for key := range schemaRanges {
		if !slices.Contains(keys, key) {
			t.Errorf("range %s is not a key of the config", key)
		}
	}
	for _, k := range kinds() {
		if _, ok := kindBase[k.Name]; !ok {
			t.Fatalf("kind %s has no base sink here", k.Name)
		}
		if slices.Contains(keys, k.Name+".content_mode") {
			cases[k.Name+".content_mode"] = enumCase{withSink(k.Name, ", content_mode: %s"), "sinks[0].content_mode", contentModes}
		}
	}
	sch := compileSchema(t)
	for key, tc := range cases {
		t.Run(key, func(t *testing.T) {
			if len(tc.values) == 0 {
				t.Fatal("no values")
			}
			for _, v := range append(slices.Clone(tc.values), "bogus") {
				data := fmt.Appendf(nil, tc.config, v)
				_, lerr := Parse("case.yaml", data, testEnv)
				loaderRefuses := lerr != nil && strings.Contains(lerr.Error(), ": "+tc.errKey+": ")
				serr := schematest.ValidateYAML(sch, data)
				schemaRefuses := serr != nil && strings.Contains(fmt.Sprintf("%#v", serr), "at '"+instancePath(tc.errKey)+"'")
				switch {
				case v == "bogus" && !loaderRefuses:
					t.Errorf("%s: %s: the loader takes it (%v)", key, v, lerr)
				case v == "bogus" && !schemaRefuses:
					t.Errorf("%s: %s: the schema takes it (%v)", key, v, serr)
				case v != "bogus" && loaderRefuses:
					t.Errorf("%s: %s: the schema lists it, the loader refuses it: %v", key, v, lerr)
				case v != "bogus" && schemaRefuses:
					t.Errorf("%s: %s: the schema refuses its own value: %v", key, v, serr)
				}
			}
		})
	}
}

// instancePath is the JSON pointer of a key as the loader names it:
// sinks[0].stream.storage is /sinks/0/stream/storage.
func instancePath(key string) string {
	return "/" + strings.NewReplacer("[", "/", "]", "", ".", "/").Replace(key)
}

// TestSchemaRequiredAndTypes: configs the loader refuses for a missing key,
// a key of another sink type, or a wrong type are refused by the schema,
// and the forms the loader takes besides plain values (null, ${VAR},
// 1_000 numbers, durations as 0) are accepted by both.
func TestSchemaRequiredAndTypes(t *testing.T) {
	sch := compileSchema(t)
	refused := []struct {
		name, config string
		want         []string
	}{
		{"source without name", strings.Replace(schemaBase, "name: s, ", "", 1), []string{"/sources/0", "'name'"}},
		{"no sources", strings.Replace(schemaBase, "sources: [{name: s, secrets: [whsec_x]}]", "sources: []", 1), []string{"/sources"}},
		{"route without to", strings.Replace(schemaBase, `, to: [{sink: f}]`, "", 1), []string{"/routes/0", "'to'"}},
		{"route without status or when", strings.Replace(schemaBase, `status: ["*"], `, "", 1), []string{"/routes/0", "'status'", "'when'"}},
		{"sink without type", strings.Replace(schemaBase, "type: file, ", "", 1), []string{"/sinks/0", "'type'"}},
		{"target without sink", strings.Replace(schemaBase, "{sink: f}", "{}", 1), []string{"/routes/0/to/0", "'sink'"}},
		{"target with two keys", strings.Replace(withSink("nats", ""), "{sink: k}", "{sink: k, subject: a, topic: b}", 1), []string{"/routes/0/to/0"}},
		{"key of another kind", withSink("file", ", subject: x"), []string{"/sinks/0/subject"}},
		{"kafka key on nats", withSink("nats", ", brokers: [k:9092]"), []string{"/sinks/0/brokers"}},
		{"pubsub without project", strings.Replace(withSink("pubsub", ""), "project: p, ", "", 1), []string{"'project'"}},
		{"http without secret", strings.Replace(withSink("http", ""), ", secret: whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "", 1), []string{"'secret'", "'secrets'"}},
		{"word for a number", "server: {max_body_bytes: lots}\n" + schemaBase, []string{"/server/max_body_bytes"}},
		{"number for a list", strings.Replace(withSink("kafka", ""), "brokers: [kafka:9092]", "brokers: 5", 1), []string{"/sinks/0/brokers"}},
		{"word for a boolean", withSink("nats", ", jetstream: maybe"), []string{"/sinks/0/jetstream"}},
		{"list for a string", "server: {listen: [a]}\n" + schemaBase, []string{"/server/listen"}},
		{"jetstream without url", "spool: {backend: jetstream}\n" + schemaBase, []string{"/spool", "'url'"}},
		{"jetstream key by default local", "spool: {stream: S}\n" + schemaBase, []string{"/spool/stream"}},
		{"duration without unit", "server: {read_timeout: 30}\n" + schemaBase, []string{"/server/read_timeout"}},
		{"unknown retry key", strings.Replace(schemaBase, "path: ./events.jsonl", "path: ./events.jsonl, retry: {max_tries: 3}", 1), []string{"'max_tries'"}},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Parse("case.yaml", []byte(tc.config), testEnv); err == nil {
				t.Fatalf("the loader takes it:\n%s", tc.config)
			}
			checkRefused(t, sch, []byte(tc.config), tc.want)
		})
	}
	env := func(name string) (string, bool) {
		switch name {
		case "PORT_BYTES":
			return "2097152", true
		case "JS":
			return "true", true
		}
		return testEnv(name)
	}
	accepted := map[string]string{
		"nulls":                        "server:\n  listen: null\n  tls: null\ndelivery: null\nspool: null\n" + schemaBase,
		"env in a number":              "server: {max_body_bytes: \"${PORT_BYTES}\", max_buffered_bytes: 33_554_432}\n" + schemaBase,
		"env in a boolean":             withSink("nats", ", jetstream: \"${JS}\""),
		"env default":                  "server: {listen: \"${LISTEN:-127.0.0.1:8081}\", read_timeout: \"${RT:-40s}\"}\n" + schemaBase,
		"zero duration":                "sources: [{name: s, secrets: [whsec_x], tolerance: 0}]\n" + schemaBase[strings.Index(schemaBase, "sinks:"):],
		"jetstream keys null on local": "spool: {backend: local, url: null}\n" + schemaBase,
		"durations":                    "server: {read_timeout: 1m30s, write_timeout: 90.5s, idle_timeout: 1h}\n" + schemaBase,
		"when without status":          strings.Replace(schemaBase, `status: ["*"]`, `when: status == "finished"`, 1),
		"every kind":                   allKinds(),
	}
	for name, cfg := range accepted {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse("case.yaml", []byte(cfg), env); err != nil {
				t.Fatalf("the loader refuses it: %v", err)
			}
			if err := schematest.ValidateYAML(sch, []byte(cfg)); err != nil {
				t.Errorf("the schema refuses it: %v", err)
			}
		})
	}
}

// TestSchemaRequiredKindKeys: each key the schema requires of a sink
// kind (or one of each group) is one the loader requires too: a sink of
// that kind without it is refused by both, naming it.
func TestSchemaRequiredKindKeys(t *testing.T) {
	sch := compileSchema(t)
	checked := 0
	for _, k := range kinds() {
		for _, group := range schemaRequired[k.Name] {
			cfg := withSink(k.Name, "")
			var want []string
			for _, key := range group {
				cfg = regexp.MustCompile(`, `+key+`: (\[[^\]]*\]|[^,}]*)`).ReplaceAllString(cfg, "")
				want = append(want, "'"+key+"'")
			}
			t.Run(k.Name+"/"+strings.Join(group, ","), func(t *testing.T) {
				if _, err := Parse("case.yaml", []byte(cfg), testEnv); err == nil {
					t.Fatalf("the loader takes it:\n%s", cfg)
				}
				checkRefused(t, sch, []byte(cfg), want)
			})
			checked++
		}
	}
	if checked < 6 {
		t.Errorf("only %d required keys of sink kinds checked", checked)
	}
}

// allKinds is a valid config with a sink of every kind.
func allKinds() string {
	var b strings.Builder
	b.WriteString("sources: [{name: s, secrets: [whsec_x]}]\nsinks:\n")
	for _, k := range kinds() {
		b.WriteString("  - " + strings.Replace(fmt.Sprintf(kindBase[k.Name], ""), "name: k", "name: "+k.Name, 1) + "\n")
	}
	b.WriteString("routes: [{name: r, status: [\"*\"], to: [{sink: file}]}]\n")
	return b.String()
}

// TestSchemaRangesAreValidations: the bounds the schema gives a number
// are the loader's: both take each bound, both refuse one past it.
func TestSchemaRangesAreValidations(t *testing.T) {
	jetstreamSpool := "spool: {backend: jetstream, url: nats://nats:4222, %s}\n" + schemaBase
	cases := map[string]struct{ config, errKey string }{
		"server.replay_cache_size": {"server: {replay_cache_size: %d}\n" + schemaBase, "server.replay_cache_size"},
		"spool.replicas":           {fmt.Sprintf(jetstreamSpool, "replicas: %d"), "spool.replicas"},
		"spool.partitions":         {fmt.Sprintf(jetstreamSpool, "partitions: %d"), "spool.partitions"},
	}
	sch := compileSchema(t)
	for key, bounds := range schemaRanges {
		tc, ok := cases[key]
		if !ok {
			t.Errorf("range %s has no case here", key)
			continue
		}
		for _, v := range []int64{bounds[0] - 1, bounds[0], bounds[1], bounds[1] + 1} {
			inside := v >= bounds[0] && v <= bounds[1]
			data := fmt.Appendf(nil, tc.config, v)
			_, lerr := Parse("case.yaml", data, testEnv)
			loaderRefuses := lerr != nil && strings.Contains(lerr.Error(), ": "+tc.errKey+": ")
			schemaRefuses := schematest.ValidateYAML(sch, data) != nil
			if loaderRefuses == inside || schemaRefuses == inside {
				t.Errorf("%s: %d: the loader refuses it: %t, the schema: %t; want %t for both (%v)", key, v, loaderRefuses, schemaRefuses, !inside, lerr)
			}
		}
	}
}
