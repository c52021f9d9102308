package deploy

import (
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hookbridge/hookbridge/bridge"
	"github.com/hookbridge/hookbridge/bridge/config"
	natssink "github.com/hookbridge/hookbridge/sinks/nats"
)

// The files under test, relative to this package's directory.
const (
	dockerfile       = "Dockerfile"
	dockerignore     = "Dockerfile.dockerignore"
	kubernetesDir    = "kubernetes"
	systemdUnit      = "systemd/hookbridge.service"
	readme           = "README.md"
	hookbridgeBinary = "/usr/local/bin/hookbridge"
)

// secretEnv is the variable the shipped configs read the webhook secret
// from. Outside Kubernetes (Docker, systemd) nothing in this directory
// declares the environment, so it is the one name assumed set there.
const secretEnv = "BROWSER_USE_WEBHOOK_SECRET"

// ---------------------------------------------------------------------------
// hookbridge's config. This section is the only code in deploy/ that knows
// the config API (packages bridge/config and sinks/nats): when it moves,
// parseConfig and the constants below are what changes.

// What the admin listener serves.
const (
	healthzPath = bridge.HealthzPath
	readyzPath  = bridge.ReadyzPath
	metricsPath = bridge.MetricsPath
)

// Values of the config's keys the checks compare against.
const (
	spoolJetStream  = config.SpoolJetStream // spool.backend
	replayCacheNATS = config.ReplayNATS     // server.replay_cache
)

// hbConfig is what the checks read from a loaded hookbridge config, with
// every default applied. Fields are named after the config's keys.
type hbConfig struct {
	Listen, AdminListen     string        // server.listen, server.admin_listen
	ShutdownTimeout         time.Duration // server.shutdown_timeout
	ReplayCache             string        // server.replay_cache
	TLSCertFile, TLSKeyFile string        // server.tls.cert_file, key_file

	// LocalSpool: some route delivers through the spool and spool.backend
	// is local, so hookbridge writes its log in SpoolDir.
	LocalSpool     bool
	SpoolBackend   string // spool.backend
	SpoolDir       string // spool.dir
	SpoolMaxBytes  int64  // spool.max_bytes
	SpoolReplicas  int    // spool.replicas (jetstream)
	SpoolURL       string // spool.url (jetstream)
	SpoolCredsFile string // spool.creds_file (jetstream)

	// MemoryWarnings is what hookbridge check warns of under a memory
	// limit of that many bytes (config.Config.MemoryWarnings): the
	// requests' worst case and a full local spool's index exceeding it,
	// or an unbounded local spool.
	MemoryWarnings func(limit string, bytes int64) []string

	SecretFiles [][]string // sources[i].secret_files
	Sinks       []hbSink   // sinks, in order
}

type hbSink struct {
	Name string
	NATS *hbNATSSink // nil unless type: nats
}

type hbNATSSink struct {
	URL            string
	Embedded       bool   // url: embedded (an in-process NATS server)
	StoreDir       string // embedded.store_dir
	CredsFile      string // creds_file
	JetStream      bool   // jetstream
	CreatesStream  bool   // stream.create
	StreamName     string // stream.name
	StreamReplicas int    // stream.replicas
}

// parseConfig loads a hookbridge config as `hookbridge serve` does, with
// lookupEnv as the environment for its ${VAR}s. The error names the file,
// line and key.
func parseConfig(name string, data []byte, lookupEnv func(string) (string, bool)) (*hbConfig, error) {
	c, err := config.Parse(name, data, lookupEnv)
	if err != nil {
		return nil, err
	}
	cfg := &hbConfig{
		Listen:          c.Server.Listen,
		AdminListen:     c.Server.AdminListen,
		ShutdownTimeout: c.Server.ShutdownTimeout,
		ReplayCache:     c.Server.ReplayCache,
		TLSCertFile:     c.Server.TLS.CertFile,
		TLSKeyFile:      c.Server.TLS.KeyFile,
		LocalSpool:      c.UsesSpool() && c.Spool.Backend == config.SpoolLocal,
		SpoolBackend:    c.Spool.Backend,
		SpoolDir:        c.Spool.Dir,
		SpoolMaxBytes:   c.Spool.MaxBytes,
		SpoolReplicas:   c.Spool.JetStream.Replicas,
		SpoolURL:        c.Spool.JetStream.URL,
		SpoolCredsFile:  c.Spool.JetStream.CredsFile,
		MemoryWarnings: func(limit string, bytes int64) []string {
			return c.MemoryWarnings([]config.MemoryLimit{{Name: limit, Bytes: bytes}})
		},
	}
	for _, src := range c.Sources {
		cfg.SecretFiles = append(cfg.SecretFiles, src.SecretFiles)
	}
	for _, sk := range c.Sinks {
		s := hbSink{Name: sk.Name}
		if o, ok := sk.Options.(*natssink.Config); ok {
			s.NATS = &hbNATSSink{
				URL:            o.URL,
				Embedded:       o.URL == natssink.Embedded,
				StoreDir:       o.Embedded.StoreDir,
				CredsFile:      o.CredsFile,
				JetStream:      o.JetStream,
				CreatesStream:  o.Stream.Create != nil && *o.Stream.Create,
				StreamName:     o.Stream.Name,
				StreamReplicas: o.Stream.Replicas,
			}
		}
		cfg.Sinks = append(cfg.Sinks, s)
	}
	return cfg, nil
}

// loadConfigFile loads the config file at file (relative to deploy/) or
// fails the test.
func loadConfigFile(t *testing.T, file string, lookupEnv func(string) (string, bool)) *hbConfig {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := parseConfig(file, data, lookupEnv)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return cfg
}

// envOnly is a lookupEnv in which exactly names are set.
func envOnly(names ...string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		if slices.Contains(names, name) {
			return "value-of-" + name, true
		}
		return "", false
	}
}

// checkStatePaths runs check on every directory hookbridge writes: the
// local spool (with delivery: spool; the jetstream spool lives in NATS and
// never opens spool.dir) and each embedded NATS store.
func checkStatePaths(t *testing.T, where string, cfg *hbConfig, check func(dir string) error) {
	t.Helper()
	if cfg.LocalSpool {
		if err := check(cfg.SpoolDir); err != nil {
			t.Errorf("%s: spool.dir %s %v", where, cfg.SpoolDir, err)
		}
	}
	for i, sk := range cfg.Sinks {
		if sk.NATS != nil && sk.NATS.Embedded {
			if err := check(sk.NATS.StoreDir); err != nil {
				t.Errorf("%s: sinks[%d] (%s) embedded.store_dir %s %v", where, i, sk.Name, sk.NATS.StoreDir, err)
			}
		}
	}
}

// Every config.yaml in deploy/ (the image's, the systemd unit's) loads, and
// keeps its state at an absolute path.
func TestConfigFilesLoad(t *testing.T) {
	var found []string
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == "config.yaml" {
			found = append(found, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) == 0 {
		t.Fatal("no config.yaml under deploy/")
	}
	for _, p := range found {
		t.Run(p, func(t *testing.T) {
			cfg := loadConfigFile(t, p, envOnly(secretEnv))
			checkStatePaths(t, p, cfg, func(dir string) error {
				if !filepath.IsAbs(dir) {
					return fmt.Errorf("is relative: it would depend on the working directory; write an absolute path under /var/lib/hookbridge")
				}
				return nil
			})
		})
	}
}

// ---------------------------------------------------------------------------
// The command line every target starts hookbridge with.

// parseServeArgs mirrors the flags of `hookbridge serve`
// (cmd/hookbridge/serve.go), so a misspelled or unknown flag in a manifest,
// the unit or the image fails here instead of in a crash-looping service.
// Update it when serve gains a flag. It returns the -config path.
func parseServeArgs(args []string) (config string, err error) {
	if len(args) == 0 || args[0] != "serve" {
		return "", fmt.Errorf("args %q: start with \"serve\" (the image's ENTRYPOINT is the hookbridge binary)", args)
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg := fs.String("config", "config.yaml", "")
	level := fs.String("log-level", "info", "")
	format := fs.String("log-format", "text", "")
	fs.Bool("skip-probe", false, "")
	fs.Duration("watch", 2*time.Second, "")
	if err := fs.Parse(args[1:]); err != nil {
		return "", fmt.Errorf("args %q: %v (flags of hookbridge serve: -config, -log-level, -log-format, -skip-probe, -watch)", args, err)
	}
	if fs.NArg() > 0 {
		return "", fmt.Errorf("args %q: serve takes no arguments after its flags, found %q", args, fs.Args())
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, *level) {
		return "", fmt.Errorf("args: -log-level %q: use debug, info, warn or error", *level)
	}
	if *format != "text" && *format != "json" {
		return "", fmt.Errorf("args: -log-format %q: use text or json", *format)
	}
	return *cfg, nil
}

func TestParseServeArgs(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		config  string
		wantErr string
	}{
		{[]string{"serve"}, "config.yaml", ""},
		{[]string{"serve", "-config", "/etc/hookbridge/config.yaml", "-log-format", "json"}, "/etc/hookbridge/config.yaml", ""},
		{[]string{"serve", "-watch", "5s", "-skip-probe", "-log-level", "debug"}, "config.yaml", ""},
		{nil, "", `start with "serve"`},
		{[]string{"-config", "x.yaml"}, "", `start with "serve"`},
		{[]string{"serve", "-conifg", "x.yaml"}, "", "flag provided but not defined: -conifg"},
		{[]string{"serve", "-config", "x.yaml", "extra"}, "", "no arguments after its flags"},
		{[]string{"serve", "-log-level", "verbose"}, "", `-log-level "verbose"`},
		{[]string{"serve", "-log-format", "logfmt"}, "", `-log-format "logfmt"`},
	} {
		got, err := parseServeArgs(tc.args)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("parseServeArgs(%q): %v", tc.args, err)
		case tc.wantErr == "" && got != tc.config:
			t.Errorf("parseServeArgs(%q) = %q, want %q", tc.args, got, tc.config)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("parseServeArgs(%q): error %v, want one containing %q", tc.args, err, tc.wantErr)
		}
	}
}

// ---------------------------------------------------------------------------
// Addresses and paths.

// within reports whether p is root or below it (both absolute, slash-separated).
func within(p, root string) bool {
	p, root = path.Clean(p), path.Clean(root)
	return p == root || strings.HasPrefix(p, strings.TrimSuffix(root, "/")+"/")
}

// port is the fixed port of a listen address, or fails the test.
func port(t *testing.T, where fmt.Stringer, key, addr string) int {
	t.Helper()
	n, err := strconv.Atoi(portOf(addr))
	if err != nil || n <= 0 {
		t.Fatalf("%v: %s %q: give a fixed port (the manifests must name it)", where, key, addr)
	}
	return n
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// isLoopback reports whether a listen address (host:port) is on loopback.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	return isLoopbackHost(host)
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loopbackURL returns the host:port of the first loopback host among
// comma-separated URLs, "" when none is.
func loopbackURL(urls string) string {
	for _, raw := range strings.Split(urls, ",") {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil {
			continue
		}
		if isLoopbackHost(u.Hostname()) {
			return u.Host
		}
	}
	return ""
}

func TestAddressHelpers(t *testing.T) {
	for _, tc := range []struct {
		addr     string
		loopback bool
		port     string
	}{
		{"127.0.0.1:8080", true, "8080"},
		{"localhost:9090", true, "9090"},
		{"[::1]:9090", true, "9090"},
		{"0.0.0.0:8080", false, "8080"},
		{":8080", false, "8080"},
		{"10.0.0.1:80", false, "80"},
		{"no-port", false, ""},
	} {
		if got := isLoopback(tc.addr); got != tc.loopback {
			t.Errorf("isLoopback(%q) = %v, want %v", tc.addr, got, tc.loopback)
		}
		if got := portOf(tc.addr); got != tc.port {
			t.Errorf("portOf(%q) = %q, want %q", tc.addr, got, tc.port)
		}
	}
	for _, tc := range []struct{ urls, want string }{
		{"nats://nats.nats.svc:4222", ""},
		{"nats://a:4222, nats://127.0.0.1:4222", "127.0.0.1:4222"},
		{"tls://localhost:4222", "localhost:4222"},
		{"embedded", ""},
	} {
		if got := loopbackURL(tc.urls); got != tc.want {
			t.Errorf("loopbackURL(%q) = %q, want %q", tc.urls, got, tc.want)
		}
	}
	for _, tc := range []struct {
		p, root string
		want    bool
	}{
		{"/var/lib/hookbridge/spool", "/var/lib/hookbridge", true},
		{"/var/lib/hookbridge", "/var/lib/hookbridge/", true},
		{"/var/lib/hookbridge-other", "/var/lib/hookbridge", false},
		{"/etc/hookbridge/config.yaml", "/", true},
	} {
		if got := within(tc.p, tc.root); got != tc.want {
			t.Errorf("within(%q, %q) = %v, want %v", tc.p, tc.root, got, tc.want)
		}
	}
}
