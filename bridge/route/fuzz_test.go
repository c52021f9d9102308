package route

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"cel.dev/cel-go/common/types"

	"github.com/hookbridge/hookbridge/bridge/event"
	"github.com/hookbridge/hookbridge/bridge/signature"
)

// FuzzData feeds arbitrary bodies, canonicalized as the ingress does, to
// what reads an event's data: the lazy CEL values must equal a decoding by
// encoding/json (with the same number rules), member by member and whole,
// conditions must evaluate without an internal error (CEL turns a panic
// into one), and templates must expand to safe names only.
func FuzzData(f *testing.F) {
	for _, seed := range []string{
		`{"status": "finished", "metadata": {"tier": "vip", "team": "ops"}}`,
		`{"type": "agent.task.status_update", "timestamp": "2026-12-04T09:00:00Z", "payload": {"status": "paused", "metadata": null}}`,
		`{"status": "x", "n": [1, 2.5, -0.0, 1e400, NaN, 18446744073709551615, -9223372036854775809, 123456789012345678901234567890]}`,
		`{"status": "x", "\u00e9": {"\ud83d\ude80": ["a\"b", {"": true}]}, "a.b": false}`,
		`{"status": "", "metadata": {"tier": 5, "team": ["ops"], "env": {}}}`,
	} {
		f.Add([]byte(seed))
	}
	compiler, err := NewCompiler(1 << 20)
	if err != nil {
		f.Fatal(err)
	}
	var conds []*Condition
	for _, expr := range []string{
		`data.?metadata.?tier.orValue("") == "vip"`,
		`data.?metadata.?team.orValue("") in ["ops", "infra"]`,
		`data.metadata.tier == "vip"`,
		`data.exists(k, k.startsWith("a")) || size(data) > 3`,
		`data.?n.orValue([]).exists(x, x == 1)`,
		`data == {"status": status}`,
		`has(data.metadata) && data.metadata != null`,
		`time.getHours("Europe/Paris") < 12`,
	} {
		c, err := compiler.Compile(expr)
		if err != nil {
			f.Fatal(err)
		}
		conds = append(conds, c)
	}
	var tmpls []Template
	for _, s := range []string{"{data.status}", "a.{data.metadata.tier}.{data.metadata.team}", "{data.é.🚀}", "{data.n}"} {
		t, err := ParseTemplate(s)
		if err != nil {
			f.Fatal(err)
		}
		tmpls = append(tmpls, t)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var cz signature.Canonicalizer
		c, err := cz.Canonicalize(body)
		if err != nil {
			return
		}
		ev, err := event.Normalize("fuzz", "1796376600", time.Unix(1796376600, 0), c, event.Trace{})
		if err != nil || ev.Test {
			return
		}
		want := decodeLikeCEL(t, ev.Payload)
		if got := jsonNative(ev.Payload); !reflect.DeepEqual(got, want) {
			t.Fatalf("jsonNative(%s)\n= %#v\nencoding/json gives %#v", ev.Payload, got, want)
		}
		obj := jsonValue(ev.Payload)
		full := types.DefaultTypeAdapter.NativeToValue(want)
		if obj.Equal(full) != types.True || full.Equal(obj) != types.True {
			t.Fatalf("lazy %s differs from its decoding", ev.Payload)
		}
		for k := range want.(map[string]any) {
			v, found := obj.(*jsonObject).Find(types.String(k))
			if !found || types.Equal(v, types.DefaultTypeAdapter.NativeToValue(want.(map[string]any)[k])) != types.True {
				t.Fatalf("member %q of %s: %v %v", k, ev.Payload, v, found)
			}
		}
		for _, cond := range conds {
			if _, err := cond.Eval(ev); err != nil && strings.Contains(err.Error(), "internal error") {
				t.Fatalf("%s on %s: %v", cond, ev.Payload, err)
			}
		}
		for _, tmpl := range tmpls {
			out := tmpl.Expand(ev)
			for i := 0; i < len(out); i++ {
				if c := out[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
					t.Fatalf("%s on %s = %q", tmpl, ev.Payload, out)
				}
			}
		}
	})
}

// decodeLikeCEL decodes canonical JSON with encoding/json, numbers by the
// rules conditions follow: int64, else uint64, else float64.
func decodeLikeCEL(t *testing.T, data []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("encoding/json refuses the payload %s: %v", data, err)
	}
	var conv func(any) any
	conv = func(v any) any {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				v[k] = conv(e)
			}
			return v
		case []any:
			for i, e := range v {
				v[i] = conv(e)
			}
			return v
		case json.Number:
			return jsonNumber([]byte(v))
		}
		return v
	}
	return conv(v)
}
