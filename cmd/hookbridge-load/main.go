// Command hookbridge-load measures hookbridge end to end on this machine.
//
// It starts a broker in its own process (nats-server, kfake or kumo: the
// same peers the tests use), hookbridge from a generated config in a child
// process, and a trivial Go HTTP server that only reads the body and
// answers 200. It signs N unique deliveries up front, sends them to each
// receiver over C keep-alive connections, and reports requests per second,
// latency percentiles, non-2xx answers, memory and CPU. Then it reads the
// broker back and checks, by event id, that every delivery hookbridge
// acknowledged arrived. The headline is hookbridge's requests per second
// as a fraction of the trivial server's, measured in the same run: unlike
// absolute figures it carries from machine to machine.
//
//	go run ./cmd/hookbridge-load                      # sync into JetStream, 64 connections
//	go run ./cmd/hookbridge-load -delivery spool      # through the durable spool
//	go run ./cmd/hookbridge-load -delivery jetstream  # through the shared JetStream spool
//	go run ./cmd/hookbridge-load -rate 2000 -n 20000  # latency at a fixed rate
//	go run ./cmd/hookbridge-load -sink kafka          # or -sink sqs
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"
)

// roleEnv makes this program a baseline server when it runs itself;
// natsURLEnv tells the bare JetStream baseline where to publish.
const (
	roleEnv    = "HOOKBRIDGE_LOAD_ROLE"
	natsURLEnv = "HOOKBRIDGE_LOAD_NATS_URL" // or "embedded"
	storeEnv   = "HOOKBRIDGE_LOAD_STORE"    // the embedded server's store
	spoolEnv   = "HOOKBRIDGE_LOAD_SPOOL"    // bare-spool's log directory
)

func main() {
	switch os.Getenv(roleEnv) {
	case "trivial":
		os.Exit(serveTrivial())
	case "bare":
		os.Exit(serveBare())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func signalNotify(c chan<- os.Signal) { signal.Notify(c, os.Interrupt, syscall.SIGTERM) }

// options are the command line.
type options struct {
	sink     string
	delivery string
	// contentMode is the sink's content_mode, "" for its default.
	contentMode string
	routes      string // plain or content
	n           int
	conns       int
	rate        float64
	warmup      int
	flat        bool
	trivial     bool
	bin         string
	drain       time.Duration
	minRatio    float64
	keep        bool
	profile     string
	env         envList
	rounds      int
}

// envList is a repeatable NAME=value flag.
type envList []string

func (e *envList) String() string { return strings.Join(*e, " ") }

func (e *envList) Set(v string) error {
	if name, _, ok := strings.Cut(v, "="); !ok || name == "" {
		return fmt.Errorf("want NAME=value, not %q", v)
	}
	*e = append(*e, v)
	return nil
}

func parseOptions(args []string, stdout io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("hookbridge-load", flag.ContinueOnError)
	// Misuse is one line on stderr (run prints it); only -h prints the
	// flags.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.StringVar(&o.sink, "sink", "nats", "broker to deliver to: nats (a JetStream server in the load tool), embedded (hookbridge's own, as config.yaml; bare-js then embeds one too), kafka or sqs")
	fs.StringVar(&o.delivery, "delivery", "sync", "hookbridge delivery mode: sync, spool, or jetstream (the scale-out setup: spool backend jetstream and replay_cache nats on the load tool's nats-server; needs -sink nats)")
	fs.StringVar(&o.contentMode, "content-mode", "", "the sink's content_mode: structured or binary (default: the sink's default, structured)")
	fs.StringVar(&o.routes, "routes", "plain", "the route table: plain (one route, every status) or content (50 routes, 10 with a when and 5 with a {data...} target, each event still delivered once; needs -sink nats or embedded)")
	fs.IntVar(&o.n, "n", 30000, "deliveries to send to each receiver, over all rounds")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds in which the trivial server and hookbridge take turns")
	fs.IntVar(&o.conns, "c", 64, "keep-alive connections")
	fs.Float64Var(&o.rate, "rate", 0, "deliveries per second (0: as fast as the answers come)")
	fs.IntVar(&o.warmup, "warmup", 2000, "deliveries sent to each receiver before measuring")
	fs.BoolVar(&o.flat, "flat", false, "send the flat payload form instead of the envelope")
	fs.BoolVar(&o.trivial, "trivial", true, "also measure the trivial server and print the ratio")
	fs.StringVar(&o.bin, "bin", "", "hookbridge binary (default: build ./cmd/hookbridge as deploy/Dockerfile does)")
	fs.DurationVar(&o.drain, "drain", 2*time.Minute, "how long to wait for acknowledged events to reach the broker")
	fs.Float64Var(&o.minRatio, "min-ratio", 0, "exit 1 when hookbridge/trivial requests per second is below this")
	fs.StringVar(&o.profile, "profile", "", "write profiles to this directory for go tool pprof: hookbridge's cpu.pprof (the first 5s of measured deliveries) and allocs.pprof, and load-cpu.pprof of this process (generator and broker)")
	fs.Var(&o.env, "env", "`NAME=value` for hookbridge's process only, e.g. GOGC=200 or GOMEMLIMIT=24MiB (repeatable)")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (config, hookbridge's spool and the broker's data)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stdout, "usage: hookbridge-load [flags]\n\nMeasures hookbridge against a trivial HTTP server on this machine; see docs/performance.md.")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
		}
		return nil, err
	}
	switch {
	case fs.NArg() > 0:
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case o.sink != "nats" && o.sink != "embedded" && o.sink != "kafka" && o.sink != "sqs":
		return nil, fmt.Errorf("-sink %q: want nats, embedded, kafka or sqs", o.sink)
	case o.routes != "plain" && o.routes != "content":
		return nil, fmt.Errorf("-routes %q: want plain or content", o.routes)
	case o.routes == "content" && o.sink != "nats" && o.sink != "embedded":
		return nil, fmt.Errorf("-routes content writes NATS subjects: use it with -sink nats or embedded")
	case o.contentMode != "" && o.contentMode != "structured" && o.contentMode != "binary":
		return nil, fmt.Errorf("-content-mode %q: want structured or binary", o.contentMode)
	case o.delivery != "sync" && o.delivery != "spool" && o.delivery != "jetstream":
		return nil, fmt.Errorf("-delivery %q: want sync, spool or jetstream", o.delivery)
	case o.delivery == "jetstream" && o.sink != "nats":
		return nil, fmt.Errorf("-delivery jetstream spools on the load tool's nats-server: use it with -sink nats")
	case o.n < 1:
		return nil, errors.New("-n must be at least 1")
	case o.rounds < 1 || o.rounds > o.n:
		return nil, errors.New("-rounds must be between 1 and -n")
	case o.conns < 1:
		return nil, errors.New("-c must be at least 1")
	case o.rate < 0:
		return nil, errors.New("-rate must not be negative")
	case o.warmup < 0:
		return nil, errors.New("-warmup must not be negative")
	case o.drain <= 0:
		return nil, errors.New("-drain must be positive")
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseOptions(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "hookbridge-load:", err)
		return 2
	}
	r, err := measure(ctx, o, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "hookbridge-load:", err)
		return 1
	}
	r.print(stdout, o)
	return r.verdict(stderr, o)
}

// receiver is one side of the comparison and what it measured.
type receiver struct {
	name    string
	about   string // what a baseline does, for the report
	child   *child
	res     *result       // all rounds
	rounds  []float64     // requests/s in each round
	cpu     time.Duration // the receiver's process, measured deliveries only
	loadCPU time.Duration // this process meanwhile: generator (and broker)
	mem     procStats     // after the last round
}

// report is everything one run measured.
type report struct {
	deliveryBytes int
	trivial       *receiver // nil with -trivial=false
	bare          *receiver // bare-js or bare-spool, with -sink nats or embedded
	hb            *receiver
	hbIdle        procStats
	hbAnonPeak    procStats // the sample with hookbridge's most anonymous memory
	memOK         bool
	arrival       arrival
	peer          string
	requests      int64
	requestsWhat  string
	disk          *diskReport // the local spool's commits, nil without one
}

// measure starts the broker, hookbridge and the baselines, warms every
// receiver up, then sends the measured deliveries in rounds, the
// baselines and hookbridge taking turns, so that all see the same
// machine: on a shared or virtual machine the speed drifts within
// seconds, and a ratio of two runs minutes apart would measure the drift.
func measure(ctx context.Context, o *options, stderr io.Writer) (*report, error) {
	dir, err := os.MkdirTemp("", "hookbridge-load-")
	if err != nil {
		return nil, err
	}
	if o.keep {
		fmt.Fprintln(stderr, "work directory:", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	if o.profile != "" {
		if err := os.MkdirAll(o.profile, 0o755); err != nil {
			return nil, fmt.Errorf("-profile: %w", err)
		}
	}
	bin := o.bin
	if bin == "" {
		bin = filepath.Join(dir, "hookbridge")
		if o.profile != "" {
			bin = filepath.Join(o.profile, "hookbridge") // pprof needs it afterwards
		}
		fmt.Fprintln(stderr, "building hookbridge…")
		// Built as deploy/Dockerfile builds it: static, no cgo (which also
		// keeps libc's pages out of the memory figures).
		build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "github.com/hookbridge/hookbridge/cmd/hookbridge")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build (or pass -bin): %v\n%s", err, out)
		}
	}

	secret := []byte("whsec_load_" + fmt.Sprint(time.Now().UnixNano()))
	now := time.Now()
	warm, err := makeDeliveries(secret, 0, o.warmup, o.flat, now)
	if err != nil {
		return nil, err
	}
	// Every round sends deliveries of its own: hookbridge answers a
	// repeat as a duplicate without publishing it.
	rounds := make([][]delivery, o.rounds)
	for i := range rounds {
		per := o.n / o.rounds
		if i < o.n%o.rounds {
			per++
		}
		first := o.warmup + i*(o.n/o.rounds+1)
		if rounds[i], err = makeDeliveries(secret, first, per, o.flat, now); err != nil {
			return nil, err
		}
	}
	r := &report{deliveryBytes: len(warm0(warm, rounds).body)}

	p, err := startPeer(o.sink, filepath.Join(dir, "broker"))
	if err != nil {
		return nil, fmt.Errorf("starting the %s peer: %w", o.sink, err)
	}
	defer p.close()
	r.peer = p.describe()
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(loadConfig(o, p, filepath.Join(dir, "spool"))), 0o600); err != nil {
		return nil, err
	}
	hb, err := startHookbridge(ctx, bin, cfgPath, append([]string{"LOAD_WEBHOOK_SECRET=" + string(secret), "LOAD_AWS_SECRET=load"}, o.env...))
	if err != nil {
		return nil, err
	}
	defer hb.stop()
	r.hb = &receiver{name: "hookbridge", child: hb, res: &result{statuses: map[int]int{}}}
	if o.trivial {
		t, err := startBaseline(ctx, "trivial")
		if err != nil {
			return nil, err
		}
		defer t.stop()
		r.trivial = &receiver{name: "trivial", child: t, res: &result{statuses: map[int]int{}}}
		var bareEnv []string
		switch p := p.(type) {
		case *natsPeer:
			bareEnv = []string{natsURLEnv + "=" + p.srv.ClientURL()}
		case *embeddedPeer:
			bareEnv = []string{natsURLEnv + "=embedded", storeEnv + "=" + filepath.Join(dir, "bare")}
		}
		if bareEnv != nil {
			name, about := "bare-js", "bare-js publishes the body to JetStream and waits for the PubAck, nothing else"
			if o.delivery == "spool" {
				// The floor of a spooling bridge: a log with group commit
				// on the same disk as hookbridge's spool.
				name, about = "bare-spool", "bare-spool appends the body to a log, answers after its group's fsync, then publishes it to JetStream; nothing else"
				spoolDir := filepath.Join(dir, "bare-spool")
				if err := os.MkdirAll(spoolDir, 0o700); err != nil {
					return nil, err
				}
				bareEnv = append(bareEnv, spoolEnv+"="+spoolDir)
			}
			b, err := startBaseline(ctx, "bare", bareEnv...)
			if err != nil {
				return nil, err
			}
			defer b.stop()
			r.bare = &receiver{name: name, about: about, child: b, res: &result{statuses: map[int]int{}}}
		}
	}
	// Let start-up garbage settle before calling the figure idle.
	time.Sleep(time.Second)
	r.hbIdle, r.memOK = readProcStats(hb.cmd.Process.Pid)
	sampler := sampleMemory(hb.cmd.Process.Pid, 100*time.Millisecond)
	defer sampler.end()

	fmt.Fprintf(stderr, "warming up with %d deliveries each…\n", len(warm))
	acked, err := warmUp(ctx, r, warm, o)
	if err != nil {
		return nil, err
	}
	before, _ := p.requests()
	syncBefore, hasSync, err := readSync(ctx, hb.admin)
	if err != nil {
		return nil, err
	}
	var profiled func() error
	for i, ds := range rounds {
		fmt.Fprintf(stderr, "round %d of %d: %d deliveries each…\n", i+1, len(rounds), len(ds))
		for _, b := range r.baselines() {
			b.send(ctx, ds, o)
		}
		if i == 0 && o.profile != "" {
			profiled = startProfiles(ctx, hb.admin, o.profile)
		}
		r.hb.send(ctx, ds, o)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	after, what := p.requests()
	r.requests, r.requestsWhat = after-before, what
	if hasSync {
		syncAfter, _, err := readSync(ctx, hb.admin)
		if err != nil {
			return nil, err
		}
		d := diskBetween(syncBefore, syncAfter)
		r.disk = &d
	}
	for _, rc := range append(r.baselines(), r.hb) {
		slices.Sort(rc.res.latencies) // once, over every round, for percentile
	}
	if profiled != nil {
		if err := profiled(); err != nil {
			return nil, err
		}
		fmt.Fprintf(stderr, "profiles are in %s: go tool pprof %s %s\n", o.profile, bin, filepath.Join(o.profile, "cpu.pprof"))
	}

	fmt.Fprintln(stderr, "reading the broker back…")
	acked = append(acked, r.hb.res.acked...)
	if r.arrival, err = checkArrival(ctx, p, acked, o.drain); err != nil {
		return nil, err
	}
	// Read after the broker caught up: the spool's dispatchers may still
	// have been draining.
	r.hb.mem, _ = readProcStats(hb.cmd.Process.Pid)
	r.hbAnonPeak = sampler.end()
	for _, b := range r.baselines() {
		b.mem, _ = readProcStats(b.child.cmd.Process.Pid)
	}
	if r.arrival.missing > 0 {
		fmt.Fprintf(stderr, "hookbridge's log (tail):\n%s", hb.logs.String())
	}
	return r, nil
}

func warm0(warm []delivery, rounds [][]delivery) delivery {
	if len(warm) > 0 {
		return warm[0]
	}
	return rounds[0][0]
}

// warmUp sends the warm-up deliveries to each receiver, at -rate when
// there is one (so that a burst does not set the peak memory of a run at
// a fixed rate), and returns the ids hookbridge acknowledged.
func warmUp(ctx context.Context, r *report, warm []delivery, o *options) ([]string, error) {
	for _, b := range r.baselines() {
		g := newGenerator(b.child.url, o.conns, o.rate)
		if res := g.run(ctx, warm); res.non2xx() > 0 {
			return nil, fmt.Errorf("%s server: %d of %d warm-up deliveries failed, first: %s", b.name, res.non2xx(), len(warm), res.firstErr)
		}
		g.close()
	}
	g := newGenerator(r.hb.child.url, o.conns, o.rate)
	defer g.close()
	res := g.run(ctx, warm)
	if res.non2xx() > 0 {
		return nil, fmt.Errorf("hookbridge: %d of %d warm-up deliveries failed, first: %s", res.non2xx(), len(warm), res.firstErr)
	}
	return res.acked, nil
}

// send sends one round's deliveries and adds what they measured.
func (rc *receiver) send(ctx context.Context, ds []delivery, o *options) {
	pid := rc.child.cmd.Process.Pid
	before, _ := readProcStats(pid)
	selfBefore, _ := readProcStats(os.Getpid())
	g := newGenerator(rc.child.url, o.conns, o.rate)
	defer g.close()
	res := g.run(ctx, ds)
	after, _ := readProcStats(pid)
	selfAfter, _ := readProcStats(os.Getpid())
	rc.cpu += after.cpu - before.cpu
	rc.loadCPU += selfAfter.cpu - selfBefore.cpu
	rc.rounds = append(rc.rounds, res.rps())
	rc.res.merge(res)
}

// startProfiles starts hookbridge's CPU profile and this process's, and
// returns a function that waits for them and then writes hookbridge's
// allocations too.
func startProfiles(ctx context.Context, admin, dir string) func() error {
	cpu := fetchProfile(ctx, admin, fmt.Sprintf("profile?seconds=%d", profileSeconds), filepath.Join(dir, "cpu.pprof"))
	if f, err := os.Create(filepath.Join(dir, "load-cpu.pprof")); err == nil {
		if pprof.StartCPUProfile(f) == nil {
			time.AfterFunc(profileSeconds*time.Second, func() { pprof.StopCPUProfile(); f.Close() })
		} else {
			f.Close()
		}
	}
	return func() error {
		if err := cpu(); err != nil {
			return err
		}
		return fetchProfile(ctx, admin, "allocs", filepath.Join(dir, "allocs.pprof"))()
	}
}

// loadConfig is the hookbridge config for a run: one source, every
// status routed to the peer.
func loadConfig(o *options, p peer, spoolDir string) string {
	delivery, spool, replay := o.delivery, fmt.Sprintf("dir: %q", spoolDir), "memory"
	if np, ok := p.(*natsPeer); ok && o.delivery == "jetstream" {
		// The scale-out setup: the shared spool and the shared replay
		// bucket, on the load tool's nats-server.
		delivery, spool, replay = "spool", fmt.Sprintf("backend: jetstream\n  url: %q", np.srv.ClientURL()), "nats"
	}
	sinkYAML := p.sinkYAML()
	if o.contentMode != "" {
		sinkYAML += "\n    content_mode: " + o.contentMode
	}
	return fmt.Sprintf(`# Written by hookbridge-load.
server:
  listen: "127.0.0.1:0"
  admin_listen: "127.0.0.1:0"
  pprof: %t
  replay_cache: %s
delivery: %s
spool:
  %s
sources:
  - name: browser-use
    secrets: ["${LOAD_WEBHOOK_SECRET}"]
sinks:
  - name: bus
    %s
routes:
%s`, o.profile != "", replay, delivery, spool, sinkYAML, routesYAML(o.routes, p.target()))
}

// routesYAML is the route table of -routes: plain, one route taking every
// status; content, 50 routes as BenchmarkRoute50/content has them (10
// with a when, 5 with a {data...} target) that still deliver each event
// once, to the one target the drain counts: the conditions that hold and
// the targets that match expand to that target, which de-duplication
// keeps once, and the others are false for the load's events.
func routesYAML(routes, target string) string {
	if routes == "plain" {
		return "  - name: all\n    status: [\"*\"]\n    to:\n      - {sink: bus, " + target + "}\n"
	}
	never := []string{
		`data.?metadata.?tier.orValue("") == "vip"`,
		`data.?metadata.?team.orValue("") in ["ops", "infra"]`,
		`data.?metadata.?urgent.orValue("") == "true"`,
		`time.getHours("Europe/Paris") > 23`,
	}
	var b strings.Builder
	for i := range 50 {
		fmt.Fprintf(&b, "  - name: route-%02d\n", i)
		st := statuses[i%len(statuses)]
		switch {
		case i == 0:
			// The route every event takes.
			b.WriteString("    when: 'data.?metadata.?env.orValue(\"prod\") != \"staging\"'\n")
			fmt.Fprintf(&b, "    to:\n      - {sink: bus, %s}\n", target)
		case i%5 == 0:
			fmt.Fprintf(&b, "    status: [%s]\n    when: '%s'\n", st, never[i/5%len(never)])
			fmt.Fprintf(&b, "    to:\n      - {sink: bus, %s}\n", strings.Replace(target, "{status}", "never-{status}", 1))
		case i%10 == 3:
			fmt.Fprintf(&b, "    status: [%s]\n", st)
			fmt.Fprintf(&b, "    to:\n      - {sink: bus, %s}\n", strings.Replace(target, "{status}", "{data.status}", 1))
		default:
			fmt.Fprintf(&b, "    status: [%s]\n    to:\n      - {sink: bus, %s}\n", st, target)
		}
	}
	return b.String()
}

func (r *report) print(w io.Writer, o *options) {
	form := "envelope"
	if o.flat {
		form = "flat"
	}
	mode := "closed loop: each connection sends when its last answer came"
	if o.rate > 0 {
		mode = fmt.Sprintf("open loop at %g deliveries/s: latency counts from when each was due", o.rate)
	}
	fmt.Fprintf(w, "hookbridge-load: %d deliveries to each receiver (%s form, %d bytes) in %d rounds taking turns, %d connections, %s; %d warm-up deliveries first\n",
		o.n, form, r.deliveryBytes, o.rounds, o.conns, mode, o.warmup)
	fmt.Fprintf(w, "machine: %s\n", machine())
	fmt.Fprintf(w, "hookbridge: delivery %s to %s", o.delivery, r.peer)
	if o.routes == "content" {
		fmt.Fprint(w, "; 50 routes, 10 with a when and 5 with a {data...} target")
	}
	if len(o.env) > 0 {
		fmt.Fprintf(w, "; environment %s", o.env.String())
	}
	fmt.Fprint(w, "\n\n")
	fmt.Fprintf(w, "%-11s %10s %9s %9s %9s %9s %8s %9s %9s\n", "receiver", "req/s", "p50", "p90", "p99", "max", "non-2xx", "CPU/req", "load/req")
	row := func(rc *receiver) {
		res := rc.res
		fmt.Fprintf(w, "%-11s %10.0f %9s %9s %9s %9s %8d %9s %9s\n", rc.name, res.rps(),
			ms(res.percentile(.50)), ms(res.percentile(.90)), ms(res.percentile(.99)), ms(res.percentile(1)),
			res.non2xx(), us(rc.cpu/time.Duration(res.sent)), us(rc.loadCPU/time.Duration(res.sent)))
	}
	for _, b := range r.baselines() {
		row(b)
	}
	row(r.hb)
	fmt.Fprintln(w, "(req/s over all rounds; CPU/req: the receiver's process; load/req: the load tool's, generator and broker)")
	if r.trivial != nil && o.rate == 0 {
		fmt.Fprintf(w, "\nratio: %s (hookbridge req/s ÷ trivial server req/s, median of the rounds: %s)\n",
			ratioString(r.hb, r.trivial), roundRatios(r.hb, r.trivial))
		if r.bare != nil {
			fmt.Fprintf(w, "%s ÷ trivial: %s; hookbridge ÷ %s: %s (%s)\n",
				r.bare.name, ratioString(r.bare, r.trivial), r.bare.name, ratioString(r.hb, r.bare), r.bare.about)
		}
	}
	a := r.arrival
	fmt.Fprintf(w, "arrival: %d acknowledged (warm-up included), %d found in the broker by event id, %d missing, %d duplicated, %d not acknowledged (read back in %s)\n",
		a.acked, a.found, a.missing, a.duplicated, a.unknown, a.waited.Round(time.Millisecond))
	if r.requestsWhat != "" && r.requests > 0 {
		fmt.Fprintf(w, "batching: %d events in %d %s, %.1f events per request\n",
			r.hb.res.sent, r.requests, r.requestsWhat, float64(r.hb.res.sent)/float64(r.requests))
	}
	if r.disk != nil {
		fmt.Fprintln(w, r.disk)
	}
	if r.memOK {
		fmt.Fprintf(w, "memory: hookbridge RSS %s idle, %s peak (VmHWM); at most %s anonymous (heap, stacks), beside %s of the binary's mapped pages (sampled every 100ms)",
			mib(r.hbIdle.rss), mib(r.hb.mem.peak), mib(r.hbAnonPeak.anon), mib(r.hbAnonPeak.file))
		for _, b := range r.baselines() {
			fmt.Fprintf(w, "; %s %s peak", b.name, mib(b.mem.peak))
		}
		fmt.Fprintln(w)
	}
	for code, n := range r.hb.res.statuses {
		if code/100 != 2 {
			fmt.Fprintf(w, "hookbridge answered %d × %d\n", n, code)
		}
	}
	if r.hb.res.errors > 0 {
		fmt.Fprintf(w, "hookbridge: %d requests got no answer, first: %s\n", r.hb.res.errors, r.hb.res.firstErr)
	}
}

// baselines are the receivers hookbridge is compared with.
func (r *report) baselines() []*receiver {
	var bs []*receiver
	for _, b := range []*receiver{r.trivial, r.bare} {
		if b != nil {
			bs = append(bs, b)
		}
	}
	return bs
}

func (r *report) ratio() float64 { return medianRatio(r.hb, r.trivial) }

func ratioString(a, b *receiver) string { return fmt.Sprintf("%.2f", medianRatio(a, b)) }

func roundRatios(a, b *receiver) string {
	var per []string
	for _, r := range perRound(a, b) {
		per = append(per, fmt.Sprintf("%.2f", r))
	}
	return strings.Join(per, " ")
}

// perRound is a's requests/s over b's in each round.
func perRound(a, b *receiver) []float64 {
	ratios := make([]float64, len(a.rounds))
	for i := range ratios {
		ratios[i] = a.rounds[i] / b.rounds[i]
	}
	return ratios
}

// medianRatio is the median over the rounds of a's requests/s over b's in
// the same round.
func medianRatio(a, b *receiver) float64 {
	ratios := perRound(a, b)
	slices.Sort(ratios)
	if n := len(ratios); n%2 == 0 {
		return (ratios[n/2-1] + ratios[n/2]) / 2
	}
	return ratios[len(ratios)/2]
}

// verdict is the exit status: 1 when an acknowledged event is missing, a
// request failed, or the ratio is below -min-ratio.
func (r *report) verdict(stderr io.Writer, o *options) int {
	code := 0
	if r.arrival.missing > 0 {
		fmt.Fprintf(stderr, "FAIL: %d acknowledged events did not reach the broker\n", r.arrival.missing)
		code = 1
	}
	if n := r.hb.res.non2xx(); n > 0 {
		fmt.Fprintf(stderr, "FAIL: hookbridge answered %d deliveries with something other than 2xx\n", n)
		code = 1
	}
	for _, b := range r.baselines() {
		if b.res.non2xx() > 0 {
			fmt.Fprintf(stderr, "FAIL: the %s server failed %d requests: %s\n", b.name, b.res.non2xx(), b.res.firstErr)
			code = 1
		}
	}
	if o.minRatio > 0 && r.trivial != nil && o.rate == 0 && r.ratio() < o.minRatio {
		fmt.Fprintf(stderr, "FAIL: ratio %.2f is below -min-ratio %g\n", r.ratio(), o.minRatio)
		code = 1
	}
	return code
}

func machine() string {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v) + ", "
				break
			}
		}
	}
	return fmt.Sprintf("%s/%s, %s%d CPUs, %s", runtime.GOOS, runtime.GOARCH, model, runtime.NumCPU(), runtime.Version())
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }
func us(d time.Duration) string { return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond)) }
func mib(b int64) string        { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
