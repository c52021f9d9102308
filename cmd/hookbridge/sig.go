package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hookbridge/hookbridge/bridge/event"
	"github.com/hookbridge/hookbridge/bridge/signature"
)

// maxStdin bounds what verify and sign read: a webhook body, not a stream.
const maxStdin = 64 << 20

var verifyCmd = &command{
	name:  "verify",
	args:  "[-secret-file FILE | -secret S] -timestamp T -signature SIG [-tolerance D] [-v] < body",
	short: "check a delivery's signature",
	long: `
Verify reads a webhook body on standard input and checks its signature the
way serve does: HMAC-SHA256 over the timestamp, a dot and CPython's
canonical JSON of the body.

It exits 0 and prints "valid" when the signature matches, 1 with the reason
on standard error when it does not, and 2 on misuse. The timestamp is not
checked for freshness unless -tolerance is given. -v prints the exact string
that is signed.

` + secretHelp,
	flags: func(fs *flag.FlagSet) func(context.Context, env) int {
		secret, secretFile := secretFlags(fs)
		ts := fs.String("timestamp", "", "the X-Browser-Use-Timestamp `value` (required)")
		sig := fs.String("signature", "", "the X-Browser-Use-Signature `value` (required)")
		tolerance := fs.Duration("tolerance", 0, "reject a timestamp further than this `duration` from now (0: no check)")
		verbose := fs.Bool("v", false, "print the signed string")
		return func(ctx context.Context, e env) int {
			key, err := webhookSecret(e, *secret, *secretFile)
			if err != nil {
				return fail(e, "verify", err)
			}
			if err := required("-timestamp", *ts, "-signature", *sig); err != nil {
				return fail(e, "verify", err)
			}
			body, err := readStdin(e)
			if err != nil {
				return fail(e, "verify", err)
			}
			var cz signature.Canonicalizer
			c, err := cz.Canonicalize(body)
			if err != nil {
				return fail(e, "verify", fmt.Errorf("invalid: body is not valid JSON: %w", err))
			}
			if *verbose {
				fmt.Fprintf(e.stdout, "%s.%s\n", *ts, c.JSON)
			}
			v, err := signature.NewVerifier([][]byte{[]byte(key)})
			if err != nil {
				return fail(e, "verify", usagef("the secret: %v", err))
			}
			if !v.Verify(*ts, c.JSON, *sig) {
				return fail(e, "verify", fmt.Errorf("invalid: signature does not match"))
			}
			if *tolerance > 0 {
				if err := signature.CheckTimestamp(*ts, time.Now(), *tolerance); err != nil {
					return fail(e, "verify", fmt.Errorf("invalid: %w", err))
				}
			}
			fmt.Fprintln(e.stdout, "valid")
			return exitOK
		}
	},
}

var signCmd = &command{
	name:  "sign",
	args:  "[-secret-file FILE | -secret S] [-timestamp T] < body",
	short: "sign a body as Browser Use does",
	long: `
Sign reads a webhook body on standard input and prints the two headers
Browser Use would send with it. The timestamp defaults to the current Unix
time in seconds.

` + secretHelp,
	flags: func(fs *flag.FlagSet) func(context.Context, env) int {
		secret, secretFile := secretFlags(fs)
		ts := fs.String("timestamp", "", "the timestamp `value` to sign (default: now, Unix seconds)")
		return func(ctx context.Context, e env) int {
			key, err := webhookSecret(e, *secret, *secretFile)
			if err != nil {
				return fail(e, "sign", err)
			}
			if *ts == "" {
				*ts = strconv.FormatInt(time.Now().Unix(), 10)
			}
			body, err := readStdin(e)
			if err != nil {
				return fail(e, "sign", err)
			}
			var cz signature.Canonicalizer
			c, err := cz.Canonicalize(body)
			if err != nil {
				return fail(e, "sign", fmt.Errorf("body is not valid JSON: %w", err))
			}
			fmt.Fprintf(e.stdout, "%s: %s\n%s: %s\n", signature.HeaderTimestamp, *ts,
				signature.HeaderSignature, signature.Sign([]byte(key), *ts, c.JSON))
			return exitOK
		}
	},
}

var sendCmd = &command{
	name:  "send",
	args:  "[-url URL] [-secret-file FILE | -secret S] [-status S] [-task-id ID] [-flat]",
	short: "sign and post a sample event",
	long: `
Send builds a sample task status event as Browser Use sends it (the current
envelope form, or the older flat form with -flat), signs it with the current
time and posts it, then prints the answer. It exits 0 on a 2xx answer and
1 otherwise.

` + secretHelp,
	flags: func(fs *flag.FlagSet) func(context.Context, env) int {
		url := fs.String("url", "http://127.0.0.1:8080/webhook", "the webhook `URL`")
		secret, secretFile := secretFlags(fs)
		status := fs.String("status", "finished", "the task `status`")
		taskID := fs.String("task-id", "", "the task `id` (default: a random UUID)")
		flat := fs.Bool("flat", false, "send the older flat body instead of the envelope")
		test := fs.Bool("test", false, "send a test delivery, as the dashboard does when a webhook is created")
		return func(ctx context.Context, e env) int {
			key, err := webhookSecret(e, *secret, *secretFile)
			if err != nil {
				return fail(e, "send", err)
			}
			if *taskID == "" {
				*taskID = newUUID()
			}
			now := time.Now().UTC()
			body := event.Sample{Status: *status, TaskID: *taskID, SessionID: newUUID(), Time: now, Flat: *flat, Test: *test,
				Metadata: map[string]string{"sent_by": "hookbridge send"}}.Body()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, *url, bytes.NewReader(body))
			if err != nil {
				return fail(e, "send", usagef("-url: %v", err))
			}
			req.Header.Set("Content-Type", "application/json")
			if err := signature.SignRequest(req, body, []byte(key), strconv.FormatInt(now.Unix(), 10)); err != nil {
				return fail(e, "send", err) // cannot happen: Sample writes JSON
			}
			client := &http.Client{Timeout: 30 * time.Second}
			resp, err := client.Do(req)
			if err != nil {
				return fail(e, "send", fmt.Errorf("post: %w", err))
			}
			defer resp.Body.Close()
			answer, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			fmt.Fprintf(e.stdout, "%s\n%s", resp.Status, answer)
			if resp.StatusCode/100 != 2 {
				return exitFailure
			}
			return exitOK
		}
	},
}

// secretEnv is the variable sign, verify and send read the webhook secret
// from.
const secretEnv = "BROWSER_USE_WEBHOOK_SECRET"

// secretHelp is the part of sign's, verify's and send's help that says
// where the secret comes from.
const secretHelp = `The webhook secret comes from -secret-file, else from
$BROWSER_USE_WEBHOOK_SECRET. -secret also gives it, but it shows in ps
and in the shell's history: keep it for tests. Giving both -secret and
-secret-file is an error.`

// secretFlags declares -secret and -secret-file on fs.
func secretFlags(fs *flag.FlagSet) (secret, file *string) {
	secret = fs.String("secret", "", "the webhook `secret` (shows in ps: prefer -secret-file or $"+secretEnv+")")
	file = fs.String("secret-file", "", "read the webhook secret from `file` (surrounding white space ignored)")
	return secret, file
}

// webhookSecret returns the webhook secret of sign, verify or send: the
// -secret flag, else the content of -secret-file (white space around it
// trimmed, as config secret_files), else $BROWSER_USE_WEBHOOK_SECRET. Both
// flags, or no secret at all, are misuse; an unreadable or empty file is
// a failure.
func webhookSecret(e env, flagSecret, file string) (string, error) {
	switch {
	case flagSecret != "" && file != "":
		return "", usagef("give -secret or -secret-file, not both")
	case flagSecret != "":
		return flagSecret, nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("-secret-file: %w: give a readable file holding the secret", err)
		}
		secret := strings.TrimSpace(string(b))
		if secret == "" {
			return "", fmt.Errorf("-secret-file %s is empty: put the webhook secret in it", file)
		}
		return secret, nil
	}
	if secret, _ := e.lookupEnv(secretEnv); secret != "" {
		return secret, nil
	}
	return "", usagef("no secret: set %s or pass -secret-file FILE", secretEnv)
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// required returns a usage error naming the first empty flag; pairs are
// flag name, value, flag name, value...
func required(pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] == "" {
			return usagef("%s is required", pairs[i])
		}
	}
	return nil
}

func readStdin(e env) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(e.stdin, maxStdin+1))
	if err != nil {
		return nil, fmt.Errorf("read standard input: %w", err)
	}
	if len(body) > maxStdin {
		return nil, fmt.Errorf("standard input is larger than %d bytes", maxStdin)
	}
	return body, nil
}
