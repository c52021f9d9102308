package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/hookbridge/hookbridge/bridge/config"
	"github.com/hookbridge/hookbridge/sinks"
	natssink "github.com/hookbridge/hookbridge/sinks/nats"
)

var tailCmd = &command{
	name:  "tail",
	args:  "[-config FILE | -url URL] [-sink NAME] [-subject SUBJECT]",
	short: "print events arriving on NATS",
	long: `
Tail subscribes to NATS and prints every event that arrives, one CloudEvent
JSON per line, until interrupted. It connects to -url, or else to the NATS
sink of the config file (-sink picks one when there are several; an
embedded server is reached at its embedded.listen address while serve runs).

Without -subject it follows the subjects the config's routes publish to
(e.g. task.* and alerts.task.*), or every subject with -url.`,
	flags: func(fs *flag.FlagSet) func(context.Context, env) int {
		configFile := fs.String("config", defaultConfig, "the config `file` whose NATS sink to follow")
		url := fs.String("url", "", "a NATS server `URL`, instead of the config's")
		sinkName := fs.String("sink", "", "the NATS sink `name` to follow (default: the first)")
		subject := fs.String("subject", "", "the `subject` to subscribe to, wildcards allowed")
		return func(ctx context.Context, e env) int {
			var opts []natsgo.Option
			subjects := []string{">"}
			if *url == "" {
				// Tail needs only the NATS sink: a webhook secret that is
				// not set in this shell must not stop it.
				cfg, err := config.LoadIgnoringUnset(*configFile, e.lookupEnv)
				if err != nil {
					return fail(e, "tail", err)
				}
				nc, name, err := findNATSSink(cfg, *sinkName)
				if err != nil {
					return fail(e, "tail", err)
				}
				*url = nc.URL
				if nc.URL == natssink.Embedded {
					*url = "nats://" + nc.Embedded.Listen
				}
				opts = nc.AuthOptions()
				subjects = sinks.Wildcards(cfg.TargetTemplates(name), '.', "*")
				if len(subjects) == 0 {
					subjects = []string{">"} // no route uses the sink: follow everything
				}
			}
			if *subject != "" {
				subjects = []string{*subject}
			}
			conn, err := natsgo.Connect(*url, append(opts, natsgo.Name("hookbridge tail"))...)
			if err != nil {
				return fail(e, "tail", fmt.Errorf("connect to NATS at %s: %w (is hookbridge serve or your NATS server running?)", natssink.Redact(*url), err))
			}
			defer conn.Close()
			msgs := make(chan *natsgo.Msg, 1024)
			for _, s := range subjects {
				if _, err := conn.ChanSubscribe(s, msgs); err != nil {
					return fail(e, "tail", fmt.Errorf("subscribe to %q: %w", s, err))
				}
			}
			if err := conn.FlushTimeout(10 * time.Second); err != nil {
				return fail(e, "tail", fmt.Errorf("subscribe: %w", err))
			}
			fmt.Fprintf(e.stderr, "hookbridge tail: following %s on %s\n", strings.Join(subjects, ", "), natssink.Redact(*url))
			for {
				select {
				case <-ctx.Done():
					return exitOK
				case m := <-msgs:
					// With ">" every inbox reply and JetStream API call shows
					// up too: they are not events.
					if strings.HasPrefix(m.Subject, "_INBOX.") || strings.HasPrefix(m.Subject, "$") {
						continue
					}
					fmt.Fprintf(e.stdout, "%s\n", m.Data)
				}
			}
		}
	},
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
