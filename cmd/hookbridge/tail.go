package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbridge/hookbridge/bridge/config"
	"github.com/hookbridge/hookbridge/bridge/redact"
	"github.com/hookbridge/hookbridge/sinks"
	natssink "github.com/hookbridge/hookbridge/sinks/nats"
)

var tailCmd = &command{
	name:  "tail",
	args:  "[-config FILE | -url URL] [-sink NAME] [-stream NAME] [-subject SUBJECT] [-all | -since DURATION | -last N] [-format json|line]",
	short: "print the events on NATS or in a JetStream stream, with their subjects",
	long: `
Tail prints the events on NATS, each with the subject it was published on,
until interrupted. It connects to -url, or else to the NATS sink of the
config file (-sink picks one when there are several; an embedded server is
reached at its embedded.listen address while serve runs).

With -stream NAME, or a sink with jetstream: true (its stream.name,
HOOKBRIDGE by default), tail reads that JetStream stream through an
ordered consumer: ephemeral, without acknowledgements, deleted when tail
exits. It removes no message and moves no other consumer. Streams with
interest or work-queue retention are refused: reading them would remove
messages. Without a stream, tail subscribes on core NATS to the subjects
the config's routes and dead_letter targets publish to (every subject with
-url), and prints each message once even where those subjects overlap
(task.* and task.paused).

Where to start, on a stream only, one at most:

	-all          every message the stream holds, then new ones
	-since 1h     the messages the stream stored in the last hour (by the
	              time it stored them, not the events' time), then new ones
	-last N       the last N messages, then new ones; with -subject, the
	              last N messages on that subject
	(none)        only messages that arrive after tail starts

-subject shows one subject only, wildcards allowed: on a stream it is the
consumer's filter subject.

-format json (the default) prints one JSON object per line, the subject
and the CloudEvent in the JSON event format:

	{"subject":"task.paused","event":{"specversion":"1.0","id":"6f1e…",…,"data":{…}}}

-format line prints one line per event, in columns padded to line up:
the event's time (UTC, to the millisecond), the subject, the status, the
task id (the CloudEvent subject) and the full event id; "-" stands for a
missing value, and a value with spaces or quotes is quoted:

	2026-12-03T10:00:00.123Z  task.paused  paused  task-123  6f1e…

Both content modes are read. A message with a ce-specversion header is a
binary one: its event is rebuilt from the ce- headers, content-type (the
datacontenttype) and the body (data when the content type is JSON, else
data_base64). Any other message must be a structured CloudEvent. The
event's members are printed in one order (specversion, id, source, type,
subject, time, datacontenttype, dataschema, the extensions by name, data
last), so a binary and a structured copy of an event print alike. A
message that is not a CloudEvent is reported on stderr, with its subject,
and not printed.`,
	flags: func(fs *flag.FlagSet) func(context.Context, env) int {
		o := &tailOptions{}
		fs.StringVar(&o.configFile, "config", defaultConfig, "the config `file` whose NATS sink to follow")
		fs.StringVar(&o.url, "url", "", "a NATS server `URL`, instead of the config's")
		fs.StringVar(&o.sinkName, "sink", "", "the NATS sink `name` to follow (default: the first)")
		fs.StringVar(&o.stream, "stream", "", "the JetStream stream `name` to read (default: the sink's stream with jetstream: true)")
		fs.StringVar(&o.subject, "subject", "", "show only this `subject`, wildcards allowed")
		fs.BoolVar(&o.all, "all", false, "start from the stream's first message")
		fs.DurationVar(&o.since, "since", 0, "start from the messages the stream stored in the last `duration` (e.g. 1h)")
		fs.IntVar(&o.last, "last", 0, "start from the stream's last `N` messages (those on -subject, with it)")
		fs.StringVar(&o.format, "format", "json", "output `format`: json or line")
		return func(ctx context.Context, e env) int {
			fs.Visit(func(f *flag.Flag) {
				switch f.Name {
				case "since":
					o.sinceSet = true
				case "last":
					o.lastSet = true
				}
			})
			return o.run(ctx, e)
		}
	},
}

// tailOptions are tail's flags.
type tailOptions struct {
	configFile, url, sinkName, stream, subject, format string
	all                                                bool
	since                                              time.Duration
	last                                               int
	sinceSet, lastSet                                  bool
}

// history names the flag that asks for a stream's history, "" for none.
func (o *tailOptions) history() string {
	switch {
	case o.all:
		return "-all"
	case o.sinceSet:
		return "-since"
	case o.lastSet:
		return "-last"
	}
	return ""
}

// check reports command-line misuse that needs no config.
func (o *tailOptions) check() error {
	var chosen []string
	for _, c := range []struct {
		name string
		set  bool
	}{{"-all", o.all}, {"-since", o.sinceSet}, {"-last", o.lastSet}} {
		if c.set {
			chosen = append(chosen, c.name)
		}
	}
	switch {
	case len(chosen) > 1:
		return usagef("%s each choose where to start: use one of -all, -since, -last", strings.Join(chosen, " and "))
	case o.lastSet && o.last < 1:
		return usagef("-last %d: use a count of 1 or more", o.last)
	case o.sinceSet && o.since <= 0:
		return usagef("-since %s: use a positive duration such as 30m or 24h", o.since)
	case o.format != "json" && o.format != "line":
		return usagef("-format %q: use json or line", o.format)
	case o.subject != "" && !server.IsValidSubject(o.subject):
		return usagef("-subject %q is not a NATS subject: write tokens separated by dots, e.g. task.paused or task.>", o.subject)
	case strings.ContainsAny(o.stream, " \t.*>/\\"):
		return usagef("-stream %q: a stream name cannot hold spaces, dots, *, >, / or \\", o.stream)
	}
	return nil
}

func (o *tailOptions) run(ctx context.Context, e env) int {
	if err := o.check(); err != nil {
		return fail(e, "tail", err)
	}
	var opts []natsgo.Option
	subjects := []string{">"}
	stream := o.stream
	if o.url == "" {
		// Tail needs only the NATS sink: a webhook secret that is not
		// set in this shell must not stop it.
		cfg, err := config.LoadIgnoringUnset(o.configFile, e.lookupEnv)
		if err != nil {
			return fail(e, "tail", err)
		}
		// What tail reports may quote a URL, stream or subject built from
		// a secret: scrub its stderr (never the events it prints).
		e.stderr = redact.New(cfg.Secrets()...).Writer(e.stderr)
		nc, name, err := findNATSSink(cfg, o.sinkName)
		if err != nil {
			return fail(e, "tail", err)
		}
		o.url = nc.URL
		if nc.URL == natssink.Embedded {
			o.url = "nats://" + nc.Embedded.Listen
		}
		opts = nc.AuthOptions()
		subjects = sinks.Wildcards(cfg.TargetTemplates(name), '.', "*")
		if len(subjects) == 0 {
			subjects = []string{">"} // no route uses the sink: follow everything
		}
		if stream == "" && nc.JetStream {
			stream = nc.Stream.Name
		}
	}
	if h := o.history(); h != "" && stream == "" {
		return fail(e, "tail", usagef("%s reads a JetStream stream's history, and there is no stream to read: name one with -stream, or follow a NATS sink with jetstream: true", h))
	}
	if o.subject != "" {
		subjects = []string{o.subject}
	}
	conn, err := natsgo.Connect(o.url, append(opts, natsgo.Name("hookbridge tail"))...)
	if err != nil {
		return fail(e, "tail", fmt.Errorf("connect to NATS at %s: %w (is hookbridge serve or your NATS server running?)", natssink.Redact(o.url), err))
	}
	defer conn.Close()
	p := &eventPrinter{stdout: e.stdout, stderr: e.stderr, line: o.format == "line"}
	if stream != "" {
		return o.followStream(ctx, e, conn, stream, p)
	}
	return o.followCore(ctx, e, conn, subjects, p)
}

// followCore subscribes on core NATS to subjects and prints what arrives.
// A message is delivered once per matching subscription of a connection:
// overlapping subjects (task.* and task.paused, from two routes) would
// print it twice. Subjects another one covers are dropped, and a message
// is printed only by the first remaining subscription that matches it, for
// overlaps neither covers (task.*.x and task.y.*).
func (o *tailOptions) followCore(ctx context.Context, e env, conn *natsgo.Conn, subjects []string, p *eventPrinter) int {
	subjects = pruneSubjects(subjects)
	msgs := make(chan *natsgo.Msg, 1024)
	for _, s := range subjects {
		if _, err := conn.ChanSubscribe(s, msgs); err != nil {
			return fail(e, "tail", fmt.Errorf("subscribe to %q: %w", s, err))
		}
	}
	if err := conn.FlushTimeout(10 * time.Second); err != nil {
		return fail(e, "tail", fmt.Errorf("subscribe: %w", err))
	}
	fmt.Fprintf(e.stderr, "hookbridge tail: following %s on %s (core NATS: new messages only)\n", strings.Join(subjects, ", "), natssink.Redact(o.url))
	for {
		select {
		case <-ctx.Done():
			return exitOK
		case m := <-msgs:
			if !eventSubject(m.Subject) || m.Sub == nil || firstMatch(subjects, m.Subject) != m.Sub.Subject {
				continue
			}
			p.print(m.Subject, m.Header, m.Data)
		}
	}
}

// eventSubject reports whether subject can carry an event: with ">" every
// inbox reply and JetStream API call shows up too.
func eventSubject(subject string) bool {
	return !strings.HasPrefix(subject, "_INBOX.") && !strings.HasPrefix(subject, "$")
}

// pruneSubjects drops repeated subjects and those another one covers
// (task.paused when task.* is there), keeping the order of the rest.
func pruneSubjects(subjects []string) []string {
	var out []string
	for i, s := range subjects {
		covered := false
		for j, t := range subjects {
			if s == t && j < i || s != t && server.SubjectMatchesFilter(s, t) {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, s)
		}
	}
	return out
}

// firstMatch returns the first of subjects that matches the literal
// subject, "" if none does.
func firstMatch(subjects []string, subject string) string {
	for _, s := range subjects {
		if server.SubjectMatchesFilter(subject, s) {
			return s
		}
	}
	return ""
}

// tailInactive is how long the server keeps tail's consumer once tail
// stops pulling without deleting it (killed, or cut off): it leaves
// nothing behind for longer.
const tailInactive = time.Minute

// followStream reads stream through an ordered consumer, from where the
// flags say, and prints every message until ctx is done; on the way out it
// deletes every consumer it created.
func (o *tailOptions) followStream(ctx context.Context, e env, conn *natsgo.Conn, name string, p *eventPrinter) int {
	where := fmt.Sprintf("stream %q on %s", name, natssink.Redact(o.url))
	js, err := jetstream.New(conn)
	if err != nil {
		return fail(e, "tail", fmt.Errorf("%s: %w", where, err))
	}
	st, err := js.Stream(ctx, name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return fail(e, "tail", fmt.Errorf("no %s: name an existing one with -stream (hookbridge serve creates a jetstream sink's stream when it starts)", where))
	case errors.Is(err, natsgo.ErrNoResponders) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
		return fail(e, "tail", fmt.Errorf("%s: JetStream is not enabled there: follow core NATS without -stream, or start nats-server with -js: %w", where, err))
	case err != nil:
		return fail(e, "tail", fmt.Errorf("look up %s: %w", where, err))
	}
	info := st.CachedInfo()
	if r := info.Config.Retention; r != jetstream.LimitsPolicy {
		kind := "interest"
		if r == jetstream.WorkQueuePolicy {
			kind = "work-queue"
		}
		return fail(e, "tail", fmt.Errorf("%s has %s retention: a consumer that reads it removes messages from it, so tail does not; read a stream with limits retention", where, kind))
	}

	prefix, err := consumerPrefix()
	if err != nil {
		return fail(e, "tail", err)
	}
	r := &streamReader{js: js, stream: name, prefix: prefix}
	if o.subject != "" {
		r.filter = []string{o.subject}
	}
	defer func() {
		if err := r.removeConsumers(); err != nil {
			fmt.Fprintf(e.stderr, "hookbridge tail: %v (the server removes them after %s without tail)\n", err, tailInactive)
		}
	}()

	var (
		it    jetstream.MessagesContext
		skip  uint64
		start string
	)
	switch {
	case o.all:
		it, _, err = r.open(ctx, jetstream.DeliverAllPolicy, 0, nil)
		start = "from its first message"
	case o.sinceSet:
		t := e.clock().Add(-o.since)
		it, _, err = r.open(ctx, jetstream.DeliverByStartTimePolicy, 0, &t)
		start = fmt.Sprintf("from the messages stored since %s", t.UTC().Format(time.RFC3339))
	case o.lastSet:
		it, skip, err = r.openLast(ctx, info.State.FirstSeq, info.State.LastSeq, uint64(o.last))
		start = fmt.Sprintf("from its last %d messages", o.last)
	default:
		it, _, err = r.open(ctx, jetstream.DeliverNewPolicy, 0, nil)
		start = "new messages only"
	}
	if err != nil {
		return fail(e, "tail", fmt.Errorf("read %s: %w", where, err))
	}
	defer it.Stop()
	// Next does not watch ctx while the ordered consumer re-creates itself
	// (after a reconnect): stopping the iterator ends that too.
	defer context.AfterFunc(ctx, it.Stop)()
	shown := "every subject"
	if o.subject != "" {
		shown = "subject " + o.subject
	}
	fmt.Fprintf(e.stderr, "hookbridge tail: following %s, %s, %s\n", where, shown, start)
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return exitOK
			}
			return fail(e, "tail", fmt.Errorf("read %s: %w", where, err))
		}
		if skip > 0 {
			skip--
			continue
		}
		if eventSubject(msg.Subject()) {
			p.print(msg.Subject(), msg.Headers(), msg.Data())
		}
	}
}

// consumerPrefix returns a name prefix that is tail's alone, so that on
// the way out it deletes its own consumers and nobody else's.
func consumerPrefix() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("name the consumer: %w", err)
	}
	return "hookbridge_tail_" + hex.EncodeToString(b), nil
}

// streamReader opens ordered consumers on one stream, all named with
// prefix.
type streamReader struct {
	js     jetstream.JetStream
	stream string
	filter []string
	prefix string
}

// open starts an ordered consumer delivering by policy, and returns its
// messages and how many messages it had to deliver when it was created.
// An ordered consumer acknowledges nothing and is ephemeral: the stream
// and its other consumers are as they were.
func (r *streamReader) open(ctx context.Context, policy jetstream.DeliverPolicy, startSeq uint64, startTime *time.Time) (jetstream.MessagesContext, uint64, error) {
	cons, err := r.js.OrderedConsumer(ctx, r.stream, jetstream.OrderedConsumerConfig{
		FilterSubjects:    r.filter,
		DeliverPolicy:     policy,
		OptStartSeq:       startSeq,
		OptStartTime:      startTime,
		InactiveThreshold: tailInactive,
		NamePrefix:        r.prefix,
	})
	if err != nil {
		return nil, 0, err
	}
	it, err := cons.Messages() // creates the consumer on the server
	if err != nil {
		return nil, 0, err
	}
	var pending uint64
	if info := cons.CachedInfo(); info != nil {
		pending = info.NumPending
	}
	return it, pending, nil
}

// openLast starts an ordered consumer at the last n messages of the
// stream that pass the filter, as of the moment it is created, and
// returns it with how many of its first messages to skip to get there.
//
// Without a filter and without gaps in the stream, that is sequence
// last-n+1. With a filter (or deleted messages), fewer than n of those may
// match: the window grows fourfold until it holds n matching messages or
// reaches the stream's first message, and the consumer's pending count at
// creation says how many lead the last n.
func (r *streamReader) openLast(ctx context.Context, first, last, n uint64) (jetstream.MessagesContext, uint64, error) {
	first = max(first, 1)
	for window := n; ; window *= 4 {
		start := first
		if last >= first && last-first+1 > window {
			start = last - window + 1
		}
		it, pending, err := r.open(ctx, jetstream.DeliverByStartSequencePolicy, start, nil)
		if err != nil {
			return nil, 0, err
		}
		if pending >= n || start == first {
			return it, pending - min(pending, n), nil
		}
		it.Stop()
		if err := r.removeConsumers(); err != nil {
			return nil, 0, err
		}
	}
}

// removeConsumers deletes the consumers tail created on the stream. It
// runs once tail is done, with a context of its own.
func (r *streamReader) removeConsumers() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := r.js.Stream(ctx, r.stream)
	if err != nil {
		return fmt.Errorf("remove tail's consumers of stream %q: %w", r.stream, err)
	}
	names := st.ConsumerNames(ctx)
	var mine []string
	for name := range names.Name() { // drain it: the lister's goroutine waits on us
		if strings.HasPrefix(name, r.prefix) {
			mine = append(mine, name)
		}
	}
	if err := names.Err(); err != nil {
		return fmt.Errorf("list the consumers of stream %q: %w", r.stream, err)
	}
	var errs []error
	for _, name := range mine {
		if err := r.js.DeleteConsumer(ctx, r.stream, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			errs = append(errs, fmt.Errorf("remove consumer %q of stream %q: %w", name, r.stream, err))
		}
	}
	return errors.Join(errs...)
}

// findNATSSink returns the NATS sink called name, or the first one. Tail
// follows NATS only: it picks the sinks of that kind and reads their
// connection settings.
func findNATSSink(cfg *config.Config, name string) (*natssink.Config, string, error) {
	for _, sk := range cfg.Sinks {
		nc, ok := sk.Options.(*natssink.Config)
		if ok && (name == "" || sk.Name == name) {
			return nc, sk.Name, nil
		}
	}
	if name != "" {
		return nil, "", usagef("-sink %q: no NATS sink of that name in the config", name)
	}
	return nil, "", fmt.Errorf("the config has no NATS sink: pass -url")
}
