package deploy

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/unit"
)

// unitFile is a parsed unit: section -> directive -> values in file order.
type unitFile map[string]map[string][]string

// parseUnit reads a unit file with go-systemd's parser (sections, comments,
// line continuations, as systemd reads them).
func parseUnit(t *testing.T, file string) unitFile {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	opts, err := unit.DeserializeOptions(f)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	u := unitFile{}
	for _, o := range opts {
		if u[o.Section] == nil {
			u[o.Section] = map[string][]string{}
		}
		u[o.Section][o.Name] = append(u[o.Section][o.Name], o.Value)
	}
	return u
}

// last is the value a directive ends up with: its last assignment.
func (u unitFile) last(section, key string) (string, bool) {
	vs := u[section][key]
	if len(vs) == 0 {
		return "", false
	}
	return vs[len(vs)-1], true
}

// parseTimespan reads a systemd time span (systemd.time(7)): "30", "30s",
// "1min 30s", "2m", "1h30min", "500ms", "infinity"; a bare number is
// seconds. go-systemd has no parser for it. Months and years are left
// out: no timeout here is that long.
func parseTimespan(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "infinity" {
		return time.Duration(1<<63 - 1), nil
	}
	if s == "" {
		return 0, fmt.Errorf("empty time span")
	}
	units := map[string]time.Duration{
		"": time.Second, "s": time.Second, "sec": time.Second, "second": time.Second, "seconds": time.Second,
		"us": time.Microsecond, "usec": time.Microsecond, "µs": time.Microsecond,
		"ms": time.Millisecond, "msec": time.Millisecond,
		"m": time.Minute, "min": time.Minute, "minute": time.Minute, "minutes": time.Minute,
		"h": time.Hour, "hr": time.Hour, "hour": time.Hour, "hours": time.Hour,
		"d": 24 * time.Hour, "day": 24 * time.Hour, "days": 24 * time.Hour,
		"w": 7 * 24 * time.Hour, "week": 7 * 24 * time.Hour, "weeks": 7 * 24 * time.Hour,
	}
	var total time.Duration
	for rest := s; rest != ""; {
		m := timespanPart.FindStringSubmatch(rest)
		if m == nil {
			return 0, fmt.Errorf("%q is not a time span (e.g. 30s, 1min 30s)", s)
		}
		unit, ok := units[m[2]]
		if !ok {
			return 0, fmt.Errorf("%q: unknown unit %q", s, m[2])
		}
		n, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			return 0, fmt.Errorf("%q: %v", s, err)
		}
		total += time.Duration(n * float64(unit))
		rest = strings.TrimSpace(rest[len(m[0]):])
	}
	return total, nil
}

var timespanPart = regexp.MustCompile(`^(\d+(?:\.\d+)?)\s*([a-zµ]*)`)

func TestParseTimespan(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"30", 30 * time.Second, false},
		{"30s", 30 * time.Second, false},
		{" 30 sec ", 30 * time.Second, false},
		{"1min 30s", 90 * time.Second, false},
		{"1min30s", 90 * time.Second, false},
		{"2m", 2 * time.Minute, false},
		{"1h 2min 3s", time.Hour + 2*time.Minute + 3*time.Second, false},
		{"500ms", 500 * time.Millisecond, false},
		{"1.5s", 1500 * time.Millisecond, false},
		{"2 minutes", 2 * time.Minute, false},
		{"1d", 24 * time.Hour, false},
		{"infinity", time.Duration(1<<63 - 1), false},
		{"", 0, true},
		{"s", 0, true},
		{"30 fortnights", 0, true},
		{"-5s", 0, true},
	} {
		got, err := parseTimespan(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("parseTimespan(%q) = %v, %v; want %v (error: %v)", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

// execArgs splits an Exec*= line, dropping systemd's prefixes (-@:+!).
func execArgs(v string) []string {
	f := strings.Fields(v)
	if len(f) > 0 {
		f[0] = strings.TrimLeft(f[0], "-@:+!")
	}
	return f
}

var notifyHUP = regexp.MustCompile(`signal\.Notify\([^)]*SIGHUP`)

// binaryHandlesSIGHUP reports whether cmd/hookbridge asks for SIGHUP; Go's
// default for an unhandled SIGHUP is to exit at once.
func binaryHandlesSIGHUP(t *testing.T) bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "cmd", "hookbridge", "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("cannot read ../cmd/hookbridge: %v", err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if notifyHUP.Match(b) {
			return true
		}
	}
	return false
}

func TestSystemdUnit(t *testing.T) {
	u := parseUnit(t, systemdUnit)
	svc := u["Service"]
	if svc == nil {
		t.Fatalf("%s: no [Service] section", systemdUnit)
	}
	get := func(k string) string { v, _ := u.last("Service", k); return v }

	// Who it runs as, and the hardening that holds the rest together.
	if get("DynamicUser") != "yes" && get("DynamicUser") != "true" {
		if user := get("User"); user == "" || user == "root" || user == "0" {
			t.Errorf("%s: runs as root: set DynamicUser=yes (or User=hookbridge)", systemdUnit)
		}
	}
	for _, d := range []struct{ key, want string }{
		{"NoNewPrivileges", "yes"},
		{"ProtectSystem", "strict"},
		{"ProtectHome", "yes"},
		{"PrivateTmp", "yes"},
	} {
		if got := get(d.key); got != d.want {
			t.Errorf("%s: %s=%q: set %s=%s", systemdUnit, d.key, got, d.key, d.want)
		}
	}
	for _, f := range svc["SystemCallFilter"] {
		if strings.HasPrefix(f, "~") && (strings.Contains(f, "@resources") || strings.Contains(f, "setrlimit")) {
			t.Errorf("%s: SystemCallFilter=%s denies setrlimit, which the Go runtime calls at start (RLIMIT_NOFILE): drop @resources", systemdUnit, f)
		}
	}

	// ExecStart and the config it reads.
	starts := svc["ExecStart"]
	if len(starts) != 1 {
		t.Fatalf("%s: want exactly one ExecStart, found %d", systemdUnit, len(starts))
	}
	args := execArgs(starts[0])
	if len(args) == 0 {
		t.Fatalf("%s: ExecStart is empty: run %s serve -config /etc/hookbridge/config.yaml", systemdUnit, hookbridgeBinary)
	}
	if args[0] != hookbridgeBinary {
		t.Errorf("%s: ExecStart runs %s: install the binary at %s (or fix the tests' hookbridgeBinary)", systemdUnit, args[0], hookbridgeBinary)
	}
	cfgPath, err := parseServeArgs(args[1:])
	if err != nil {
		t.Fatalf("%s: ExecStart: %v", systemdUnit, err)
	}
	confDirs := strings.Fields(get("ConfigurationDirectory"))
	inConf := false
	for _, d := range confDirs {
		inConf = inConf || within(cfgPath, "/etc/"+d)
	}
	if !inConf {
		t.Errorf("%s: ExecStart -config %s is not under ConfigurationDirectory (/etc/%v): set ConfigurationDirectory=hookbridge and -config /etc/hookbridge/config.yaml", systemdUnit, cfgPath, confDirs)
	}
	for _, pre := range svc["ExecStartPre"] {
		a := execArgs(pre)
		if len(a) > 1 && a[0] == hookbridgeBinary && a[1] == "check" {
			if i := slices.Index(a, "-config"); i < 0 || i+1 >= len(a) || a[i+1] != cfgPath {
				t.Errorf("%s: ExecStartPre %q checks another config than ExecStart's %s", systemdUnit, pre, cfgPath)
			}
		}
	}
	local := filepath.Join(filepath.Dir(systemdUnit), path.Base(cfgPath))
	if ef := get("EnvironmentFile"); strings.TrimPrefix(ef, "-") == "" {
		t.Errorf("%s: no EnvironmentFile: the webhook secret (%s) must come from a root-only file such as /etc/hookbridge/env", systemdUnit, secretEnv)
	}
	env := []string{secretEnv} // what EnvironmentFile= provides, see README.md
	for _, e := range svc["Environment"] {
		for _, kv := range strings.Fields(e) {
			k, _, _ := strings.Cut(strings.Trim(kv, `"`), "=")
			env = append(env, k)
		}
	}
	cfg := loadConfigFile(t, local, envOnly(env...))

	// Writable state: ProtectSystem=strict leaves only these writable.
	var writable []string
	for _, d := range []struct{ key, base string }{
		{"StateDirectory", "/var/lib/"}, {"CacheDirectory", "/var/cache/"}, {"LogsDirectory", "/var/log/"}, {"RuntimeDirectory", "/run/"},
	} {
		for _, dir := range strings.Fields(get(d.key)) {
			writable = append(writable, d.base+dir)
		}
	}
	for _, rw := range svc["ReadWritePaths"] {
		writable = append(writable, strings.Fields(rw)...)
	}
	wd := get("WorkingDirectory")
	checkStatePaths(t, local+" (for "+systemdUnit+")", cfg, func(dir string) error {
		if !path.IsAbs(dir) {
			if wd == "" {
				return fmt.Errorf("is relative and the unit sets no WorkingDirectory: write /var/lib/hookbridge/...")
			}
			dir = path.Join(wd, dir)
		}
		for _, w := range writable {
			if within(dir, w) {
				return nil
			}
		}
		return fmt.Errorf("is outside the unit's writable paths %v (ProtectSystem=strict): put it under /var/lib/<StateDirectory>", writable)
	})

	// Stopping: SIGTERM or SIGINT start the graceful shutdown.
	if ks := get("KillSignal"); ks != "" && !slices.Contains([]string{"SIGTERM", "SIGINT", "TERM", "INT"}, ks) {
		t.Errorf("%s: KillSignal=%s: hookbridge shuts down gracefully on SIGTERM or SIGINT only", systemdUnit, ks)
	}
	stopKey := "TimeoutStopSec"
	stop := get(stopKey)
	if stop == "" {
		stopKey = "TimeoutSec"
		stop = get(stopKey)
	}
	if stop == "" {
		t.Errorf("%s: set TimeoutStopSec longer than server.shutdown_timeout (%v)", systemdUnit, cfg.ShutdownTimeout)
	} else if d, err := parseTimespan(stop); err != nil {
		t.Errorf("%s: %s: %v", systemdUnit, stopKey, err)
	} else if d <= cfg.ShutdownTimeout {
		t.Errorf("%s: %s=%s is not longer than server.shutdown_timeout %v in %s: systemd would SIGKILL hookbridge mid-shutdown", systemdUnit, stopKey, stop, cfg.ShutdownTimeout, local)
	}
	if r := get("Restart"); !slices.Contains([]string{"on-failure", "always", "on-abnormal"}, r) {
		t.Errorf("%s: Restart=%q: set Restart=on-failure", systemdUnit, r)
	}

	// Reload: only what the binary does.
	hup := binaryHandlesSIGHUP(t)
	reload, hasReload := u.last("Service", "ExecReload")
	switch {
	case hasReload && !regexp.MustCompile(`kill\s+(-s\s*)?-?(SIG)?HUP\s+\$MAINPID`).MatchString(reload):
		t.Errorf("%s: ExecReload=%s: use /bin/kill -HUP $MAINPID (hookbridge reloads on SIGHUP)", systemdUnit, reload)
	case hasReload && !hup:
		t.Errorf("%s: ExecReload sends SIGHUP, but cmd/hookbridge does not handle it: Go exits at once on an unhandled SIGHUP, and systemd counts that as clean (no restart); remove ExecReload until serve reloads on SIGHUP", systemdUnit)
	case !hasReload && hup:
		t.Errorf("%s: cmd/hookbridge now handles SIGHUP: enable ExecReload=/bin/kill -HUP $MAINPID (and update the comment above it)", systemdUnit)
	case !hasReload:
		t.Logf("%s: no ExecReload, as hookbridge does not reload on SIGHUP yet", systemdUnit)
	}
}
