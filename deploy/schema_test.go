package deploy

import (
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hookbridge/hookbridge/bridge/config/schematest"
)

// shippedSchema is the JSON Schema of the config file the repository
// ships (`hookbridge schema`, held to it by cmd/hookbridge's tests).
const shippedSchema = "../docs/config.schema.json"

// TestConfigsPassTheSchema: every config deploy/ ships, the config.yaml
// files and the ConfigMaps' configs, passes the shipped schema, as it
// would in an editor: the files TestConfigFilesLoad and
// TestConfigMapConfigsLoad load.
func TestConfigsPassTheSchema(t *testing.T) {
	raw, err := os.ReadFile(shippedSchema)
	if err != nil {
		t.Fatal(err)
	}
	sch := schematest.Compile(t, raw)
	configs := map[string][]byte{}
	err = filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == "config.yaml" {
			data, err := os.ReadFile(p)
			configs[p] = data
			return err
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range manifestFiles(t) {
		m := readManifests(t, file)
		for _, cmName := range slices.Sorted(maps.Keys(m.configMaps)) {
			for key, data := range m.configMaps[cmName].Data {
				if strings.HasSuffix(key, ".yaml") {
					configs[fmt.Sprintf("%s: ConfigMap %s key %s", file, cmName, key)] = []byte(data)
				}
			}
		}
	}
	if len(configs) < 3 {
		t.Fatalf("only %d configs found in deploy/", len(configs))
	}
	t.Logf("%d configs: %s", len(configs), strings.Join(slices.Sorted(maps.Keys(configs)), "; "))
	for _, name := range slices.Sorted(maps.Keys(configs)) {
		if err := schematest.ValidateYAML(sch, configs[name]); err != nil {
			t.Errorf("%s: the schema refuses it: %v", name, err)
		}
	}
}
