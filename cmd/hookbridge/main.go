// Command hookbridge receives Browser Use Cloud task webhooks, verifies
// their signatures and publishes them as CloudEvents to message brokers
// according to YAML routes.
//
// This package only parses flags, wires the bridge package together and
// handles signals; everything a test would want lives under bridge/ and
// sinks/.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], env{
		stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, lookupEnv: os.LookupEnv,
	})
	stop()
	os.Exit(code)
}

// env is what a command may touch of the outside world, so tests can run
// commands in-process.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	lookupEnv      func(string) (string, bool)
	// now is the clock (tail -since counts back from it); nil is
	// time.Now, so a test can pin the moment a command starts from.
	now func() time.Time

	action string   // the action word of a command that has them
	args   []string // the arguments after the flags
}

// clock returns the current time of e's clock.
func (e env) clock() time.Time {
	if e.now != nil {
		return e.now()
	}
	return time.Now()
}

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and failed: an invalid signature, a bad config, a broker down
	exitUsage   = 2 // the command line was wrong
)

type command struct {
	name  string
	args  string // the synopsis after the name
	short string
	long  string
	// takesArgs lets arguments follow the flags (hookbridge spool drop 12 13).
	takesArgs bool
	// actions, when set, are the words the command takes before its
	// flags (hookbridge spool ls -dead); the body gets the chosen one.
	actions []string
	// flags declares the command's flags on fs and returns its body.
	flags func(fs *flag.FlagSet) func(ctx context.Context, e env) int
}

func commands() []*command {
	return []*command{serveCmd, checkCmd, schemaCmd, verifyCmd, signCmd, sendCmd, tailCmd, spoolCmd, versionCmd}
}

func lookupCommand(name string) *command {
	for _, c := range commands() {
		if c.name == name {
			return c
		}
	}
	return nil
}

// usageError is command-line misuse: one line on stderr, exit 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

func run(ctx context.Context, args []string, e env) int {
	name := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	switch name {
	case "help":
		return help(args, e)
	case "-h", "-help", "--help":
		return help(nil, e)
	}
	cmd := lookupCommand(name)
	if cmd == nil {
		fmt.Fprintf(e.stderr, "hookbridge: unknown command %q: run 'hookbridge help' for the list\n", name)
		return exitUsage
	}
	fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // misuse is reported in one line below
	body := cmd.flags(fs)
	if len(cmd.actions) > 0 {
		if len(args) == 0 || !slices.Contains(cmd.actions, args[0]) {
			if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
				printCommandHelp(e.stdout, cmd)
				return exitOK
			}
			fmt.Fprintf(e.stderr, "hookbridge %s: say %s (run 'hookbridge help %s')\n", cmd.name, strings.Join(cmd.actions, ", "), cmd.name)
			return exitUsage
		}
		e.action, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printCommandHelp(e.stdout, cmd)
			return exitOK
		}
		fmt.Fprintf(e.stderr, "hookbridge %s: %v (run 'hookbridge help %s')\n", cmd.name, err, cmd.name)
		return exitUsage
	}
	e.args = fs.Args()
	if fs.NArg() > 0 && !cmd.takesArgs {
		fmt.Fprintf(e.stderr, "hookbridge %s: unexpected argument %q (run 'hookbridge help %s')\n", cmd.name, fs.Arg(0), cmd.name)
		return exitUsage
	}
	return body(ctx, e)
}

// fail reports err on stderr in the command's name and returns the exit
// code it calls for.
func fail(e env, cmd string, err error) int {
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(e.stderr, "hookbridge %s: %s (run 'hookbridge help %s')\n", cmd, ue.msg, cmd)
		return exitUsage
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Fprintf(e.stderr, "hookbridge %s: %s\n", cmd, line)
	}
	return exitFailure
}

func help(args []string, e env) int {
	if len(args) == 0 {
		fmt.Fprint(e.stdout, `Hookbridge receives Browser Use Cloud task webhooks, verifies their
signatures and publishes them as CloudEvents to message brokers (NATS core
and JetStream, Kafka, AWS SQS, files) according to YAML routes.

Usage:

	hookbridge <command> [arguments]

The commands are:

`)
		for _, c := range commands() {
			fmt.Fprintf(e.stdout, "\t%-8s %s\n", c.name, c.short)
		}
		fmt.Fprint(e.stdout, `
With no command, hookbridge serves.
Use "hookbridge help <command>" for more information about a command.
`)
		return exitOK
	}
	cmd := lookupCommand(args[0])
	if cmd == nil || len(args) > 1 {
		fmt.Fprintf(e.stderr, "hookbridge help: unknown help topic %q: run 'hookbridge help' for the list\n", strings.Join(args, " "))
		return exitUsage
	}
	printCommandHelp(e.stdout, cmd)
	return exitOK
}

func printCommandHelp(w io.Writer, cmd *command) {
	fmt.Fprintf(w, "usage: hookbridge %s %s\n\n%s\n", cmd.name, cmd.args, strings.TrimSpace(cmd.long))
	fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
	cmd.flags(fs)
	has := false
	fs.VisitAll(func(*flag.Flag) { has = true })
	if has {
		fmt.Fprint(w, "\nFlags:\n")
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
}
