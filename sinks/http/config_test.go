package httpsink

import (
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/hookbridge/hookbridge/sinks"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// secretOf is a valid secret over n bytes of key.
func secretOf(n int) string {
	return SecretPrefix + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", n)))
}

// TestValidate checks each problem's key and exact message.
func TestValidate(t *testing.T) {
	ok := secretOf(32)
	tests := []struct {
		name string
		cfg  Config
		want []string // "key: problem", in order; none: valid
	}{
		{name: "minimal", cfg: Config{URL: "https://internal.example/browser-use", Secret: ok}},
		{name: "no url: routes name theirs", cfg: Config{Secret: ok}},
		{name: "rotation only", cfg: Config{MoreSecrets: []string{ok, secretOf(24)}}},
		{name: "everything", cfg: Config{URL: "http://u:p@10.0.0.1:8080/h?x=1", Secret: ok, MoreSecrets: []string{secretOf(64)}, Timeout: time.Second,
			Headers: []string{"Authorization: Bearer x", "X-Tenant:acme"}, MaxConcurrency: 2, ContentMode: sinks.Binary,
			TLS: TLSConfig{CAFile: "ca.pem", CertFile: "c.pem", KeyFile: "k.pem"}}},
		{name: "scheme", cfg: Config{URL: "ftp://internal.example/", Secret: ok},
			want: []string{`url: the scheme is "ftp": use http or https, write e.g. https://hooks.example/browser-use`}},
		{name: "no scheme", cfg: Config{URL: "internal.example/hooks", Secret: ok},
			want: []string{`url: the scheme is "": use http or https, write e.g. https://hooks.example/browser-use`}},
		{name: "no host", cfg: Config{URL: "https:///hooks", Secret: ok},
			want: []string{`url: no host: write e.g. https://hooks.example/browser-use`}},
		{name: "unparsable, password not quoted", cfg: Config{URL: "https://u:s3cr3t@host:port/", Secret: ok},
			want: []string{`url: not a URL: write e.g. https://hooks.example/browser-use`}},
		{name: "no secret", cfg: Config{URL: "https://h/"},
			want: []string{`secret: missing: every request is signed per Standard Webhooks; ` + secretHint}},
		{name: "no prefix", cfg: Config{Secret: strings.TrimPrefix(ok, SecretPrefix)},
			want: []string{`secret: not a Standard Webhooks secret (it does not start with "whsec_"): ` + secretHint}},
		{name: "not base64", cfg: Config{Secret: "whsec_not base64!"},
			want: []string{`secret: the part after "whsec_" is not standard, padded base64: ` + secretHint}},
		{name: "short key", cfg: Config{Secret: secretOf(16)},
			want: []string{`secret: the key is 16 bytes long, the Standard Webhooks spec wants 24 to 64: ` + secretHint}},
		{name: "rotation: bad and repeated", cfg: Config{Secret: ok, MoreSecrets: []string{secretOf(65), ok}},
			want: []string{`secrets[0]: the key is 65 bytes long, the Standard Webhooks spec wants 24 to 64: ` + secretHint,
				`secrets[1]: the same key as secret: remove one`}},
		{name: "negative numbers", cfg: Config{Secret: ok, Timeout: -time.Second, MaxConcurrency: -1},
			want: []string{`timeout: -1s: use a positive duration such as 10s`, `max_concurrency: -1: use a positive number of requests, e.g. 16`}},
		{name: "headers", cfg: Config{Secret: ok, Headers: []string{
			"Webhook-Signature: x", "ce-id: x", "Content-Type: text/plain", "traceparent: x", "Bad Name: x",
			"X-Split: a\r\nInjected: 1", "X-Same: a", "x-same: b", "Bearer s3cr3t-t0ken", "X-Empty:", "X-Tab: a\tb", "X-Del: a\x7f"}},
			want: []string{
				`headers[0]: the sink writes the webhook-* headers itself (the Standard Webhooks signature): remove it`,
				`headers[1]: the sink writes the ce-* headers itself (CloudEvents attributes in binary mode): remove it`,
				`headers[2]: the sink (or HTTP itself) sets content-type: remove it`,
				`headers[3]: the sink (or HTTP itself) sets traceparent: remove it`,
				`headers[4]: the name before ":" is not a header name: use letters, digits and - only, e.g. "X-Tenant: acme"`,
				`headers[5]: the value holds a control character (a line break, NUL, ...), which a header cannot carry: remove it`,
				`headers[7]: X-Same is set by headers[6] already (names are case-insensitive): keep one`,
				`headers[8]: not a header: write "Name: value", e.g. "X-Tenant: acme"`,
				`headers[11]: the value holds a control character (a line break, NUL, ...), which a header cannot carry: remove it`,
			}},
		{name: "half a client certificate", cfg: Config{Secret: ok, TLS: TLSConfig{CertFile: "c.pem"}},
			want: []string{`tls: set both cert_file and key_file for a client certificate, or neither`}},
		{name: "content mode", cfg: Config{Secret: ok, ContentMode: "json"},
			want: []string{`content_mode: "json" is not a content mode: use "structured" (the whole CloudEvent as the body) or "binary" (data as the body, attributes as headers)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.cfg
			c.SetDefaults()
			got := sinktest.Problems(t, c.Validate())
			if !slices.Equal(got, tt.want) {
				t.Errorf("Validate:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			for _, secret := range c.Secrets() {
				if len(secret) >= 8 && strings.Contains(strings.Join(got, "\n"), secret) {
					t.Errorf("a problem quotes the secret %q", secret)
				}
			}
		})
	}
}

// TestUserForm decodes the documented form strictly, as the loader does,
// and checks defaults, Describe and Secrets.
func TestUserForm(t *testing.T) {
	secret := secretOf(32)
	doc := `
url: https://internal.example/browser-use
secret: "` + secret + `"
`
	var c Config
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Timeout != DefaultTimeout || c.MaxConcurrency != DefaultMaxConcurrency || c.ContentMode != sinks.Structured {
		t.Errorf("defaults: %+v", c)
	}
	if got, want := c.Describe(), "POST to https://internal.example/browser-use, Standard Webhooks signed, structured CloudEvents"; got != want {
		t.Errorf("Describe() = %q, want %q", got, want)
	}
	if c.DefaultTarget() != "https://internal.example/browser-use" {
		t.Errorf("DefaultTarget() = %q", c.DefaultTarget())
	}
	if err := c.CheckTarget("ws://x/"); err == nil {
		t.Error("CheckTarget accepts a ws:// url")
	}
	if err := c.CheckTarget("https://other.example/hooks"); err != nil {
		t.Errorf("CheckTarget: %v", err)
	}
	var _ sinks.SecretHolder = &c
	if got := c.Secrets(); !slices.Contains(got, secret) || !slices.Contains(got, strings.TrimPrefix(secret, SecretPrefix)) {
		t.Errorf("Secrets() lacks the signing secret: %d values", len(got))
	}
	before := c
	c.SetDefaults()
	if c.Describe() != before.Describe() || c.Timeout != before.Timeout {
		t.Error("SetDefaults is not idempotent")
	}
}

// TestDescribeHidesCredentials: a password, a query and the secrets never
// show in Describe; Secrets returns the credentials to scrub.
func TestDescribeHidesCredentials(t *testing.T) {
	c := Config{URL: "https://user:pa55word@h.example/hooks?token=t0psecret", Secret: secretOf(32), MoreSecrets: []string{secretOf(40)},
		Headers: []string{"Authorization: Bearer t0k3n-value", "X-Api-Key: k3y-value", "X-Tenant: acme"},
		TLS:     TLSConfig{CertFile: "c.pem", KeyFile: "k.pem"}, ContentMode: sinks.Binary}
	c.SetDefaults()
	d := c.Describe()
	if want := "POST to https://user:xxxxx@h.example/hooks?…, Standard Webhooks signed with 2 secrets, client certificate, binary CloudEvents"; d != want {
		t.Errorf("Describe() = %q, want %q", d, want)
	}
	got := c.Secrets()
	for _, want := range []string{"pa55word", "Bearer t0k3n-value", "t0k3n-value", "k3y-value", secretOf(32), secretOf(40)} {
		if !slices.Contains(got, want) {
			t.Errorf("Secrets() lacks %q", want)
		}
	}
	if slices.Contains(got, "acme") {
		t.Error("Secrets() holds a header that is no credential")
	}
}

// TestOpenChecksTLSFiles: Open loads the TLS files and says which key is
// wrong; it sends nothing, with or without skip_probe.
func TestOpenChecksTLSFiles(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		tls     TLSConfig
		wantKey string
	}{
		{"missing ca", TLSConfig{CAFile: filepath.Join(dir, "none.pem")}, "tls.ca_file"},
		{"ca not PEM", TLSConfig{CAFile: notPEM}, "tls.ca_file"},
		{"cert not PEM", TLSConfig{CertFile: notPEM, KeyFile: notPEM}, "tls.cert_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Config{URL: "https://h.example/", Secret: secretOf(32), TLS: tt.tls}
			c.SetDefaults()
			c.WithoutProbe()
			_, err := c.Open(context.Background(), nil, nil)
			ce, ok := errors.AsType[*sinks.ConfigError](err)
			if !ok || ce.Key != tt.wantKey {
				t.Errorf("Open: %v, want a %s ConfigError", err, tt.wantKey)
			}
		})
	}
}
