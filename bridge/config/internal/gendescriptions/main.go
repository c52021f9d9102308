// Command gendescriptions writes bridge/config/descriptions.go from
// docs/configuration.md. It is run by go generate in bridge/config:
//
//	go generate ./bridge/config
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/hookbridge/hookbridge/bridge/config/internal/refdoc"
)

func main() {
	in := flag.String("in", "../../docs/configuration.md", "the configuration reference")
	out := flag.String("out", "descriptions.go", "the Go file to write")
	flag.Parse()
	if err := run(*in, *out); err != nil {
		fmt.Fprintln(os.Stderr, "gendescriptions:", err)
		os.Exit(1)
	}
}

func run(in, out string) error {
	md, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	src, err := refdoc.Generate(md)
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	return os.WriteFile(out, src, 0o644)
}
