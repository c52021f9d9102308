package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/hookbridge/hookbridge/bridge/redact"
	"github.com/hookbridge/hookbridge/sinks"
)

// Load reads, decodes, defaults and validates the file at path. lookupEnv
// resolves ${VAR} references; nil means os.LookupEnv. Every error is
// prefixed with path:line, one line per problem, in the file's order.
func Load(path string, lookupEnv func(string) (string, bool)) (*Config, error) {
	return loadConfig(path, newDecoder(lookupEnv))
}

// LoadIgnoringUnset is Load for tools that need only part of the config
// (hookbridge tail needs the NATS sink, not the webhook secret): a ${VAR}
// that is not set and has no default reads as "(unset)" instead of being
// an error.
func LoadIgnoringUnset(path string, lookupEnv func(string) (string, bool)) (*Config, error) {
	d := newDecoder(lookupEnv)
	d.unsetPlaceholder = "(unset)"
	return loadConfig(path, d)
}

func loadConfig(path string, d *decoder) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return parseConfig(path, data, d)
}

// Parse is Load for bytes already read; name is used in errors.
func Parse(name string, data []byte, lookupEnv func(string) (string, bool)) (*Config, error) {
	return parseConfig(name, data, newDecoder(lookupEnv))
}

func parseConfig(name string, data []byte, d *decoder) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		// yaml.v3 says "yaml: line N: ..."; make it name:N: ...
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		if rest, ok := strings.CutPrefix(msg, "line "); ok {
			if n, after, ok := strings.Cut(rest, ":"); ok {
				return nil, fmt.Errorf("%s:%s:%s", name, n, after)
			}
		}
		return nil, fmt.Errorf("%s: %s", name, msg)
	}
	if len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s:1: %w", name, errNotMapping)
	}
	doc := root.Content[0]
	cfg := new(Config)
	d.decode(doc, "", reflect.ValueOf(cfg).Elem())
	cfg.envValues = d.envValues
	if len(d.errs) > 0 {
		return nil, locate(name, doc, d.errs, redact.New(cfg.Secrets()...))
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, locate(name, doc, errorList(err), redact.New(cfg.Secrets()...))
	}
	if err := cfg.readSecretFiles(); err != nil {
		return nil, locate(name, doc, errorList(err), redact.New(cfg.Secrets()...))
	}
	cfg.raw = data
	return cfg, nil
}

// locate prefixes each error with name:line, finding the line of problems
// from their key path, sorts them by line (stably), and scrubs from them
// every form of every secret the config holds, and of every value that
// came from the environment (see Config.Secrets): a validator quoting a
// bad value must not print a secret that was put in the wrong key.
func locate(name string, doc *yaml.Node, errs []error, scrub *redact.Scrubber) error {
	type located struct {
		line int
		err  error
	}
	out := make([]located, 0, len(errs))
	for _, err := range errs {
		ce, ok := errors.AsType[*sinks.ConfigError](err)
		if !ok {
			out = append(out, located{0, fmt.Errorf("%s: %s", name, scrub.String(err.Error()))})
			continue
		}
		line := ce.Line
		if line == 0 {
			line = lineAt(doc, ce.Key)
		}
		out = append(out, located{line, fmt.Errorf("%s:%d: %s", name, line, scrub.String(ce.Error()))})
	}
	slices.SortStableFunc(out, func(a, b located) int { return a.line - b.line })
	joined := make([]error, len(out))
	for i, l := range out {
		joined[i] = l.err
	}
	return errors.Join(joined...)
}

// lineAt returns the line of the node at key path (e.g. "routes[1].to[0]")
// in doc, or of the deepest ancestor present.
func lineAt(doc *yaml.Node, key string) int {
	n, line := doc, doc.Line
	for _, part := range strings.Split(key, ".") {
		name, idx := part, -1
		if open := strings.IndexByte(part, '['); open >= 0 && strings.HasSuffix(part, "]") {
			name = part[:open]
			if i, err := strconv.Atoi(part[open+1 : len(part)-1]); err == nil {
				idx = i
			}
		}
		k, v := mappingEntry(n, name)
		if k == nil {
			return line
		}
		line, n = k.Line, v
		if idx >= 0 {
			if n.Kind != yaml.SequenceNode || idx >= len(n.Content) {
				return line
			}
			n = n.Content[idx]
			line = n.Line
		}
	}
	return line
}

// mappingEntry returns the key and value nodes of key in mapping n.
func mappingEntry(n *yaml.Node, key string) (k, v *yaml.Node) {
	if n.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i], n.Content[i+1]
		}
	}
	return nil, nil
}
