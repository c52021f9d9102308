package main

import (
	"context"
	"flag"

	"github.com/hookbridge/hookbridge/bridge/config"
)

var schemaCmd = &command{
	name:  "schema",
	short: "print the JSON Schema of the config file",
	long: `Schema prints the JSON Schema (draft 2020-12) of hookbridge's config file,
generated from the config types: every key with its type, default, allowed
values and the meaning docs/configuration.md gives it, and for each sink
type its own keys. The repository ships it as docs/config.schema.json, which
config.yaml names on its first line for editors that use yaml-language-server
(VS Code's YAML extension, ...): they complete keys and flag mistakes as you
type. "hookbridge check" remains the full check (cross-references, files,
templates, conditions).

	hookbridge schema > docs/config.schema.json`,
	flags: func(fs *flag.FlagSet) func(context.Context, env) int {
		return func(ctx context.Context, e env) int {
			out, err := config.Schema()
			if err != nil {
				return fail(e, "schema", err)
			}
			if _, err := e.stdout.Write(out); err != nil {
				return fail(e, "schema", err)
			}
			return exitOK
		}
	},
}
