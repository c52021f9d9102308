package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// shippedSchema is the schema config.yaml's modeline names.
const shippedSchema = "../../docs/config.schema.json"

// TestSchemaMatchesShippedFile: docs/config.schema.json is what
// `hookbridge schema` prints, byte for byte.
func TestSchemaMatchesShippedFile(t *testing.T) {
	code, stdout, stderr := runCmd(t, "", nil, "schema")
	if code != exitOK || stderr != "" {
		t.Fatalf("schema: exit %d, stderr %q", code, stderr)
	}
	if !json.Valid([]byte(stdout)) {
		t.Fatal("schema prints no JSON")
	}
	shipped, err := os.ReadFile(shippedSchema)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(shipped, []byte(stdout)) {
		t.Errorf("%s differs from `hookbridge schema`: run go run ./cmd/hookbridge schema > docs/config.schema.json", shippedSchema)
	}
}

// TestConfigNamesShippedSchema: config.yaml's first line points
// yaml-language-server at the shipped schema.
func TestConfigNamesShippedSchema(t *testing.T) {
	data, err := os.ReadFile("../../config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(data), "\n")
	if want := "# yaml-language-server: $schema=docs/config.schema.json"; first != want {
		t.Errorf("config.yaml's first line is %q, want %q", first, want)
	}
}

func TestSchemaMisuse(t *testing.T) {
	code, stdout, stderr := runCmd(t, "", nil, "schema", "extra")
	if code != exitUsage || stdout != "" || strings.Count(stderr, "\n") != 1 {
		t.Errorf("schema extra: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}
