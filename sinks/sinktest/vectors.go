package sinktest

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// Vector is one signature vector computed by CPython: the contract's
// (shared/vectors/signatures.json, beside the repository) or the
// repository's own (bridge/signature/testdata/vectors_extra.json).
type Vector struct {
	Name      string `json:"name"`
	Expect    string `json:"expect"` // "valid" or "invalid"
	Secret    string `json:"secret"`
	Timestamp string `json:"timestamp"`
	BodyB64   string `json:"body_b64"`
	Signature string `json:"signature"`
	Signed    string `json:"signed"` // timestamp + "." + canonical, when the body parses
}

// Body is the vector's body, as sent.
func (v Vector) Body(t testing.TB) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(v.BodyB64)
	if err != nil {
		t.Fatalf("%s: body_b64: %v", v.Name, err)
	}
	return b
}

// Vectors reads a vector file; ok is false if it does not exist.
func Vectors(t testing.TB, path string) (vs []Vector, ok bool) {
	t.Helper()
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false
	}
	if err != nil {
		t.Fatal(err)
	}
	var file struct{ Vectors []Vector }
	if err := json.Unmarshal(data, &file); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(file.Vectors) == 0 {
		t.Fatalf("%s: no vectors", path)
	}
	return file.Vectors, true
}

// SharedVectorsPath is where the contract's vectors are: shared/ is
// checked out beside the repository, in CI as on a workstation.
func SharedVectorsPath(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "..", "shared", "vectors", "signatures.json")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// VectorNamed returns the vector called name.
func VectorNamed(t testing.TB, vs []Vector, name string) Vector {
	t.Helper()
	for _, v := range vs {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("no vector %q", name)
	return Vector{}
}
