package config

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzConfig parses arbitrary YAML as a config file. It never panics;
// every error names the file; whatever parses is valid.
func FuzzConfig(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "config", "*.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("sources: [{name: a, secrets: [s]}]\n"))
	f.Add([]byte("sources: [{name: a, secrets: ['${X}']}]\nserver: {max_body_bytes: -1}\n"))
	f.Add([]byte("- a\n- b\n"))
	f.Add([]byte(""))
	f.Add([]byte("a: &x [*x]\n"))

	env := func(string) (string, bool) { return "x", true }
	f.Fuzz(func(t *testing.T, data []byte) {
		if bytes.Contains(data, []byte("secret_files")) {
			// Reads files named by the input (/dev/zero never ends):
			// not what this target is about.
			t.Skip()
		}
		cfg, err := Parse("fuzz.yaml", data, env)
		if err != nil {
			if cfg != nil {
				t.Errorf("a config returned with the error %v", err)
			}
			msgs := []string{err.Error()}
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				msgs = msgs[:0]
				for _, e := range j.Unwrap() {
					msgs = append(msgs, e.Error())
				}
			}
			for _, m := range msgs {
				if !strings.HasPrefix(m, "fuzz.yaml:") {
					t.Fatalf("error does not name the file: %q (input %q)", m, data)
				}
			}
			return
		}
		if cfg == nil {
			t.Fatal("nil config without an error")
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("parsed config does not validate: %v (input %q)", err, data)
		}
		cfg.SetDefaults() // idempotent
		if err := cfg.Validate(); err != nil {
			t.Fatalf("config invalid after SetDefaults again: %v (input %q)", err, data)
		}
	})
}
