// Package sqs is the sink for Amazon SQS and SQS-compatible services
// (LocalStack, ElasticMQ, ...). Publish returns only once SQS answered
// with a MessageId for every message it counts as sent.
//
// CloudEvents defines no SQS binding, so hookbridge uses this mapping,
// modelled on the Kafka binding, in the sink's content_mode (see
// buildEntry):
//
//   - structured: the body is the CloudEvent JSON, unchanged, and the
//     String message attribute "content-type" is
//     "application/cloudevents+json; charset=utf-8", beside "traceparent"
//     and "tracestate": the publish's trace context (Message.Trace, the
//     producer span's when hookbridge traces), else the event's.
//   - binary: the body is the event's data, "content-type" its
//     datacontenttype, and every other attribute a String attribute
//     "ce_<name>". An event SQS cannot carry so (more than 10
//     attributes, an empty one, or a character SQS rejects) goes
//     structured instead, as its content-type says.
//   - On a FIFO queue (URL ending in ".fifo"): MessageGroupId is the task
//     id (Message.Key), or "no-task" when there is none, so the events of
//     one task are delivered in order; MessageDeduplicationId is the
//     event's stable id (Message.ID), so SQS drops a resent event within
//     its 5-minute deduplication window. A message with no id is sent
//     without one, which only a queue with ContentBasedDeduplication
//     accepts. A task id or event id SQS would reject (over 128
//     characters, or other than printable ASCII) is replaced by its hex
//     SHA-256.
//
// A message is at most 256 KiB, counting its body and its attributes'
// names, types and values; a larger one fails alone with ErrTooLarge.
package sqs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/hookbridge/hookbridge/sinks"
)

// DefaultEndpointRegion is region's default, with an endpoint set, when
// neither the AWS environment nor a queue URL names one: an SQS-compatible
// service ignores the region, but requests are signed for one.
const DefaultEndpointRegion = "us-east-1"

// Config configures an SQS sink. SetDefaults fills the zero fields.
//
// Credentials come from the AWS SDK's default chain: environment
// (AWS_ACCESS_KEY_ID, ...), shared config and credentials files
// (AWS_PROFILE), web identity (EKS IRSA), ECS task role or EC2 instance
// role. AccessKeyID and SecretAccessKey override the chain, for
// SQS-compatible services.
type Config struct {
	// QueueURL is the queue for messages whose route names none, e.g.
	// https://sqs.eu-west-1.amazonaws.com/123456789012/tasks (or
	// .../tasks.fifo for a FIFO queue). Default empty: every route must
	// name its queue_url.
	QueueURL string `yaml:"queue_url"`
	// Region is the AWS region. Default: the SDK's (AWS_REGION,
	// AWS_DEFAULT_REGION, the shared config file), else the region in the
	// host of an AWS queue URL (sqs.<region>.amazonaws.com), else
	// DefaultEndpointRegion (us-east-1) when Endpoint is set. New
	// applies it: SetDefaults cannot see the AWS environment. A queue URL
	// naming another AWS region is sent to that region.
	Region string `yaml:"region"`
	// Endpoint is the base URL of an SQS-compatible service, e.g.
	// http://localhost:4566 for LocalStack. Default empty: AWS's endpoint
	// for Region (or AWS_ENDPOINT_URL_SQS / AWS_ENDPOINT_URL if set).
	// Requests go to Endpoint whatever host the queue URLs name.
	Endpoint string `yaml:"endpoint"`
	// AccessKeyID, SecretAccessKey and SessionToken are static
	// credentials. Default empty: the SDK's default chain. Give them as
	// ${VAR}; they never appear in logs or errors.
	AccessKeyID     string `yaml:"access_key_id"`
	SecretAccessKey string `yaml:"secret_access_key"`
	SessionToken    string `yaml:"session_token"`
	// SkipProbe starts without contacting SQS. Default false: New checks
	// (GetQueueAttributes) that every queue known at start-up exists and
	// is reachable, and fails with a clear error otherwise.
	SkipProbe bool `yaml:"skip_probe"`
	// ContentMode is how events are laid on messages: "structured" (the
	// CloudEvent JSON as the body, content-type attribute
	// application/cloudevents+json) or "binary" (data as the body,
	// attributes as ce_ message attributes; an event with more than SQS's
	// ten goes structured). Default "structured".
	ContentMode sinks.ContentMode `yaml:"content_mode"`
}

// Secrets returns the static secret key and session token. It implements
// sinks.SecretHolder.
func (c *Config) Secrets() []string { return []string{c.SecretAccessKey, c.SessionToken} }

// SetDefaults fills zero fields with their defaults. It is idempotent.
// Region's default depends on the AWS environment, which only New reads,
// so New applies it (see Region); SetDefaults only trims stray spaces
// around the URLs and the region.
func (c *Config) SetDefaults() {
	c.QueueURL = strings.TrimSpace(c.QueueURL)
	c.Region = strings.TrimSpace(c.Region)
	c.Endpoint = strings.TrimSpace(c.Endpoint)
	c.ContentMode.SetDefault()
}

// Validate reports every problem in c (after SetDefaults) as
// *sinks.ConfigError values. It never prints a credential.
func (c *Config) Validate() error {
	var errs []error
	if c.QueueURL != "" {
		if err := checkQueueURL(c.QueueURL); err != nil {
			errs = append(errs, sinks.Problemf("queue_url", "%v", err))
		}
	}
	if c.Region != "" && !validRegion(c.Region) {
		errs = append(errs, sinks.Problemf("region", "%q is not a region: write e.g. us-east-1", c.Region))
	}
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		switch {
		case err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https"):
			errs = append(errs, sinks.Problemf("endpoint", "%q is not an http(s) URL: write e.g. http://localhost:4566", redactURL(c.Endpoint)))
		case u.User != nil:
			errs = append(errs, sinks.Problemf("endpoint", "%q holds credentials: remove them and use access_key_id and secret_access_key", redactURL(c.Endpoint)))
		}
	}
	switch {
	case c.AccessKeyID != "" && c.SecretAccessKey == "":
		errs = append(errs, sinks.Problemf("secret_access_key", "missing: access_key_id needs secret_access_key (or remove both to use the default credential chain)"))
	case c.AccessKeyID == "" && c.SecretAccessKey != "":
		errs = append(errs, sinks.Problemf("access_key_id", "missing: secret_access_key needs access_key_id (or remove both to use the default credential chain)"))
	}
	if c.SessionToken != "" && (c.AccessKeyID == "" || c.SecretAccessKey == "") {
		errs = append(errs, sinks.Problemf("session_token", "a session token needs access_key_id and secret_access_key"))
	}
	if err := c.ContentMode.Check("content_mode"); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// checkQueueURL checks that raw is an http(s) URL with a queue path.
func checkQueueURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("%q is not an http(s) URL: write the queue's URL, e.g. https://sqs.us-east-1.amazonaws.com/123456789012/tasks", redactURL(raw))
	}
	if strings.Trim(u.Path, "/") == "" {
		return fmt.Errorf("%q names no queue: write the queue's URL, e.g. https://sqs.us-east-1.amazonaws.com/123456789012/tasks", redactURL(raw))
	}
	return nil
}

// CheckQueueURL reports whether raw can be a queue URL; config loaders use
// it for the queue_url of routes.
func CheckQueueURL(raw string) error { return checkQueueURL(strings.TrimSpace(raw)) }

// redactURL drops user info from a URL.
func redactURL(s string) string {
	if at := strings.LastIndexByte(s, '@'); at >= 0 {
		if scheme := strings.Index(s, "://"); scheme >= 0 && scheme < at {
			return s[:scheme+3] + s[at+1:]
		}
		return s[at+1:]
	}
	return s
}

func validRegion(r string) bool {
	if r == "" || len(r) > 64 {
		return false
	}
	for i := 0; i < len(r); i++ {
		c := r[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// regionFromQueueURL returns the region in the host of an AWS queue URL
// (https://sqs.<region>.amazonaws.com/..., or the legacy
// <region>.queue.amazonaws.com), or "".
func regionFromQueueURL(raw string) string {
	host := raw
	if i := strings.Index(host, "://"); i >= 0 {
		host = host[i+3:]
	}
	if i := strings.IndexByte(host, '/'); i >= 0 {
		host = host[:i]
	}
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	host = strings.ToLower(host)
	var rest string
	for _, suffix := range []string{".amazonaws.com", ".amazonaws.com.cn"} {
		if r, ok := strings.CutSuffix(host, suffix); ok {
			rest = r
			break
		}
	}
	if rest == "" {
		return ""
	}
	if r, ok := strings.CutPrefix(rest, "sqs."); ok && validRegion(r) && !strings.Contains(r, ".") {
		return r
	}
	if r, ok := strings.CutSuffix(rest, ".queue"); ok && validRegion(r) {
		return r
	}
	if rest == "queue" {
		return "us-east-1"
	}
	return ""
}

// isFIFO reports whether queueURL names a FIFO queue.
func isFIFO(queueURL string) bool { return strings.HasSuffix(queueURL, ".fifo") }

// Limits SQS sets on SendMessageBatch.
const (
	maxEntries    = 10         // entries per request
	maxBatchBytes = 256 * 1024 // payload per message and per request
	maxAttrs      = 10         // message attributes per message
)

// noTaskGroup is the MessageGroupId of messages with no task id.
const noTaskGroup = "no-task"

var (
	// ErrTooLarge is the error of a message over SQS's 256 KiB limit.
	// Retrying cannot help.
	ErrTooLarge = errors.New("too large for sqs")
	// ErrInvalidChars is the error of a message whose body or attribute
	// value holds characters SQS rejects. Retrying cannot help.
	ErrInvalidChars = errors.New("holds characters sqs rejects")
	// ErrNoQueue is the error of a message with no queue: its route names
	// no queue_url and the sink has none.
	ErrNoQueue = errors.New("no queue: name a queue_url in the route or set the sink's queue_url")

	errClosed = errors.New("sqs: sink is closed")
)

// SendError is the error SQS returned for one message of a batch.
type SendError struct {
	QueueURL    string
	Code        string // e.g. "InvalidParameterValue"
	Message     string
	SenderFault bool // the message itself was at fault: resending it unchanged fails again
}

func (e *SendError) Error() string {
	fault := "sqs fault"
	if e.SenderFault {
		fault = "sender fault"
	}
	return fmt.Sprintf("sqs: send to %q: %s: %s (%s)", e.QueueURL, e.Code, e.Message, fault)
}

// Sink publishes to SQS. It is safe for concurrent use.
type Sink struct {
	cfg       Config
	client    *awssqs.Client
	region    string          // the client's region
	transport *http.Transport // closed by Close
	log       *slog.Logger
	requests  atomic.Int64
	// structuredOnce logs, once, that binary mode sent a message
	// structured because its attributes do not fit.
	structuredOnce sync.Once
	messages       atomic.Int64

	// mu guards the fields below and the coalescers' and units' state.
	// One lock for all: it is held only to queue or take a few pointers.
	mu     sync.Mutex
	closed bool
	busy   int                   // Publish calls and requests in progress
	idle   chan struct{}         // made by Close, closed when busy drops to 0
	queues map[string]*coalescer // by queue URL; dropped when unused
}

// Stats counts the sink's SendMessageBatch requests.
type Stats struct {
	Requests int64 // SendMessageBatch calls made
	Messages int64 // entries those calls sent
}

// Stats returns the counts since New.
func (s *Sink) Stats() Stats {
	return Stats{Requests: s.requests.Load(), Messages: s.messages.Load()}
}

// New loads the AWS configuration and, unless cfg.SkipProbe, checks that
// each queue of queueURLs (the queues routes name without template
// variables) and cfg.QueueURL exists. log receives the sink's warnings.
func New(ctx context.Context, cfg Config, queueURLs []string, log *slog.Logger) (*Sink, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	queues := make([]string, 0, len(queueURLs)+1)
	seen := map[string]bool{}
	for _, q := range append([]string{cfg.QueueURL}, queueURLs...) {
		q = strings.TrimSpace(q)
		if q == "" || seen[q] {
			continue
		}
		seen[q] = true
		if err := checkQueueURL(q); err != nil {
			return nil, fmt.Errorf("sqs: %v", err)
		}
		queues = append(queues, q)
	}

	var opts []func(*awsconfig.LoadOptions) error
	if cfg.Region != "" {
		opts = append(opts, awsconfig.WithRegion(cfg.Region))
	}
	if cfg.AccessKeyID != "" {
		opts = append(opts, awsconfig.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken)))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		// The loader's errors name files and profiles, not secrets.
		return nil, fmt.Errorf("sqs: load the AWS configuration: %w", err)
	}
	// Own the transport (as configured by the loader, e.g. with
	// AWS_CA_BUNDLE) so that Close can release its connections.
	bc, ok := awsCfg.HTTPClient.(*awshttp.BuildableClient)
	if !ok {
		bc = awshttp.NewBuildableClient()
	}
	tr := bc.GetTransport()
	tr.MaxIdleConnsPerHost = 64 // concurrent webhooks all talk to one host
	awsCfg.HTTPClient = &http.Client{
		Transport:     tr,
		Timeout:       bc.GetTimeout(),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	if awsCfg.Region == "" {
		for _, q := range queues {
			if r := regionFromQueueURL(q); r != "" {
				awsCfg.Region = r
				break
			}
		}
	}
	if awsCfg.Region == "" {
		if cfg.Endpoint == "" {
			return nil, sinks.Problemf("region", "missing: set region (e.g. us-east-1) or AWS_REGION; it cannot be read from the queue URLs")
		}
		// A compatible service ignores the region, but SigV4 needs one.
		awsCfg.Region = DefaultEndpointRegion
	}
	s := &Sink{cfg: cfg, region: awsCfg.Region, transport: tr, log: log}
	s.client = awssqs.NewFromConfig(awsCfg, func(o *awssqs.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
	})
	log.Debug("sqs: configured", "region", s.region, "endpoint", cfg.Endpoint, "queues", len(queues), "skip_probe", cfg.SkipProbe)
	if cfg.SkipProbe {
		return s, nil
	}
	for _, q := range queues {
		if err := s.probe(ctx, q); err != nil {
			tr.CloseIdleConnections()
			return nil, err
		}
	}
	return s, nil
}

// probe checks that queueURL exists and that the credentials may read it.
func (s *Sink) probe(ctx context.Context, queueURL string) error {
	_, err := s.client.GetQueueAttributes(ctx, &awssqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(queueURL),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn},
	}, s.queueRegion(queueURL))
	if err == nil {
		return nil
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode() == "QueueDoesNotExist" || apiErr.ErrorCode() == "AWS.SimpleQueueService.NonExistentQueue") {
		return fmt.Errorf("sqs: queue %q does not exist (region %s): %w; create it or fix the queue_url (or set skip_probe: true if it comes up later)", queueURL, s.regionFor(queueURL), err)
	}
	return fmt.Errorf("sqs: cannot reach queue %q (region %s): %w; check the endpoint, region and credentials (or set skip_probe: true if it comes up later)", queueURL, s.regionFor(queueURL), err)
}

// regionFor is the region requests for queueURL are sent to.
func (s *Sink) regionFor(queueURL string) string {
	if s.cfg.Endpoint == "" {
		if r := regionFromQueueURL(queueURL); r != "" {
			return r
		}
	}
	return s.region
}

// queueRegion returns the per-request option that sends requests for an
// AWS queue URL of another region to that region's endpoint.
func (s *Sink) queueRegion(queueURL string) func(*awssqs.Options) {
	r := s.regionFor(queueURL)
	if r == s.region {
		return func(*awssqs.Options) {}
	}
	return func(o *awssqs.Options) { o.Region = r }
}

// entry is one message ready to send.
type entry struct {
	index int // in the batch
	size  int
	req   types.SendMessageBatchRequestEntry
}

// queueBatch is the part of a Publish batch bound for one queue.
type queueBatch struct {
	url     string
	entries []entry
}

// failures collects per-message errors from concurrent senders.
type failures struct {
	mu     sync.Mutex
	failed map[int]error
}

func (f *failures) add(i int, err error) {
	f.mu.Lock()
	if f.failed == nil {
		f.failed = map[int]error{}
	}
	f.failed[i] = err
	f.mu.Unlock()
}

// Publish implements sinks.Sink. It groups the batch by queue and sends
// each queue's messages with SendMessageBatch, in order, in requests of at
// most 10 messages and 256 KiB; different queues are sent to at once. A
// queue's messages that fit one request may share it with those of
// concurrent Publish calls (see coalescer). A message fails alone when it
// has no queue, is too large, or SQS rejects it. On a FIFO queue the
// messages of one task keep their batch order; a failed message that is
// retried later lands after the ones sent.
func (s *Sink) Publish(ctx context.Context, batch []sinks.Message) error {
	if !s.enter() {
		return errClosed
	}
	defer s.leave()
	var f failures
	var queues []queueBatch
	for i := range batch {
		m := &batch[i]
		q := m.Target
		if q == "" {
			q = s.cfg.QueueURL
		}
		if q == "" {
			f.add(i, sinks.Permanent(fmt.Errorf("sqs: %w", ErrNoQueue)))
			continue
		}
		e, err := s.buildEntry(i, m, isFIFO(q))
		if err != nil {
			f.add(i, sinks.Permanent(fmt.Errorf("sqs: message for %q: %w", q, err)))
			continue
		}
		found := false
		for j := range queues {
			if queues[j].url == q {
				queues[j].entries = append(queues[j].entries, e)
				found = true
				break
			}
		}
		if !found {
			queues = append(queues, queueBatch{url: q, entries: []entry{e}})
		}
	}
	// The last queue is sent from this goroutine: the common single-queue
	// batch starts none.
	var wg sync.WaitGroup
	for j := range len(queues) - 1 {
		wg.Go(func() { s.sendQueue(ctx, queues[j], &f) })
	}
	if len(queues) > 0 {
		s.sendQueue(ctx, queues[len(queues)-1], &f)
	}
	wg.Wait()
	if len(f.failed) > 0 {
		return &sinks.BatchError{Failed: f.failed}
	}
	return nil
}

// enter counts a Publish in, unless the sink is closed.
func (s *Sink) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.busy++
	return true
}

// leave counts a Publish or request out and wakes Close after the last.
func (s *Sink) leave() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.busy--
	if s.busy == 0 && s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
}

// buildEntry maps message i to a SendMessageBatch entry in the sink's
// content mode. SQS has no CloudEvents binding; hookbridge's mapping
// follows the Kafka binding's, with message attributes for headers:
//
//   - structured: the CloudEvent JSON as the body; attribute content-type
//     application/cloudevents+json; charset=utf-8, plus traceparent and
//     tracestate: the publish's trace context (Message.Trace, the producer
//     span's when hookbridge traces), else the event's, when there is one.
//   - binary: data as the body; attribute content-type = datacontenttype
//     and one attribute ce_<name> for every other CloudEvents attribute.
//
// SQS carries at most ten attributes, none with an empty value or a
// character it rejects: a binary message that cannot fit (a traced dead
// letter has twelve) goes structured instead, which its content-type
// says, so nothing is dropped or refused.
func (s *Sink) buildEntry(i int, m *sinks.Message, fifo bool) (entry, error) {
	if !validChars(m.Body) {
		return entry{}, fmt.Errorf("body %w", ErrInvalidChars)
	}
	attrs := make(map[string]types.MessageAttributeValue, maxAttrs)
	body := m.Body
	size := 0
	add := func(name, value string) error {
		if !validString(value) {
			return fmt.Errorf("attribute %q %w", name, ErrInvalidChars)
		}
		attrs[name] = types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(value)}
		size += len(name) + len("String") + len(value)
		return nil
	}
	if s.cfg.ContentMode == sinks.Binary && binaryFits(m) {
		data, err := m.Data()
		if err != nil {
			return entry{}, err
		}
		body = data
		for _, a := range m.Attrs {
			name := "ce_" + a.Name
			if a.Name == "datacontenttype" {
				name = "content-type"
			}
			if err := add(name, a.Value); err != nil {
				return entry{}, err
			}
		}
	} else {
		if s.cfg.ContentMode == sinks.Binary {
			s.structuredOnce.Do(func() {
				s.log.Warn("sqs: an event did not fit binary mode (SQS carries at most 10 message attributes, none empty or with characters it rejects); it and any like it go structured, as their content-type attribute says",
					"attributes", len(m.Attrs))
			})
		}
		if err := add("content-type", sinks.StructuredContentType); err != nil {
			return entry{}, err
		}
		// The W3C trace context under its own names, where tracers look:
		// the publish's (see sinks.Message.Trace), else the event's.
		for _, a := range m.TraceHeaders() {
			if a.Value != "" {
				if err := add(a.Name, a.Value); err != nil {
					return entry{}, err
				}
			}
		}
	}
	size += len(body)
	if size > maxBatchBytes {
		return entry{}, fmt.Errorf("%d bytes with its attributes is %w (the limit is %d bytes)", size, ErrTooLarge, maxBatchBytes)
	}
	e := entry{index: i, size: size}
	e.req = types.SendMessageBatchRequestEntry{
		Id:                aws.String(strconv.Itoa(i)),
		MessageBody:       aws.String(string(body)),
		MessageAttributes: attrs,
	}
	if fifo {
		group := m.Key
		if group == "" {
			group = noTaskGroup
		}
		e.req.MessageGroupId = aws.String(fifoID(group))
		if m.ID != "" {
			e.req.MessageDeduplicationId = aws.String(fifoID(m.ID))
		}
	}
	return e, nil
}

// fifoID returns s if SQS accepts it as a MessageGroupId or
// MessageDeduplicationId (1 to 128 printable ASCII characters), else the
// hex SHA-256 of s, which keeps equal values equal.
func fifoID(s string) string {
	ok := len(s) >= 1 && len(s) <= 128
	for i := 0; ok && i < len(s); i++ {
		ok = s[i] >= '!' && s[i] <= '~'
	}
	if ok {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// binaryFits reports whether m's attributes fit SQS message attributes in
// binary mode: at most ten, each with a name SQS takes and a value of
// characters it accepts, without spaces at its ends (which readers that
// set attributes through the CloudEvents SDK would trim).
func binaryFits(m *sinks.Message) bool {
	if len(m.Attrs) > maxAttrs || !sinks.Untrimmed(m.Attrs) {
		return false
	}
	for _, a := range m.Attrs {
		if a.Value == "" || !validAttrName(a.Name) || !validString(a.Value) {
			return false
		}
	}
	return true
}

// validAttrName reports whether "ce_"+name is a valid SQS attribute name
// (CloudEvents names are lower-case letters and digits).
func validAttrName(name string) bool {
	if name == "" || len(name) > 20 {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// validChars reports whether b holds only characters SQS accepts in a body
// or string attribute: #x9, #xA, #xD, #x20 to #xD7FF, #xE000 to #xFFFD and
// #x10000 to #x10FFFF, in valid UTF-8.
func validChars(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) { // ranging over the conversion does not copy
		if !allowedRune(r) {
			return false
		}
	}
	return true
}

// validString is validChars for a string.
func validString(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !allowedRune(r) {
			return false
		}
	}
	return true
}

// allowedRune reports whether SQS accepts r (utf8 never decodes
// surrogates, so they need no check).
func allowedRune(r rune) bool {
	if r < 0x20 {
		return r == '\t' || r == '\n' || r == '\r'
	}
	return r != 0xFFFE && r != 0xFFFF
}

// sendQueue sends one queue's entries. Entries that fit one request go
// through the queue's coalescer; more are sent in order, one request
// after the other, so that they keep their order.
func (s *Sink) sendQueue(ctx context.Context, qb queueBatch, f *failures) {
	record := func(chunk []entry, errs []error) {
		for i, err := range errs {
			if err != nil {
				f.add(chunk[i].index, err)
			}
		}
	}
	if n := chunkLen(qb.entries); n == len(qb.entries) {
		record(qb.entries, s.coalesce(ctx, qb.url, qb.entries))
		return
	}
	opt := s.queueRegion(qb.url)
	entries := qb.entries
	for len(entries) > 0 {
		n := chunkLen(entries)
		record(entries[:n], s.send(ctx, qb.url, entries[:n], opt))
		entries = entries[n:]
	}
}

// chunkLen is how many of entries, from the first, fit one request.
func chunkLen(entries []entry) int {
	n, size := 0, 0
	for n < len(entries) && n < maxEntries && (n == 0 || size+entries[n].size <= maxBatchBytes) {
		size += entries[n].size
		n++
	}
	return n
}

// maxInFlight bounds the SendMessageBatch requests in flight per queue.
// While they are all out, new messages wait and then share the next
// request: a bound is what makes messages coalesce under load. Several,
// not one, so that a lone message is sent at once while a few others are
// in flight, and a slow answer does not stall the queue.
const maxInFlight = 8

// A coalescer lets concurrent Publish calls to one queue share
// SendMessageBatch requests ("group commit" with no timer). A Publish
// queues its unit, the queue's messages of its batch, then waits for a
// free request slot, its unit's results, or its ctx. A caller that gets
// a slot while its unit is still queued starts one request: its own unit
// first, then as many queued units as fit, whole and in their order.
// Every caller thus starts at most one request, which holds its own
// unit; with nothing in flight a lone unit goes out at once. A shared
// request runs in a goroutine of its own, which ends with it, so that
// its starter, like every other caller, can stop waiting when its ctx
// ends; a lone unit's request is sent by its caller, with its ctx, which
// saves a goroutine hop (~10% of a light-load Publish against kumo).
type coalescer struct {
	url   string
	opt   func(*awssqs.Options) // the queue's region
	slots chan struct{}         // one token per request in flight

	// Guarded by Sink.mu.
	waiting []*unit // queued, in arrival order
	users   int     // callers and requests using it
}

// unit is the part of one Publish for a queue; it is never split.
type unit struct {
	ctx     context.Context
	entries []entry
	size    int
	queued  bool          // in coalescer.waiting; guarded by Sink.mu
	errs    []error       // per entry, nil if confirmed; set before done
	done    chan struct{} // closed once errs is set
}

// coalesce sends entries, which fit one request, in a request that may
// hold other units too, and returns each entry's error. If ctx ends
// first, the entries fail with ctx's error; a request already sent may
// still land them (on a FIFO queue the deduplication id drops a resent
// repeat).
func (s *Sink) coalesce(ctx context.Context, queueURL string, entries []entry) []error {
	if err := ctx.Err(); err != nil {
		return failAll(len(entries), fmt.Errorf("sqs: send to %q: not sent: %w", queueURL, err))
	}
	u := &unit{ctx: ctx, entries: entries, queued: true, done: make(chan struct{})}
	for _, e := range entries {
		u.size += e.size
	}
	c := s.join(queueURL, u)
	defer s.quit(c)
	slots := c.slots
	for {
		select {
		case <-u.done:
			return u.errs
		case <-ctx.Done():
			return s.abandon(c, u, ctx.Err())
		case slots <- struct{}{}:
			switch units := s.take(c, u); {
			case units == nil: // another caller took u
				<-c.slots
			case len(units) == 1:
				s.sendUnits(c, units) // ctx aborts it: no goroutine needed
			default:
				go s.sendUnits(c, units) // releases the slot
			}
			slots = nil // u is taken: only wait for its results now
		}
	}
}

// join queues u on queueURL's coalescer, made if there is none. The
// region option is a function of the URL, so the URL alone is the key.
func (s *Sink) join(queueURL string, u *unit) *coalescer {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.queues[queueURL]
	if c == nil {
		c = &coalescer{url: queueURL, opt: s.queueRegion(queueURL), slots: make(chan struct{}, maxInFlight)}
		if s.queues == nil {
			s.queues = map[string]*coalescer{}
		}
		s.queues[queueURL] = c
	}
	c.users++
	c.waiting = append(c.waiting, u)
	return c
}

// quit drops c once no caller or request uses it: queue URLs can come
// from templates, so the map must not keep every one ever seen.
func (s *Sink) quit(c *coalescer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.users--
	if c.users == 0 {
		delete(s.queues, c.url)
	}
}

// take dequeues u and the queued units that fit one request with it,
// from the oldest on, or returns nil if another caller already took u.
// The request is counted busy, for Close to wait for, and as a user of
// c, whose slot it holds.
func (s *Sink) take(c *coalescer, u *unit) []*unit {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !u.queued {
		return nil
	}
	s.busy++
	c.users++
	c.waiting = slices.DeleteFunc(c.waiting, func(w *unit) bool { return w == u })
	u.queued = false
	units := []*unit{u}
	n, size := len(u.entries), u.size
	k := 0
	for ; k < len(c.waiting); k++ {
		w := c.waiting[k]
		if n+len(w.entries) > maxEntries || size+w.size > maxBatchBytes {
			break // stop at the first misfit: older units go first
		}
		n += len(w.entries)
		size += w.size
		w.queued = false
		units = append(units, w)
	}
	c.waiting = slices.Delete(c.waiting, 0, k)
	return units
}

// abandon returns u's errors for a caller whose ctx ended: its results
// if they came, else err for every entry. A queued u is dequeued, so it
// is never sent.
func (s *Sink) abandon(c *coalescer, u *unit, err error) []error {
	select {
	case <-u.done:
		return u.errs
	default:
	}
	s.mu.Lock()
	queued := u.queued
	if queued {
		c.waiting = slices.DeleteFunc(c.waiting, func(w *unit) bool { return w == u })
		u.queued = false
	}
	s.mu.Unlock()
	if queued {
		err = fmt.Errorf("sqs: send to %q: not sent: %w", c.url, err)
	} else {
		err = fmt.Errorf("sqs: send to %q: sent, but gave up waiting for the answer: %w", c.url, err)
	}
	return failAll(len(u.entries), err)
}

// failAll returns err n times.
func failAll(n int, err error) []error {
	errs := make([]error, n)
	for i := range errs {
		errs[i] = err
	}
	return errs
}

// sendUnits sends units in one request, hands each its results, and
// frees the request's slot.
func (s *Sink) sendUnits(c *coalescer, units []*unit) {
	defer s.leave()
	defer s.quit(c)
	defer func() { <-c.slots }()
	var entries []entry
	for _, u := range units {
		entries = append(entries, u.entries...)
	}
	ctx, cancel := waitersContext(units)
	errs := s.send(ctx, c.url, entries, c.opt)
	cancel()
	for _, u := range units {
		u.errs, errs = errs[:len(u.entries)], errs[len(u.entries):]
		close(u.done)
	}
}

// waitersContext is the context of a request shared by units: it ends
// once every unit's caller has given up, as no one caller may abort the
// others' request.
func waitersContext(units []*unit) (context.Context, context.CancelFunc) {
	if len(units) == 1 {
		return units[0].ctx, func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var left atomic.Int64
	left.Store(int64(len(units)))
	stops := make([]func() bool, len(units))
	for i, u := range units {
		stops[i] = context.AfterFunc(u.ctx, func() {
			if left.Add(-1) == 0 {
				cancel()
			}
		})
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
	}
}

// send sends entries in one SendMessageBatch request and returns each
// one's error, nil if SQS confirmed it. Entry ids are renumbered by
// position, as entries of several batches can share a request.
func (s *Sink) send(ctx context.Context, queueURL string, entries []entry, opt func(*awssqs.Options)) []error {
	reqs := make([]types.SendMessageBatchRequestEntry, len(entries))
	for i := range entries {
		reqs[i] = entries[i].req
		reqs[i].Id = aws.String(strconv.Itoa(i))
	}
	s.requests.Add(1)
	s.messages.Add(int64(len(reqs)))
	out, err := s.client.SendMessageBatch(ctx, &awssqs.SendMessageBatchInput{
		QueueUrl: aws.String(queueURL),
		Entries:  reqs,
	}, opt)
	if err != nil {
		return failAll(len(entries), fmt.Errorf("sqs: send to %q: %w", queueURL, err))
	}
	// Every entry must come back either confirmed with a MessageId or
	// failed; anything else is not confirmed.
	confirmed := make(map[string]bool, len(out.Successful))
	for _, r := range out.Successful {
		if r.Id != nil && aws.ToString(r.MessageId) != "" {
			confirmed[*r.Id] = true
		}
	}
	rejected := make(map[string]*SendError, len(out.Failed))
	for _, r := range out.Failed {
		rejected[aws.ToString(r.Id)] = &SendError{
			QueueURL:    queueURL,
			Code:        aws.ToString(r.Code),
			Message:     aws.ToString(r.Message),
			SenderFault: r.SenderFault,
		}
	}
	errs := make([]error, len(entries))
	for i, r := range reqs {
		id := *r.Id
		switch {
		case confirmed[id]:
		case rejected[id] != nil && rejected[id].SenderFault:
			errs[i] = sinks.Permanent(rejected[id]) // resending it unchanged fails again
		case rejected[id] != nil:
			errs[i] = rejected[id]
		default:
			errs[i] = fmt.Errorf("sqs: send to %q: sqs returned no message id for the message", queueURL)
		}
	}
	return errs
}

// Close waits for the Publish calls and requests in progress (a request
// ends when SQS answers or all its callers' ctx have ended) or for ctx,
// then releases the sink's idle connections. Publish confirms every
// message before it returns, so nothing else is left to flush.
func (s *Sink) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errClosed
	}
	s.closed = true
	if s.busy > 0 {
		s.idle = make(chan struct{})
	}
	idle := s.idle
	s.mu.Unlock()
	defer s.transport.CloseIdleConnections()
	if idle == nil {
		return nil
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("sqs: close: publishes still in progress: %w", ctx.Err())
	}
}
