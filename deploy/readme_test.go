package deploy

import (
	"bytes"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// README.md names what a user must do or create for the files to work.
func TestReadmeNamesWhatTheFilesNeed(t *testing.T) {
	b, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct{ text, why string }{
		{"docker build -f deploy/Dockerfile", "the build context is the repository root"},
		{secretEnv + "=", "what /etc/hookbridge/env holds for the systemd unit"},
		{"hookbridge-webhook-secret", "the Secret the manifests read"},
	} {
		if !bytes.Contains(b, []byte(s.text)) {
			t.Errorf("%s does not mention %q (%s): the deployment files rely on it", readme, s.text, s.why)
		}
	}
	// Each manifest is described, and each Secret a manifest reads (which
	// the user creates: the files hold placeholders) is named.
	for _, file := range manifestFiles(t) {
		if !bytes.Contains(b, []byte(filepath.ToSlash(file))) {
			t.Errorf("%s does not mention %s: add it to the table and say when to use it", readme, filepath.ToSlash(file))
		}
	}
	secrets := map[string]string{} // Secret -> the file reading it
	for _, w := range workloads(t) {
		for _, e := range w.hb.Env {
			if ref := secretRef(e); ref != nil {
				secrets[ref.Name] = w.file
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(secrets)) {
		if !bytes.Contains(b, []byte(name)) {
			t.Errorf("%s does not mention the Secret %s that %s reads: say how to create it", readme, name, secrets[name])
		}
	}
}
