// Package schematest checks configs against the config's JSON Schema
// (config.Schema, docs/config.schema.json) with a real draft 2020-12
// validator, as an editor's yaml-language-server does. It is shared by
// the tests of package config (the generated schema) and of deploy (the
// shipped file), so that both validate alike; only tests import it,
// which keeps the validator out of the binary.
package schematest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"
)

// Compile compiles the schema raw, failing t if it is not JSON or not a
// schema.
func Compile(t testing.TB, raw []byte) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("the schema is not JSON: %v", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource("config.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("config.schema.json")
	if err != nil {
		t.Fatalf("the schema does not compile: %v", err)
	}
	return sch
}

// ValidateYAML validates YAML text as the JSON value an editor's
// yaml-language-server validates; a schema's refusal is a
// *jsonschema.ValidationError.
func ValidateYAML(sch *jsonschema.Schema, data []byte) error {
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return fmt.Errorf("not YAML: %w", err)
	}
	j, err := json.Marshal(v)
	if err != nil {
		return err
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		return err
	}
	return sch.Validate(inst)
}
