package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/hookbridge/hookbridge/bridge"
	"github.com/hookbridge/hookbridge/bridge/config"
	"github.com/hookbridge/hookbridge/bridge/event"
	"github.com/hookbridge/hookbridge/bridge/redact"
	"github.com/hookbridge/hookbridge/bridge/route"
	"github.com/hookbridge/hookbridge/bridge/signature"
	"github.com/hookbridge/hookbridge/bridge/telemetry"
)

const defaultConfig = "config.yaml"

var serveCmd = &command{
	name:  "serve",
	args:  "[-config FILE] [-skip-probe] [-watch D] [-log-level LEVEL] [-log-format text|json]",
	short: "run the webhook bridge (the default command)",
	long: `
Serve loads the config, connects every sink (starting the embedded NATS
server if one is configured), and answers webhooks until SIGINT or SIGTERM.
On a signal it stops accepting, finishes the webhooks in flight within
server.shutdown_timeout, and closes the sinks.

SIGHUP, or a change of the config file (checked every -watch), reloads
routes, sinks and secrets without a restart: requests in flight finish on
the old config, unchanged sinks stay connected, and an invalid file keeps
the running config (the log says why). Listeners and the spool change only
at the next start.

At start-up every sink checks its broker (NATS connection, Kafka metadata
and topics, SQS queue attributes) and serve fails with a clear error when
one is unreachable. -skip-probe starts anyway, for brokers that come up
later; until they do, webhooks routed to them with delivery: sync are
answered 503, and spooled ones wait in the spool.

A webhook is answered 200 only once the event is kept: stored in the
spool (delivery: spool, the default: fsynced in the local file, or
acknowledged by NATS with spool.backend: jetstream), from where it is
delivered with retries, or confirmed by every sink it was routed to
(delivery: sync). Otherwise it is answered 503 with Retry-After, so
Browser Use retries.`,
	flags: func(fs *flag.FlagSet) func(context.Context, env) int {
		configFile := fs.String("config", defaultConfig, "the config `file`")
		level := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
		format := fs.String("log-format", "text", "log `format`: text or json")
		skipProbe := fs.Bool("skip-probe", false, "start without checking that the brokers are reachable")
		watch := fs.Duration("watch", 2*time.Second, "check the config file for changes this `often` and reload it")
		return func(ctx context.Context, e env) int {
			// Every log line and every error serve prints goes through
			// scrub, which bridge.Start teaches the config's secrets (and
			// each reload the new ones too).
			scrub := redact.New()
			log, err := newLogger(e, *level, *format, scrub)
			if err != nil {
				return fail(e, "serve", err)
			}
			cfg, err := config.Load(*configFile, e.lookupEnv)
			if err != nil {
				return fail(e, "serve", err) // already scrubbed by the loader
			}
			// SIGHUP, or a change of the file, reloads routes, sinks and
			// secrets without a restart. Listen before starting, so a
			// SIGHUP that comes early does not end the process.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			svc, err := bridge.Start(ctx, cfg, bridge.Options{Log: log, SkipProbe: *skipProbe, Scrubber: scrub, Version: buildVersion()})
			if err != nil {
				return fail(e, "serve", scrub.Error(err))
			}
			watchCtx, stopWatch := context.WithCancel(ctx)
			defer stopWatch()
			go svc.WatchConfig(watchCtx, *configFile, e.lookupEnv, *watch)
		wait:
			for {
				select {
				case <-ctx.Done():
					log.Info("shutting down", "timeout", cfg.Server.ShutdownTimeout)
					break wait
				case <-hup:
					log.Info("SIGHUP: reloading the config", "path", *configFile)
					_ = svc.ReloadFile(ctx, *configFile, e.lookupEnv) // logged and counted
				case err := <-svc.Done():
					log.Error("a listener stopped", "err", err)
					break wait
				}
			}
			stopWatch()
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.Server.ShutdownTimeout)
			defer cancel()
			if err := svc.Shutdown(sctx); err != nil {
				return fail(e, "serve", scrub.Error(err))
			}
			log.Info("stopped")
			return exitOK
		}
	},
}

// newLogger returns the logger serve writes to stderr, every line scrubbed
// by scrub.
func newLogger(e env, level, format string, scrub *redact.Scrubber) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usagef("-log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(scrub.Handler(slog.NewTextHandler(e.stderr, opts))), nil
	case "json":
		return slog.New(scrub.Handler(slog.NewJSONHandler(e.stderr, opts))), nil
	}
	return nil, usagef("-log-format %q: use text or json", format)
}

var checkCmd = &command{
	name:  "check",
	args:  "[-config FILE] [-explain JSON]",
	short: "validate a config file and print its routing table",
	long: `
Check loads the config as serve would, without connecting to anything, and
prints the effective server settings (defaults applied) and the routing
table: for each status a route names, and for every other status ("*"), the
route, sink and target it reaches. Secrets are never printed.

With -explain, it prints instead where one sample delivery would go:
	hookbridge check -explain '{"status":"paused","task_id":"t1"}'
(a flat body or an envelope, as Browser Use sends them).

It exits 0 when the config is valid and 1, with file:line and the key of
each problem, when it is not.`,
	flags: func(fs *flag.FlagSet) func(context.Context, env) int {
		configFile := fs.String("config", defaultConfig, "the config `file`")
		explain := fs.String("explain", "", "print where this sample delivery (`JSON`) would go")
		return func(ctx context.Context, e env) int {
			cfg, err := config.Load(*configFile, e.lookupEnv)
			if err != nil {
				return fail(e, "check", err)
			}
			// What check prints is scrubbed of the config's secrets: a
			// file path or a spool directory may have been built from one.
			scrub := redact.New(cfg.Secrets()...)
			e.stdout = scrubbedWriter{e.stdout, scrub}
			router := route.New(cfg.Rules())
			if *explain != "" {
				if err := printExplain(e, cfg, router, *explain, scrub); err != nil {
					return fail(e, "check", scrub.Error(err))
				}
				return exitOK
			}
			tracing, err := telemetry.Describe(cfg.Telemetry, func(k string) string { v, _ := e.lookupEnv(k); return v })
			if err != nil {
				return fail(e, "check", scrub.Error(err))
			}
			printCheck(e, *configFile, cfg, router, tracing, scrub)
			return exitOK
		}
	},
}

func printCheck(e env, path string, cfg *config.Config, router *route.Router, tracing string, scrub *redact.Scrubber) {
	s := cfg.Server
	fmt.Fprintf(e.stdout, "%s is valid.\n\ndelivery: %s", path, cfg.Delivery)
	switch sp := cfg.Spool; {
	case !cfg.UsesSpool():
	case sp.Backend == config.SpoolJetStream:
		js := sp.JetStream
		fmt.Fprintf(e.stdout, " (shared JetStream spool: stream %s on %s, R%d, %d partitions per sink, ack_wait %v, at most %d bytes and %d messages)",
			js.Stream, js.Redacted(), js.Replicas, js.Partitions, js.AckWait, sp.MaxBytes, sp.MaxEvents)
	default:
		fmt.Fprintf(e.stdout, " (spool in %s, at most %d bytes and %d messages)", sp.Dir, sp.MaxBytes, sp.MaxEvents)
	}
	fmt.Fprintf(scrubbedWriter{e.stdout, scrub}, "\ntracing: %s", tracing)
	fmt.Fprint(e.stdout, "\n\nserver:\n")
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	for _, kv := range [][2]any{
		{"listen", s.Listen}, {"max_body_bytes", s.MaxBodyBytes}, {"max_header_bytes", s.MaxHeaderBytes},
		{"max_json_depth", s.MaxJSONDepth}, {"read_header_timeout", s.ReadHeaderTimeout},
		{"read_timeout", s.ReadTimeout}, {"write_timeout", s.WriteTimeout}, {"idle_timeout", s.IdleTimeout},
		{"publish_timeout", s.PublishTimeout}, {"retry_after", s.RetryAfter}, {"shutdown_timeout", s.ShutdownTimeout},
		{"replay_cache", s.ReplayCache}, {"max_connections", s.MaxConnections},
		{"max_concurrent_reads", s.MaxConcurrentReads}, {"max_concurrent_requests", s.MaxConcurrentRequests},
		{"max_buffered_bytes", s.MaxBufferedBytes}, {"body_read_timeout", s.BodyReadTimeout}, {"min_body_rate", s.MinBodyRate},
	} {
		fmt.Fprintf(scrubbedWriter{tw, scrub}, "  %s:\t%v\n", kv[0], kv[1])
	}
	tw.Flush()
	fmt.Fprintf(e.stdout, "  %s\n", s.DescribeWorstCase())
	if d := cfg.DescribeSpoolMemory(); d != "" {
		fmt.Fprintf(e.stdout, "  %s\n", d)
	}
	for _, w := range cfg.MemoryWarnings(config.MemoryLimits()) {
		fmt.Fprintf(e.stdout, "  warning: %s\n", w)
	}

	fmt.Fprintln(e.stdout, "\nsources:")
	tw = tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(scrubbedWriter{tw, scrub}, "  NAME\tPATH\tSECRETS\tTOLERANCE\tUNPARSED TIMESTAMPS")
	for _, src := range cfg.Sources {
		tol := src.Tolerance.String()
		if *src.Tolerance == 0 {
			tol = "off"
		}
		unparsed := "rejected"
		if src.AllowUnparsedTimestamp {
			unparsed = "allowed"
		}
		fmt.Fprintf(scrubbedWriter{tw, scrub}, "  %s\t%s\t%d (redacted)\t%s\t%s\n", src.Name, src.Path, len(src.Secrets), tol, unparsed)
	}
	tw.Flush()

	fmt.Fprintln(e.stdout, "\nsinks:")
	tw = tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(scrubbedWriter{tw, scrub}, "  NAME\tTYPE\tWHERE")
	for _, sk := range cfg.Sinks {
		fmt.Fprintf(scrubbedWriter{tw, scrub}, "  %s\t%s\t%s\n", sk.Name, sk.Type, sk.Options.Describe())
	}
	tw.Flush()

	rows := router.Table()
	conditional := slices.ContainsFunc(rows, func(r route.TableRow) bool { return r.When != "" })
	fmt.Fprintln(e.stdout, "\nrouting table (\"*\" = any other status):")
	tw = tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	header := "  STATUS\tROUTE\tSINK\tTARGET\tDELIVERY"
	if conditional {
		header += "\tWHEN (the row applies only if true)"
	}
	fmt.Fprintln(scrubbedWriter{tw, scrub}, header)
	for _, row := range rows {
		if row.Route == "" {
			fmt.Fprintf(scrubbedWriter{tw, scrub}, "  %s\t-\t-\t(unrouted: answered 200 and counted)\t\n", row.Status)
			continue
		}
		target := row.Target
		if target == "" {
			target = "-" // the sink takes no target (file)
		}
		delivery := "spool"
		if row.Sync {
			delivery = "sync"
		}
		line := fmt.Sprintf("  %s\t%s\t%s\t%s\t%s", row.Status, row.Route, row.Sink, target, delivery)
		if conditional {
			line += "\t" + orDash(folded(row.When))
		}
		fmt.Fprintln(scrubbedWriter{tw, scrub}, line)
	}
	tw.Flush()
}

// folded folds a multi-line value (a when written as a YAML block) onto
// one line, whole, for a table cell.
func folded(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// scrubbedWriter scrubs each Write before passing it on. A table's cells
// go through one before the tabwriter, which would turn a tab inside a
// secret into padding no scrubber could recognize; each fmt.Fprint call
// is one Write, so a value printed in one call is scrubbed whole.
type scrubbedWriter struct {
	w     io.Writer
	scrub *redact.Scrubber
}

func (w scrubbedWriter) Write(p []byte) (int, error) {
	if _, err := io.WriteString(w.w, w.scrub.String(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// printExplain shows the routes, sinks and targets one sample delivery
// reaches, normalized exactly as serve would.
func printExplain(e env, cfg *config.Config, router *route.Router, sample string, scrub *redact.Scrubber) error {
	var cz signature.Canonicalizer
	c, err := cz.Canonicalize([]byte(sample))
	if err != nil {
		return fmt.Errorf("-explain: not valid JSON: %w", err)
	}
	now := time.Now()
	ev, err := event.Normalize(cfg.Sources[0].Name, strconv.FormatInt(now.Unix(), 10), now, c, event.Trace{})
	if err != nil {
		return fmt.Errorf("-explain: %w (serve would answer 4xx)", err)
	}
	if ev.Test {
		fmt.Fprintln(e.stdout, "a test delivery: verified and answered 200, never routed")
		return nil
	}
	routing := router.Route(ev)
	deliveries, routes := routing.Deliveries, routing.Routes
	fmt.Fprintf(e.stdout, "status %q (task %q) matches %d route(s): %s\n", ev.Status, ev.TaskID, len(routes), strings.Join(routes, ", "))
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(scrubbedWriter{tw, scrub}, "  ROUTE\tMATCHED\tTARGETS, OR WHY NOT")
	for _, v := range router.Explain(ev) {
		if !v.Matched {
			fmt.Fprintf(scrubbedWriter{tw, scrub}, "  %s\tno\t%s\n", v.Route, folded(v.Why))
			continue
		}
		targets := make([]string, len(v.Targets))
		for i, d := range v.Targets {
			targets[i] = d.Sink + " " + orDash(d.Target)
		}
		fmt.Fprintf(scrubbedWriter{tw, scrub}, "  %s\tyes\t%s\n", v.Route, strings.Join(targets, ", "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(deliveries) == 0 {
		fmt.Fprintln(e.stdout, "no route takes it: answered 200 and counted as unrouted")
		return nil
	}
	fmt.Fprintln(e.stdout, "deliveries, each (sink, target) once:")
	tw = tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(scrubbedWriter{tw, scrub}, "  SINK\tTARGET\tDELIVERY")
	for _, d := range deliveries {
		mode := "spool"
		if d.Sync {
			mode = "sync"
		}
		fmt.Fprintf(scrubbedWriter{tw, scrub}, "  %s\t%s\t%s\n", d.Sink, orDash(d.Target), mode)
	}
	return tw.Flush()
}

var versionCmd = &command{
	name:  "version",
	short: "print the version",
	long:  "Version prints hookbridge's version and the Go version it was built with.",
	flags: func(fs *flag.FlagSet) func(context.Context, env) int {
		return func(ctx context.Context, e env) int {
			version, goVersion := "(unknown)", "(unknown)"
			if bi, ok := debug.ReadBuildInfo(); ok {
				version, goVersion = bi.Main.Version, bi.GoVersion
			}
			fmt.Fprintf(e.stdout, "hookbridge %s %s\n", version, goVersion)
			return exitOK
		}
	},
}

// buildVersion is the module version hookbridge was built as, "" if
// unknown (service.version on spans).
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return ""
}
