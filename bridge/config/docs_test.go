package config

import (
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hookbridge/hookbridge/bridge/config/internal/refdoc"
)

// reference is the configuration reference, which lists every key with
// its default: this test holds it to the code, so that each default has
// one source of truth (the named constants applied by SetDefaults) and
// the page cannot drift from it.
const reference = "../../docs/configuration.md"

// readReference returns the reference's rows by key, read with the
// parser descriptions.go is generated with.
func readReference(t *testing.T) map[string]refdoc.Row {
	t.Helper()
	md, err := os.ReadFile(reference)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := refdoc.Parse(md)
	if err != nil {
		t.Fatalf("%s: %v", reference, err)
	}
	rows := map[string]refdoc.Row{}
	for _, r := range parsed {
		rows[r.Key] = r
	}
	return rows
}

// configKeys returns every key of the file: each yaml key of the config
// types, sinks' own keys under the kind's name ("nats.url").
func configKeys() []string {
	var keys []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		walkKeys(t, nil, func(name string, index []int) {
			ft := t.FieldByIndex(index).Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			switch {
			case ft == reflect.TypeFor[Sink]() || ft == reflect.TypeFor[[]Sink]():
				keys = append(keys, prefix+name+"[].name", prefix+name+"[].type", prefix+name+"[].dead_letter")
				walk(reflect.TypeFor[Retry](), prefix+name+"[].retry.")
			case ft == reflect.TypeFor[[]Target]():
				keys = append(keys, prefix+name+"[].sink")
				for _, k := range targetKeys() {
					keys = append(keys, prefix+name+"[]."+k)
				}
			case ft.Kind() == reflect.Struct && ft != reflect.TypeFor[time.Duration]():
				walk(ft, prefix+name+".")
			case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
				walk(ft.Elem(), prefix+name+"[].")
			default:
				keys = append(keys, prefix+name)
			}
		})
	}
	walk(reflect.TypeFor[Config](), "")
	for _, k := range kinds() {
		walk(reflect.TypeOf(k.NewConfig()).Elem(), k.Name+".")
	}
	return keys
}

// TestConfigReferenceListsEveryKey: every key the decoder takes has its
// row in docs/configuration.md, and every row is a key.
func TestConfigReferenceListsEveryKey(t *testing.T) {
	rows := readReference(t)
	keys := configKeys()
	for _, k := range keys {
		if _, ok := rows[k]; !ok {
			t.Errorf("%s has no row for %s: add one (key, default, meaning)", reference, k)
		}
	}
	for k, r := range rows {
		if !slices.Contains(keys, k) {
			t.Errorf("%s:%d: %s is not a key of the config", reference, r.Line, k)
		}
	}
}

// TestConfigReferenceDefaults: every default the reference gives as a
// literal is the value Load fills in when the key is left out.
func TestConfigReferenceDefaults(t *testing.T) {
	env := func(string) (string, bool) { return "whsec_x", true }
	local, err := Load("testdata/config/ok-defaults.yaml", env)
	if err != nil {
		t.Fatal(err)
	}
	shared, err := Load("testdata/config/ok-jetstream-defaults.yaml", env)
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, r := range readReference(t) {
		if !r.LiteralDefault {
			continue
		}
		path := strings.Split(r.Key, ".")
		var v reflect.Value
		switch {
		case slices.Contains(setKeys(reflect.ValueOf(shared.Spool.JetStream)), path[len(path)-1]) && path[0] == "spool":
			v = lookup(reflect.ValueOf(shared.Spool.JetStream), path[1:])
		default:
			v = lookupConfig(t, local, path)
		}
		if !v.IsValid() {
			t.Errorf("%s:%d: %s: no such key in a loaded config", reference, r.Line, r.Key)
			continue
		}
		if got, want := formatDefault(v), strings.Trim(r.Default, "`"); got != want {
			t.Errorf("%s:%d: %s: the reference says `%s`, Load fills in `%s`", reference, r.Line, r.Key, want, got)
		}
		checked++
	}
	if checked < 50 {
		t.Errorf("only %d defaults checked: has the reference's format changed?", checked)
	}
}

// lookupConfig finds key path in cfg: a sink kind's keys in the first sink
// of that kind, sinks[] and routes[] in the first of each.
func lookupConfig(t *testing.T, cfg *Config, path []string) reflect.Value {
	t.Helper()
	if k, ok := kindNamed(path[0]); ok {
		for _, sk := range cfg.Sinks {
			if sk.Type == k.Name {
				return lookup(reflect.ValueOf(sk.Options).Elem(), path[1:])
			}
		}
		t.Fatalf("the defaults config has no %s sink", k.Name)
	}
	if path[0] == "sinks[]" && path[1] == "retry" {
		return lookup(reflect.ValueOf(cfg.Sinks[0].Retry), path[2:])
	}
	return lookup(reflect.ValueOf(cfg).Elem(), path)
}

// lookup follows yaml keys from v; "name[]" takes a list's first element.
func lookup(v reflect.Value, path []string) reflect.Value {
	for _, key := range path {
		for v.Kind() == reflect.Pointer {
			v = v.Elem()
		}
		name, list := strings.CutSuffix(key, "[]")
		idx, ok := yamlFields(v.Type())[name]
		if !ok {
			return reflect.Value{}
		}
		v = v.FieldByIndex(idx)
		if list {
			if v.Len() == 0 {
				return reflect.Value{}
			}
			v = v.Index(0)
		}
	}
	return v
}

// formatDefault writes v as the reference writes a default: as YAML would
// take it, durations without zero units.
func formatDefault(v reflect.Value) string {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return ""
		}
		v = v.Elem()
	}
	if v.Type() == reflect.TypeFor[time.Duration]() {
		return shortDuration(time.Duration(v.Int()))
	}
	switch v.Kind() {
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.String:
		return v.String()
	case reflect.Int, reflect.Int64, reflect.Int32:
		return strconv.FormatInt(v.Int(), 10)
	}
	return fmt.Sprint(v.Interface())
}

// TestDocsQuoteSpoolIndexCost: the docs quote the local spool's memory
// per waiting message and its cache as SpoolIndexPerMessage and
// SpoolCacheBytes are (bridge/queue/local's TestIndexMemory asks for the
// constant to be raised should the index grow; the docs then follow).
func TestDocsQuoteSpoolIndexCost(t *testing.T) {
	quotes := map[string]string{
		reference:                fmt.Sprintf("each waiting message in memory, about %d B", SpoolIndexPerMessage),
		"../../docs/delivery.md": fmt.Sprintf("(`spool.max_events` × %d B + %s)", SpoolIndexPerMessage, bytesHuman(SpoolCacheBytes)),
	}
	for file, quote := range quotes {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(strings.Join(strings.Fields(string(data)), " "), quote) {
			t.Errorf("%s does not say %q", file, quote)
		}
	}
}

func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "0s", 200 * time.Millisecond: "200ms", 2 * time.Minute: "2m",
		168 * time.Hour: "168h", 90 * time.Second: "1m30s", 30 * time.Second: "30s", time.Hour + time.Minute: "1h1m"} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
