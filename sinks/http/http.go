// Package httpsink is the sink for HTTP endpoints: each event is POSTed to
// a URL as a CloudEvent (the CloudEvents HTTP binding, structured or
// binary) and signed per Standard Webhooks (https://www.standardwebhooks.com/),
// so that a receiver verifies it with any Standard Webhooks library. It
// sends with net/http only.
package httpsink

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookbridge/hookbridge/sinks"
)

// Defaults of Config, applied by SetDefaults.
const (
	DefaultTimeout        = 10 * time.Second
	DefaultMaxConcurrency = 16
)

// SecretPrefix starts every Standard Webhooks signing secret; the rest is
// the base64 (standard alphabet, padded) of the HMAC key.
const SecretPrefix = "whsec_"

// Bounds on a signing key's length in bytes, as the Standard Webhooks
// spec has them: receivers' libraries may refuse keys outside.
const (
	minKeyLen = 24
	maxKeyLen = 64
)

// answerExcerpt is how much of a refusing answer's body an error quotes.
const answerExcerpt = 512

// drainLimit is how much of an answer's body is read past the excerpt so
// that the connection can carry the next request; a longer one closes it.
const drainLimit = 64 << 10

// Config configures an HTTP sink. SetDefaults fills the zero fields.
type Config struct {
	// URL is the endpoint events are POSTed to when a route names no url:
	// http:// or https://. Default empty: every route must name its url.
	URL string `yaml:"url"`
	// Secret is the Standard Webhooks signing secret, whsec_<base64 of 24
	// to 64 bytes>, given as ${VAR}. Every request is signed with it.
	Secret string `yaml:"secret"`
	// MoreSecrets (key secrets) are more signing secrets, for rotation: each adds a
	// signature, space-separated in webhook-signature, so a receiver
	// verifying with any one of them accepts the request.
	MoreSecrets []string `yaml:"secrets"`
	// Timeout bounds one request, from connecting to the answer's status.
	// Default DefaultTimeout (10s).
	Timeout time.Duration `yaml:"timeout"`
	// Headers are static headers added to every request (an
	// Authorization, a tenant), each written "Name: value" as curl -H
	// takes them. They may not set the headers the sink writes itself:
	// webhook-*, ce-*, content-type, traceparent, ...
	Headers []string `yaml:"headers"`
	// TLS configures https: the CAs to trust and a client certificate.
	TLS TLSConfig `yaml:"tls"`
	// MaxConcurrency bounds the requests in flight to one URL. Default
	// DefaultMaxConcurrency (16).
	MaxConcurrency int `yaml:"max_concurrency"`
	// ContentMode is how events are laid on requests, per the
	// CloudEvents HTTP binding: "structured" (the CloudEvent JSON as the
	// body, content-type application/cloudevents+json) or "binary" (data
	// as the body, attributes as ce- headers). Default "structured".
	ContentMode sinks.ContentMode `yaml:"content_mode"`
	// SkipProbe is accepted for `serve -skip-probe` and changes nothing:
	// the sink sends no request at start (an endpoint has no harmless
	// one), and what it checks, the URL and the TLS files, needs no
	// network.
	SkipProbe bool `yaml:"skip_probe"`
}

// TLSConfig configures TLS to the endpoints.
type TLSConfig struct {
	// CAFile is a PEM bundle of the certificate authorities that signed
	// the endpoints' certificates. Default: the system's roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a PEM client certificate and its key, for
	// endpoints that require mutual TLS. Set both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// SetDefaults fills zero fields with their defaults. It is idempotent.
func (c *Config) SetDefaults() {
	c.ContentMode.SetDefault()
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxConcurrency == 0 {
		c.MaxConcurrency = DefaultMaxConcurrency
	}
}

// Secrets returns the signing secrets, a password in the URL and the
// values of the headers that carry credentials. It implements
// sinks.SecretHolder.
func (c *Config) Secrets() []string {
	var out []string
	for _, s := range c.signingSecrets() {
		out = append(out, s, strings.TrimPrefix(s, SecretPrefix))
	}
	if u, err := url.Parse(c.URL); err == nil && u.User != nil {
		if p, ok := u.User.Password(); ok {
			out = append(out, p)
		}
	}
	for _, h := range c.Headers {
		name, v, _ := splitHeader(h)
		if credentialHeader(name) {
			out = append(out, v)
			// "Bearer <token>": the token alone may show too.
			if _, token, ok := strings.Cut(v, " "); ok {
				out = append(out, token)
			}
		}
	}
	return out
}

// credentialHeader reports whether a header of that name carries a
// credential.
func credentialHeader(name string) bool {
	n := strings.ToLower(name)
	if n == "authorization" || n == "proxy-authorization" || n == "cookie" {
		return true
	}
	for _, w := range []string{"token", "secret", "key", "auth", "password", "signature", "session", "credential"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// signingSecrets is secret followed by secrets, the empty left out.
func (c *Config) signingSecrets() []string {
	var out []string
	if c.Secret != "" {
		out = append(out, c.Secret)
	}
	for _, s := range c.MoreSecrets {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

const secretHint = `write "whsec_" followed by the base64 of 24 to 64 random bytes, e.g. the output of: echo "whsec_$(openssl rand -base64 32)", given as "${VAR}"`

// signingKey decodes a whsec_ secret into its HMAC key. Its errors never
// quote the secret.
func signingKey(secret string) ([]byte, error) {
	b64, ok := strings.CutPrefix(secret, SecretPrefix)
	if !ok {
		return nil, fmt.Errorf("not a Standard Webhooks secret (it does not start with %q): %s", SecretPrefix, secretHint)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("the part after %q is not standard, padded base64: %s", SecretPrefix, secretHint)
	}
	if len(key) < minKeyLen || len(key) > maxKeyLen {
		return nil, fmt.Errorf("the key is %d bytes long, the Standard Webhooks spec wants %d to %d: %s", len(key), minKeyLen, maxKeyLen, secretHint)
	}
	return key, nil
}

// reservedHeaders are the headers the sink writes itself (or net/http
// does), which headers may not set; webhook-* and ce-* are reserved too.
var reservedHeaders = []string{"content-type", "content-length", "transfer-encoding", "host", "connection", "traceparent", "tracestate"}

// splitHeader splits "Name: value" into the name and the value without
// the spaces around it.
func splitHeader(h string) (name, value string, ok bool) {
	name, value, ok = strings.Cut(h, ":")
	return name, strings.Trim(value, " \t"), ok
}

// checkHeader says what is wrong with a static header, nil if nothing.
// It quotes no value, nor a name it cannot read, which might be a
// credential written in the wrong place.
func checkHeader(h string) error {
	name, value, ok := splitHeader(h)
	n := strings.ToLower(name)
	switch {
	case !ok:
		return errors.New(`not a header: write "Name: value", e.g. "X-Tenant: acme"`)
	case !validHeaderName(name):
		return errors.New(`the name before ":" is not a header name: use letters, digits and - only, e.g. "X-Tenant: acme"`)
	case strings.HasPrefix(n, "webhook-"):
		return errors.New("the sink writes the webhook-* headers itself (the Standard Webhooks signature): remove it")
	case strings.HasPrefix(n, "ce-"):
		return errors.New("the sink writes the ce-* headers itself (CloudEvents attributes in binary mode): remove it")
	case slices.Contains(reservedHeaders, n):
		return fmt.Errorf("the sink (or HTTP itself) sets %s: remove it", n)
	case strings.ContainsFunc(value, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }):
		return errors.New("the value holds a control character (a line break, NUL, ...), which a header cannot carry: remove it")
	}
	return nil
}

// validHeaderName reports whether name is an HTTP token.
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		if r >= 0x80 || !strings.ContainsRune("!#$%&'*+-.^_`|~", r) && !('0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z') {
			return false
		}
	}
	return true
}

// CheckURL checks that s is an http:// or https:// URL with a host. Its
// errors never quote s, which may hold a password.
func CheckURL(s string) error {
	_, err := parseURL(s)
	return err
}

const urlHint = "write e.g. https://hooks.example/browser-use"

func parseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("not a URL: %s", urlHint)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("the scheme is %q: use http or https, %s", u.Scheme, urlHint)
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("no host: %s", urlHint)
	}
	return u, nil
}

// display is u as errors and logs show it: without a password or the
// query, which may hold a token.
func display(u *url.URL) string {
	c := *u
	query := c.RawQuery != "" || c.ForceQuery
	c.RawQuery, c.ForceQuery, c.Fragment, c.RawFragment = "", false, "", ""
	s := c.Redacted()
	if query {
		s += "?…"
	}
	return s
}

// displayString is display of a URL given as text.
func displayString(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(an invalid URL)"
	}
	return display(u)
}

// Validate reports every problem in c (after SetDefaults) as
// *sinks.ConfigError values.
func (c *Config) Validate() error {
	var errs []error
	if c.URL != "" {
		if err := CheckURL(c.URL); err != nil {
			errs = append(errs, sinks.Problemf("url", "%v", err))
		}
	}
	if c.Secret == "" && len(c.MoreSecrets) == 0 {
		errs = append(errs, sinks.Problemf("secret", "missing: every request is signed per Standard Webhooks; %s", secretHint))
	}
	seen := map[string]string{} // key -> config key of its first
	check := func(key, secret string) {
		k, err := signingKey(secret)
		if err != nil {
			errs = append(errs, sinks.Problemf(key, "%v", err))
			return
		}
		if first, dup := seen[string(k)]; dup {
			errs = append(errs, sinks.Problemf(key, "the same key as %s: remove one", first))
			return
		}
		seen[string(k)] = key
	}
	if c.Secret != "" {
		check("secret", c.Secret)
	}
	for i, s := range c.MoreSecrets {
		check(fmt.Sprintf("secrets[%d]", i), s)
	}
	if c.Timeout < 0 {
		errs = append(errs, sinks.Problemf("timeout", "%v: use a positive duration such as 10s", c.Timeout))
	}
	if c.MaxConcurrency < 0 {
		errs = append(errs, sinks.Problemf("max_concurrency", "%d: use a positive number of requests, e.g. %d", c.MaxConcurrency, DefaultMaxConcurrency))
	}
	names := map[string]string{} // canonical name -> key of its first
	for i, h := range c.Headers {
		key := fmt.Sprintf("headers[%d]", i)
		if err := checkHeader(h); err != nil {
			errs = append(errs, sinks.Problemf(key, "%v", err))
			continue
		}
		name, _, _ := splitHeader(h)
		canon := http.CanonicalHeaderKey(name)
		if first, dup := names[canon]; dup {
			errs = append(errs, sinks.Problemf(key, "%s is set by %s already (names are case-insensitive): keep one", canon, first))
			continue
		}
		names[canon] = key
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		errs = append(errs, sinks.Problemf("tls", "set both cert_file and key_file for a client certificate, or neither"))
	}
	errs = append(errs, c.ContentMode.Check("content_mode"))
	return errors.Join(errs...)
}

// tlsConfig loads the TLS files; nil when none is set.
func (c *Config) tlsConfig() (*tls.Config, error) {
	t := c.TLS
	if t == (TLSConfig{}) {
		return nil, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if err := sinks.LoadTLSFiles(conf, t.CAFile, t.CertFile, t.KeyFile); err != nil {
		return nil, err
	}
	return conf, nil
}

// Sink POSTs messages to HTTP endpoints. It is safe for concurrent use.
type Sink struct {
	cfg     Config
	keys    [][]byte // the signing keys, in the order of cfg's secrets
	headers http.Header
	client  *http.Client
	tr      *http.Transport
	limits  limiter
	log     *slog.Logger
	closed  atomic.Bool
	// structuredOnce logs, once, that binary mode sent an event
	// structured because a header cannot carry one of its attributes.
	structuredOnce sync.Once
	// now is the clock of webhook-timestamp and Retry-After dates.
	now func() time.Time
}

// New checks cfg, loads its TLS files and returns the sink. It sends
// nothing: an HTTP endpoint has no request that is harmless to probe it
// with.
func New(cfg Config, log *slog.Logger) (*Sink, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tlsConf, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	s := &Sink{cfg: cfg, log: log, headers: http.Header{}, now: time.Now}
	for _, secret := range cfg.signingSecrets() {
		k, _ := signingKey(secret) // Validate checked it
		s.keys = append(s.keys, k)
	}
	s.headers.Set("User-Agent", "hookbridge")
	for _, h := range cfg.Headers {
		name, v, _ := splitHeader(h)
		s.headers.Set(name, v)
	}
	s.tr = http.DefaultTransport.(*http.Transport).Clone()
	s.tr.MaxIdleConnsPerHost = cfg.MaxConcurrency
	if tlsConf != nil {
		s.tr.TLSClientConfig = tlsConf
	}
	s.client = &http.Client{
		Transport: s.tr,
		// A redirect is not followed: net/http would resend a 301/302/303
		// as a GET without the body, and a 307/308 would take the signed
		// event to another address than the one configured.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	s.limits.perURL = cfg.MaxConcurrency
	return s, nil
}

var errClosed = errors.New("http: the sink is closed")

// Publish implements sinks.Sink: each message is one POST, sent
// concurrently with the others, at most max_concurrency in flight to one
// URL. A message is confirmed by a 2xx answer. 408, 425, 429, 5xx, a
// redirect, a timeout or a connection error fail it for a retry (with
// the answer's Retry-After, see sinks.RetryAfter); any other 4xx fails it
// for good (sinks.Permanent), quoting the status and the start of the
// answer. With ctx already done it sends nothing.
func (s *Sink) Publish(ctx context.Context, batch []sinks.Message) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("http: not sent: %w", err)
	}
	if s.closed.Load() {
		return errClosed
	}
	errs := make([]error, len(batch))
	if len(batch) == 1 {
		errs[0] = s.send(ctx, &batch[0])
	} else {
		var wg sync.WaitGroup
		for i := range batch {
			wg.Go(func() { errs[i] = s.send(ctx, &batch[i]) })
		}
		wg.Wait()
	}
	var failed map[int]error
	for i, err := range errs {
		if err != nil {
			if failed == nil {
				failed = map[int]error{}
			}
			failed[i] = err
		}
	}
	if failed != nil {
		return &sinks.BatchError{Failed: failed}
	}
	return nil
}

var (
	errNoURL = errors.New("http: no url: name one in the route or set the sink's url")
	errNoID  = errors.New("http: the message has no event id to sign as webhook-id")
)

// send POSTs m and classifies the outcome.
func (s *Sink) send(ctx context.Context, m *sinks.Message) error {
	target := m.Target
	if target == "" {
		target = s.cfg.URL
	}
	if target == "" {
		return sinks.Permanent(errNoURL)
	}
	u, err := parseURL(target)
	if err != nil {
		return sinks.Permanent(fmt.Errorf("http: target url: %w", err))
	}
	where := display(u)
	if m.ID == "" {
		return sinks.Permanent(errNoID)
	}
	body, h, err := s.request(m, where)
	if err != nil {
		return sinks.Permanent(fmt.Errorf("http: POST %s: %w", where, err))
	}

	release, err := s.limits.acquire(ctx, u.String())
	if err != nil {
		return fmt.Errorf("http: POST %s: not sent, waiting for a free slot: %w", where, err)
	}
	defer release()

	reqCtx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return sinks.Permanent(fmt.Errorf("http: POST %s: %v", where, err))
	}
	req.Header = h
	// Signed at send, so that a retry carries a fresh timestamp that a
	// receiver's tolerance (5 minutes in the libraries) accepts.
	s.sign(h, m.ID, body)

	resp, err := s.client.Do(req)
	if err != nil {
		return s.transportErr(ctx, reqCtx, where, err)
	}
	defer resp.Body.Close()
	return s.outcome(where, u, resp)
}

// request builds m's body and headers in the sink's content mode. In
// either mode the plain "traceparent" and "tracestate" headers carry the
// publish's trace context (Message.Trace, the producer span's when
// hookbridge traces), else the event's.
//
// A binary request whose attribute a header cannot carry as it is goes
// structured, which its content-type says: the HTTP binding requires
// percent-encoding a value holding a space, '"', '%' or anything outside
// printable ASCII, and the official Go SDK's reader (v2.16) does not
// decode it, so no encoding reaches every reader unchanged.
func (s *Sink) request(m *sinks.Message, where string) ([]byte, http.Header, error) {
	h := s.headers.Clone()
	binary := s.cfg.ContentMode == sinks.Binary
	if binary && !headersCarry(m.Attrs) {
		binary = false
		s.structuredOnce.Do(func() {
			s.log.Warn("http: an event has an attribute an HTTP header cannot carry unchanged (empty, or holding a space, '\"', '%' or a character outside printable ASCII); it and any like it go structured, as their content-type header says",
				"url", where)
		})
	}
	body := m.Body
	if binary {
		data, err := m.Data()
		if err != nil {
			return nil, nil, err
		}
		body = data
		for _, a := range m.Attrs {
			if a.Name == "datacontenttype" {
				h["content-type"] = []string{a.Value}
			} else {
				h["ce-"+a.Name] = []string{a.Value}
			}
		}
	} else {
		h["content-type"] = []string{sinks.StructuredContentType}
	}
	// The W3C trace context under its own names, where tracers look: the
	// publish's (see sinks.Message.Trace), while ce-traceparent stays the
	// event's.
	for _, a := range m.TraceHeaders() {
		if a.Value != "" {
			h[a.Name] = []string{a.Value}
		}
	}
	return body, h, nil
}

// headersCarry reports whether every attribute value goes in an HTTP
// header unchanged and needs no percent-encoding: non-empty printable
// ASCII without space, '"' or '%'.
func headersCarry(attrs []sinks.Attr) bool {
	for _, a := range attrs {
		if a.Value == "" {
			return false
		}
		for i := 0; i < len(a.Value); i++ {
			if c := a.Value[i]; c <= ' ' || c >= 0x7f || c == '"' || c == '%' {
				return false
			}
		}
	}
	return true
}

// sign sets the Standard Webhooks headers of a request with body for the
// event id: webhook-id, webhook-timestamp (now, in Unix seconds) and
// webhook-signature, one "v1,<base64 HMAC-SHA256>" of
// "<id>.<timestamp>.<body>" per signing key, space-separated.
func (s *Sink) sign(h http.Header, id string, body []byte) {
	ts := strconv.FormatInt(s.now().Unix(), 10)
	sigs := make([]string, len(s.keys))
	for i, k := range s.keys {
		mac := hmac.New(sha256.New, k)
		mac.Write([]byte(id))
		mac.Write([]byte{'.'})
		mac.Write([]byte(ts))
		mac.Write([]byte{'.'})
		mac.Write(body)
		sigs[i] = "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	}
	h["webhook-id"] = []string{id}
	h["webhook-timestamp"] = []string{ts}
	h["webhook-signature"] = []string{strings.Join(sigs, " ")}
}

// transportErr words a request that got no answer: all retryable. ctx
// done wraps its error (nothing is confirmed); the sink's own timeout
// says so.
func (s *Sink) transportErr(ctx, reqCtx context.Context, where string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // its text repeats the URL, which may hold a password
	}
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("http: POST %s: no answer: %w", where, ctx.Err())
	case errors.Is(reqCtx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("http: POST %s: no answer within the timeout, %v: %w", where, s.cfg.Timeout, context.DeadlineExceeded)
	}
	// A certificate this side refuses, or a TLS alert from the endpoint
	// (no client certificate, one it does not trust).
	var (
		verify *tls.CertificateVerificationError
		op     *net.OpError
	)
	if errors.As(err, &verify) || errors.As(err, &op) && op.Op == "remote error" {
		return fmt.Errorf("http: POST %s: %v; check the sink's tls settings (ca_file, cert_file, key_file)", where, err)
	}
	return fmt.Errorf("http: POST %s: %v; is the endpoint up?", where, err)
}

// outcome classifies an answer. Only a 2xx confirms.
func (s *Sink) outcome(where string, u *url.URL, resp *http.Response) error {
	code := resp.StatusCode
	if code >= 200 && code <= 299 {
		// Read the rest so the connection carries the next request.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
		return nil
	}
	head, _ := io.ReadAll(io.LimitReader(resp.Body, answerExcerpt))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
	err := fmt.Errorf("http: POST %s: the endpoint answered %s", where, resp.Status)
	if len(head) > 0 {
		err = fmt.Errorf("%w: %q", err, head)
	}
	switch {
	case code >= 300 && code <= 399:
		// Not followed (see New): a moved endpoint needs its new url in
		// the config, and the event waits for it in the spool.
		loc := "nowhere"
		if l, lerr := u.Parse(resp.Header.Get("Location")); lerr == nil && resp.Header.Get("Location") != "" {
			loc = display(l)
		}
		return fmt.Errorf("%w; redirects are not followed: set the url to where it points (%s)", err, loc)
	case code >= 400 && code <= 499 && code != http.StatusRequestTimeout && code != http.StatusTooEarly && code != http.StatusTooManyRequests:
		return sinks.Permanent(err)
	}
	if d, ok := retryAfter(resp.Header.Get("Retry-After"), s.now()); ok {
		return sinks.RetryLater(fmt.Errorf("%w (retry after %v)", err, d), d)
	}
	return err
}

// maxRetryAfter caps a Retry-After so that a hostile or mistaken answer
// cannot overflow a duration.
const maxRetryAfter = 7 * 24 * time.Hour

// retryAfter reads a Retry-After value: delay-seconds or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseUint(v, 10, 64); err == nil || errors.Is(err, strconv.ErrRange) {
		if err != nil || n > uint64(maxRetryAfter/time.Second) {
			return maxRetryAfter, true
		}
		return time.Duration(n) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), maxRetryAfter), true
	}
	return 0, false
}

// Close implements sinks.Sink. Publish waits for its answers, so nothing
// is left to flush: Close drops the idle connections.
func (s *Sink) Close(context.Context) error {
	s.closed.Store(true)
	s.tr.CloseIdleConnections()
	return nil
}

// limiter bounds the requests in flight per URL. A URL's slot set lives
// while a request to it waits or runs, so templated URLs do not pile up.
type limiter struct {
	perURL int
	mu     sync.Mutex
	slots  map[string]*slots
}

type slots struct {
	sem   chan struct{}
	users int
}

// acquire takes a slot for url, waiting for one while ctx lasts.
func (l *limiter) acquire(ctx context.Context, url string) (release func(), err error) {
	l.mu.Lock()
	if l.slots == nil {
		l.slots = map[string]*slots{}
	}
	sl := l.slots[url]
	if sl == nil {
		sl = &slots{sem: make(chan struct{}, l.perURL)}
		l.slots[url] = sl
	}
	sl.users++
	l.mu.Unlock()
	leave := func() {
		l.mu.Lock()
		if sl.users--; sl.users == 0 {
			delete(l.slots, url)
		}
		l.mu.Unlock()
	}
	select {
	case sl.sem <- struct{}{}:
		return func() { <-sl.sem; leave() }, nil
	case <-ctx.Done():
		leave()
		return nil, ctx.Err()
	}
}
