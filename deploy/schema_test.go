package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"
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
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("config.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("config.schema.json")
	if err != nil {
		t.Fatal(err)
	}
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
		var v any
		if err := yaml.Unmarshal(configs[name], &v); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		j, err := json.Marshal(v)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
		if err != nil {
			t.Fatal(err)
		}
		if err := sch.Validate(inst); err != nil {
			t.Errorf("%s: the schema refuses it: %v", name, err)
		}
	}
}
