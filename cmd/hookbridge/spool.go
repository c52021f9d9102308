package main

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hookbridge/hookbridge/bridge"
	"github.com/hookbridge/hookbridge/bridge/config"
	"github.com/hookbridge/hookbridge/bridge/queue"
	"github.com/hookbridge/hookbridge/bridge/redact"
)

var spoolCmd = &command{
	name:      "spool",
	args:      "ls|replay|drop [-config FILE] [flags] [SEQ...]",
	short:     "inspect the spool and re-drive dead letters",
	actions:   []string{"ls", "replay", "drop"},
	takesArgs: true,
	long: `
Spool works on the durable spool of the config: the local spool's log
(spool.dir) while serve is stopped, since a running hookbridge locks it;
or, with spool.backend: jetstream, the shared stream while the replicas
run (SEQ is then the stream sequence).

	hookbridge spool ls              messages waiting, per sink, oldest first
	hookbridge spool ls -dead        dead letters, with why they died
	hookbridge spool replay SEQ...   put dead letters back in line (-all: every one)
	hookbridge spool drop SEQ...     delete dead letters (-all: every one)
	hookbridge spool drop -pending -sink NAME SEQ...
	                                 delete waiting messages of one sink

SEQ is the number ls prints in its first column.`,
	flags: func(fs *flag.FlagSet) func(context.Context, env) int {
		configFile := fs.String("config", defaultConfig, "the config `file` whose spool to open")
		dead := fs.Bool("dead", false, "ls: list dead letters instead of waiting messages")
		sinkName := fs.String("sink", "", "ls, drop -pending: only this `sink`")
		limit := fs.Int("n", 100, "ls: list at most `n` messages")
		all := fs.Bool("all", false, "replay, drop: every dead letter (or, with -pending, every waiting message of -sink)")
		pending := fs.Bool("pending", false, "drop: waiting messages of -sink instead of dead letters")
		return func(ctx context.Context, e env) int {
			seqs, err := parseSeqs(e.args)
			if err != nil {
				return fail(e, "spool", err)
			}
			if e.action == "ls" && len(seqs) > 0 {
				return fail(e, "spool", usagef("ls takes no SEQ"))
			}
			cfg, err := config.LoadIgnoringUnset(*configFile, e.lookupEnv)
			if err != nil {
				return fail(e, "spool", err)
			}
			scrub := redact.New(cfg.Secrets()...) // a spool dir or NATS URL may hold one
			st, err := bridge.OpenSpoolAdmin(ctx, cfg)
			if err != nil {
				return fail(e, "spool", scrub.Error(err))
			}
			defer st.Close()
			switch e.action {
			case "ls":
				err = spoolList(ctx, e, st, *dead, *sinkName, *limit)
			case "replay":
				err = spoolReplay(ctx, e, st, seqs, *all)
			case "drop":
				err = spoolDrop(ctx, e, st, seqs, *all, *pending, *sinkName)
			}
			if err != nil {
				return fail(e, "spool", scrub.Error(err))
			}
			return exitOK
		}
	},
}

func parseSeqs(args []string) ([]uint64, error) {
	seqs := make([]uint64, 0, len(args))
	for _, a := range args {
		n, err := strconv.ParseUint(a, 10, 64)
		if err != nil {
			return nil, usagef("%q is not a SEQ: give the numbers spool ls prints", a)
		}
		seqs = append(seqs, n)
	}
	return seqs, nil
}

func spoolList(ctx context.Context, e env, st queue.Admin, dead bool, sinkName string, limit int) error {
	stats, err := st.Stats(ctx)
	if err != nil {
		return err
	}
	oldest := "-"
	if !stats.Oldest.IsZero() {
		oldest = time.Since(stats.Oldest).Round(time.Second).String()
	}
	fmt.Fprintf(e.stdout, "waiting: %d messages, %d bytes, oldest %s ago; dead letters: %d\n\n", stats.Pending, stats.PendingBytes, oldest, stats.Dead)
	var recs []queue.Record
	if dead {
		recs, err = st.Dead(ctx, 0, limit)
	} else {
		for _, name := range sortedNames(stats.BySink) {
			if sinkName != "" && name != sinkName {
				continue
			}
			more, err := st.Pending(ctx, name, 0, limit-len(recs))
			if err != nil {
				return err
			}
			recs = append(recs, more...)
			if len(recs) >= limit {
				break
			}
		}
	}
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	if dead {
		fmt.Fprintln(tw, "SEQ\tSINK\tTARGET\tTASK\tEVENT\tATTEMPTS\tDIED\tREASON")
	} else {
		fmt.Fprintln(tw, "SEQ\tSINK\tTARGET\tTASK\tEVENT\tATTEMPTS\tAGE\tLAST ERROR")
	}
	for _, r := range recs {
		if sinkName != "" && r.Sink != sinkName {
			continue
		}
		when, why, attempts := time.Since(r.Received).Round(time.Second).String(), r.LastError, strconv.Itoa(r.Attempts)
		switch {
		case dead:
			when, why = r.Died.UTC().Format(time.RFC3339), r.Reason
		case st.Shared():
			// NATS counts a waiting message's attempts, not the record:
			// nats consumer info hookbridge_<sink>_<partition> shows them.
			attempts = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Seq, r.Sink, orDash(r.Message.Target),
			orDash(r.Message.Key), r.Message.ID, attempts, when, orDash(oneLine(why)))
	}
	return tw.Flush()
}

func spoolReplay(ctx context.Context, e env, st queue.Admin, seqs []uint64, all bool) error {
	seqs, err := pickDead(ctx, st, seqs, all)
	if err != nil {
		return err
	}
	n, err := st.Replay(ctx, seqs)
	if err != nil {
		return err
	}
	who := "the next serve delivers them"
	if st.Shared() {
		who = "the running replicas deliver them"
	}
	fmt.Fprintf(e.stdout, "%d dead letters back in line: %s\n", n, who)
	return nil
}

func spoolDrop(ctx context.Context, e env, st queue.Admin, seqs []uint64, all, pending bool, sinkName string) error {
	if pending {
		switch {
		case sinkName == "":
			return usagef("drop -pending needs -sink NAME")
		case all && len(seqs) > 0:
			return usagef("give SEQs or -all, not both")
		case all:
			n, err := st.PurgePending(ctx, sinkName)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "every waiting message of sink %q dropped (%d were waiting)\n", sinkName, n)
			return nil
		case len(seqs) == 0:
			return usagef("name the SEQs to drop, or -all")
		}
		n, err := st.DropPending(ctx, sinkName, seqs)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%d waiting messages of sink %q dropped\n", n, sinkName)
		return nil
	}
	seqs, err := pickDead(ctx, st, seqs, all)
	if err != nil {
		return err
	}
	n, err := st.Drop(ctx, seqs)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%d dead letters dropped\n", n)
	return nil
}

// pickDead returns seqs, or with all every dead letter's.
func pickDead(ctx context.Context, st queue.Admin, seqs []uint64, all bool) ([]uint64, error) {
	switch {
	case all && len(seqs) > 0:
		return nil, usagef("give SEQs or -all, not both")
	case !all && len(seqs) == 0:
		return nil, usagef("name the SEQs (spool ls -dead lists them), or -all")
	case !all:
		return seqs, nil
	}
	recs, err := st.Dead(ctx, 0, 1<<30)
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		seqs = append(seqs, r.Seq)
	}
	return seqs, nil
}

func sortedNames(m map[string]int) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}
