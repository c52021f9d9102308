package deploy

import (
	"fmt"
	"maps"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// parseDockerfile reads file with BuildKit's own parser into its build
// stages, failing on anything BuildKit rejects or warns about (the rules
// `docker build --check` runs while parsing, e.g. FROM ... as casing).
func parseDockerfile(t *testing.T, file string) []instructions.Stage {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	for _, w := range res.Warnings {
		t.Errorf("%s:%d: BuildKit warns: %s", file, w.Location.Start.Line, w.Short)
	}
	lint := linter.New(&linter.Config{Warn: func(rule, desc, url, msg string, loc []parser.Range) {
		t.Errorf("%s:%d: BuildKit lint %s: %s (%s)", file, line(loc), rule, msg, url)
	}})
	stages, _, err := instructions.Parse(res.AST, lint)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if len(stages) < 2 {
		t.Fatalf("%s: want a multi-stage build (a Go build stage, then a minimal runtime stage)", file)
	}
	return stages
}

// line is the first line of an instruction's location, 0 if unknown.
func line(loc []parser.Range) int {
	if len(loc) == 0 {
		return 0
	}
	return loc[0].Start.Line
}

// commands returns the instructions of type C in stage, in order.
func commands[C instructions.Command](stage instructions.Stage) []C {
	var out []C
	for _, c := range stage.Commands {
		if c, ok := c.(C); ok {
			out = append(out, c)
		}
	}
	return out
}

// execForm returns an ENTRYPOINT's or CMD's arguments, failing the test on
// the shell form: /bin/sh -c would be PID 1 and keep signals from
// hookbridge (and the image has no shell).
func execForm(t *testing.T, c instructions.Command, cmd instructions.ShellDependantCmdLine) []string {
	t.Helper()
	if cmd.PrependShell {
		t.Fatalf("%s:%d: %s: use the exec (JSON array) form, so signals reach hookbridge directly", dockerfile, line(c.Location()), c)
	}
	return cmd.CmdLine
}

func TestDockerfile(t *testing.T) {
	stages := parseDockerfile(t, dockerfile)
	final := stages[len(stages)-1]
	if base := final.BaseName; base != "scratch" && !strings.HasPrefix(base, "gcr.io/distroless/") {
		t.Errorf("%s:%d: the final stage is FROM %s: use gcr.io/distroless/static-debian12:nonroot (or scratch)", dockerfile, line(final.Location), base)
	}

	// The build is static (distroless/static has no libc).
	static := false
	for _, st := range stages[:len(stages)-1] {
		for _, run := range commands[*instructions.RunCommand](st) {
			sh := strings.Join(run.CmdLine, " ")
			static = static || strings.Contains(sh, "go build") && strings.Contains(sh, "CGO_ENABLED=0")
		}
	}
	if !static {
		t.Errorf("%s: no RUN CGO_ENABLED=0 go build: a cgo binary does not run on distroless/static", dockerfile)
	}

	// USER: non-root, numeric so runAsNonRoot can verify it.
	if users := commands[*instructions.UserCommand](final); len(users) == 0 {
		t.Errorf("%s: the final stage sets no USER: add USER 65532:65532", dockerfile)
	} else {
		u := users[len(users)-1]
		uid, _, _ := strings.Cut(u.User, ":")
		if n, err := strconv.Atoi(uid); err != nil || n == 0 {
			t.Errorf("%s:%d: USER %s: use a numeric non-root uid (65532:65532), which Kubernetes' runAsNonRoot can check", dockerfile, line(u.Location()), u.User)
		}
	}

	// ENTRYPOINT is the binary the final stage copies in.
	eps := commands[*instructions.EntrypointCommand](final)
	if len(eps) == 0 {
		t.Fatalf("%s: no ENTRYPOINT: add ENTRYPOINT [%q]", dockerfile, hookbridgeBinary)
	}
	if ep := eps[len(eps)-1]; !slices.Equal(execForm(t, ep, ep.ShellDependantCmdLine), []string{hookbridgeBinary}) {
		t.Errorf("%s:%d: ENTRYPOINT %q: want [%q] (the manifests' args start with serve)", dockerfile, line(ep.Location()), ep.CmdLine, hookbridgeBinary)
	}
	copied := map[string]string{} // destination -> source, for COPY from the context
	hasBinary := false
	for _, c := range commands[*instructions.CopyCommand](final) {
		if c.From != "" && c.DestPath == hookbridgeBinary {
			hasBinary = true
		}
		if c.From == "" && len(c.SourcePaths) == 1 {
			copied[c.DestPath] = c.SourcePaths[0]
		}
	}
	if !hasBinary {
		t.Errorf("%s: the final stage does not COPY --from=build the binary to %s", dockerfile, hookbridgeBinary)
	}

	// CMD: serve with a config the image carries, which loads and whose
	// state is on the VOLUME.
	cmds := commands[*instructions.CmdCommand](final)
	if len(cmds) == 0 {
		t.Fatalf("%s: no CMD: add CMD [\"serve\", \"-config\", \"/etc/hookbridge/config.yaml\", \"-log-format\", \"json\"]", dockerfile)
	}
	cmd := cmds[len(cmds)-1]
	cfgPath, err := parseServeArgs(execForm(t, cmd, cmd.ShellDependantCmdLine))
	if err != nil {
		t.Fatalf("%s:%d: CMD: %v", dockerfile, line(cmd.Location()), err)
	}
	var volumes []string
	for _, v := range commands[*instructions.VolumeCommand](final) {
		volumes = append(volumes, v.Volumes...)
	}
	var imageCfgs []*hbConfig
	if src, ok := copied[cfgPath]; !ok {
		t.Errorf("%s: CMD reads -config %s, which no COPY puts in the image", dockerfile, cfgPath)
	} else {
		local, _ := strings.CutPrefix(path.Clean(src), "deploy/") // the context is the repository root
		cfg := loadConfigFile(t, local, envOnly(secretEnv))
		imageCfgs = append(imageCfgs, cfg)
		for _, l := range []string{cfg.Listen, cfg.AdminListen} {
			if isLoopback(l) {
				t.Errorf("%s (the image's config): listen address %q is loopback: unreachable through the container's published ports; use 0.0.0.0", local, l)
			}
		}
		checkStatePaths(t, local+" (the image's config)", cfg, func(dir string) error {
			for _, v := range volumes {
				if within(dir, v) {
					return nil
				}
			}
			return fmt.Errorf("is not under a VOLUME of %s (%v): it would live in the container's writable layer and die with it", dockerfile, volumes)
		})
	}

	// EXPOSE covers the ports of the image's config and of the manifests
	// running the image.
	exposed := map[string]bool{}
	for _, e := range commands[*instructions.ExposeCommand](final) {
		for _, p := range e.Ports {
			p, _, _ = strings.Cut(p, "/")
			exposed[p] = true
		}
	}
	for _, w := range workloads(t) {
		// A manifest that does not load is TestKubernetesManifests' to report.
		if cfg, _, _, err := w.loadConfig(); err == nil {
			imageCfgs = append(imageCfgs, cfg)
		}
	}
	missing := map[string]string{}
	for _, cfg := range imageCfgs {
		for _, l := range []string{cfg.Listen, cfg.AdminListen} {
			if p := portOf(l); !exposed[p] {
				missing[p] = l
			}
		}
	}
	for _, p := range slices.Sorted(maps.Keys(missing)) {
		t.Errorf("%s: EXPOSE %v lacks %s, a port hookbridge listens on (%s): add it", dockerfile, slices.Sorted(maps.Keys(exposed)), p, missing[p])
	}

	// Every file copied from the context survives Dockerfile.dockerignore.
	checkDockerignore(t, stages)
}

// checkDockerignore checks that no source a COPY takes from the build
// context is excluded by Dockerfile.dockerignore, matching its patterns
// as BuildKit does (github.com/moby/patternmatcher: last match wins, "!"
// re-includes, a directory's exclusion covers what is below it).
func checkDockerignore(t *testing.T, stages []instructions.Stage) {
	t.Helper()
	f, err := os.Open(dockerignore)
	if err != nil {
		t.Fatalf("%s: %v (BuildKit reads it for %s; keep .git and ./data out of the build context)", dockerignore, err, dockerfile)
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		t.Fatalf("%s: %v", dockerignore, err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatalf("%s: %v", dockerignore, err)
	}
	for _, st := range stages {
		for _, c := range commands[*instructions.CopyCommand](st) {
			if c.From != "" {
				continue
			}
			for _, src := range c.SourcePaths {
				src = path.Clean(src)
				excluded, err := pm.MatchesOrParentMatches(src)
				if err != nil {
					t.Fatalf("%s: %v", dockerignore, err)
				}
				if excluded {
					t.Errorf("%s:%d: COPY %s, which %s excludes: add the line !%s there", dockerfile, line(c.Location()), src, dockerignore, src)
				}
			}
		}
	}
}
