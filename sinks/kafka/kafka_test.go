package kafka

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookbridge/hookbridge/sinks"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// testTimeout guards against hangs; no test asserts on elapsed time.
const testTimeout = 30 * time.Second

// newCluster runs a one-broker kfake cluster and returns its address.
func newCluster(t testing.TB, opts ...kfake.Opt) []string {
	t.Helper()
	return sinktest.Kafka(t, opts...).ListenAddrs()
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func newSink(t testing.TB, cfg Config, topics ...string) *Sink {
	t.Helper()
	s, err := New(ctxT(t), cfg, topics, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return s
}

// consume reads the records of topic, which must be n.
func consume(t testing.TB, brokers []string, topic string, n int) []*kgo.Record {
	t.Helper()
	recs := sinktest.KafkaRecords(t, brokers, topic)
	if len(recs) != n {
		t.Fatalf("topic %q: %d records, want %d", topic, len(recs), n)
	}
	return recs
}

// wantHeaders are the headers of m in structured mode: the content type
// alone, no ce_ attribute.
func wantHeaders(sinks.Message) []kgo.RecordHeader {
	return []kgo.RecordHeader{{Key: "content-type", Value: []byte("application/cloudevents+json; charset=utf-8")}}
}

func checkRecord(t *testing.T, r *kgo.Record, m sinks.Message) {
	t.Helper()
	if string(r.Key) != m.Key {
		t.Errorf("key %q, want %q", r.Key, m.Key)
	}
	if !bytes.Equal(r.Value, m.Body) {
		t.Errorf("value %s, want %s", r.Value, m.Body)
	}
	want := wantHeaders(m)
	if len(r.Headers) != len(want) {
		t.Fatalf("%d headers %v, want %d %v", len(r.Headers), r.Headers, len(want), want)
	}
	for i, h := range r.Headers {
		if h.Key != want[i].Key || !bytes.Equal(h.Value, want[i].Value) {
			t.Errorf("header %d: %s=%q, want %s=%q", i, h.Key, h.Value, want[i].Key, want[i].Value)
		}
	}
}

func TestPublishTwoTopics(t *testing.T) {
	brokers := newCluster(t, kfake.SeedTopics(4, "tasks", "audit"))
	s := newSink(t, Config{Brokers: brokers, Topic: "audit"}, "tasks")
	batch := []sinks.Message{
		sinktest.Event("tasks", "task-1", "ev-1"),
		sinktest.Event("", "task-2", "ev-2"), // the sink's default topic
		sinktest.Event("tasks", "task-3", "ev-3"),
		sinktest.Event("audit", "task-1", "ev-4"),
	}
	if err := s.Publish(ctxT(t), batch); err != nil {
		t.Fatal(err)
	}
	byID := map[string]sinks.Message{}
	for _, m := range batch {
		byID[m.ID] = m
	}
	for topic, ids := range map[string][]string{"tasks": {"ev-1", "ev-3"}, "audit": {"ev-2", "ev-4"}} {
		recs := consume(t, brokers, topic, len(ids))
		seen := map[string]bool{}
		for _, r := range recs {
			id := sinktest.BodyID(r.Value)
			m, ok := byID[id]
			if !ok || !strings.Contains(strings.Join(ids, ","), id) {
				t.Fatalf("topic %q: unexpected record with ce_id %q", topic, id)
			}
			seen[id] = true
			checkRecord(t, r, m)
		}
		if len(seen) != len(ids) {
			t.Errorf("topic %q: saw %v, want %v", topic, seen, ids)
		}
	}
}

func TestPerTaskOrder(t *testing.T) {
	const tasks, perTask = 5, 10
	brokers := newCluster(t, kfake.SeedTopics(4, "seq", "conc"))
	s := newSink(t, Config{Brokers: brokers}, "seq", "conc")
	key := func(k int) string { return fmt.Sprintf("task-%d", k) }
	body := func(k, i int) []byte { return []byte(key(k) + "/" + strconv.Itoa(i)) }

	// Several Publish calls, each mixing tasks, one after the other.
	var all []sinks.Message
	for i := range perTask {
		for k := range tasks {
			all = append(all, sinks.Message{Target: "seq", Key: key(k), ID: string(body(k, i)), Body: body(k, i)})
		}
	}
	for start := 0; start < len(all); start += 7 {
		if err := s.Publish(ctxT(t), all[start:min(start+7, len(all))]); err != nil {
			t.Fatal(err)
		}
	}

	// One goroutine per task, one event per Publish: the writer batches
	// the goroutines' records together.
	var wg sync.WaitGroup
	errs := make(chan error, tasks)
	for k := range tasks {
		wg.Go(func() {
			for i := range perTask {
				m := sinks.Message{Target: "conc", Key: key(k), Body: body(k, i)}
				if err := s.Publish(ctxT(t), []sinks.Message{m}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	for _, topic := range []string{"seq", "conc"} {
		recs := consume(t, brokers, topic, tasks*perTask)
		partition := map[string]int32{}
		next := map[string]int{}
		used := map[int32]bool{}
		// Records come back in offset order within each partition.
		for _, r := range recs {
			k := string(r.Key)
			if p, ok := partition[k]; ok && p != r.Partition {
				t.Errorf("%s: key %q on partitions %d and %d", topic, k, p, r.Partition)
			}
			partition[k] = r.Partition
			used[r.Partition] = true
			if want := body(mustTask(t, k), next[k]); !bytes.Equal(r.Value, want) {
				t.Errorf("%s: key %q: got %s, want %s", topic, k, r.Value, want)
			}
			next[k]++
		}
		for k := range tasks {
			if next[key(k)] != perTask {
				t.Errorf("%s: key %q: %d records, want %d", topic, key(k), next[key(k)], perTask)
			}
		}
		t.Logf("%s: %d tasks over %d partitions", topic, tasks, len(used))
	}
}

func mustTask(t *testing.T, key string) int {
	k, err := strconv.Atoi(strings.TrimPrefix(key, "task-"))
	if err != nil {
		t.Fatalf("bad key %q", key)
	}
	return k
}

func TestMissingTopic(t *testing.T) {
	t.Run("probe fails", func(t *testing.T) {
		brokers := newCluster(t, kfake.SeedTopics(1, "present"))
		_, err := New(ctxT(t), Config{Brokers: brokers, Topic: "absent"}, []string{"present", "gone"}, nil)
		if err == nil {
			t.Fatal("New succeeded with missing topics")
		}
		want := `kafka: topics "gone", "absent" do not exist: create them, or set auto_create_topics: true`
		if err.Error() != want {
			t.Errorf("error %q\nwant  %q", err, want)
		}
	})
	t.Run("no topic known in advance", func(t *testing.T) {
		brokers := newCluster(t, kfake.SeedTopics(1, "present"))
		s := newSink(t, Config{Brokers: brokers})
		if err := s.Publish(ctxT(t), nil); err != nil {
			t.Fatalf("empty batch: %v", err)
		}
		if err := s.Publish(ctxT(t), []sinks.Message{sinktest.Event("present", "task-1", "ev-1")}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("publish to an unknown topic", func(t *testing.T) {
		brokers := newCluster(t, kfake.SeedTopics(1, "present"))
		s := newSink(t, Config{Brokers: brokers}, "present")
		err := s.Publish(ctxT(t), []sinks.Message{sinktest.Event("ghost", "task-1", "ev-1")})
		var be *sinks.BatchError
		if err == nil || errors.As(err, &be) {
			t.Fatalf("got %v, want a plain error", err)
		}
		for _, want := range []string{`"ghost"`, "auto_create_topics: true"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
		// Mixed with a known topic, only the unknown one fails.
		batch := []sinks.Message{sinktest.Event("present", "task-1", "ev-1"), sinktest.Event("ghost", "task-2", "ev-2"), sinktest.Event("present", "task-3", "ev-3")}
		err = s.Publish(ctxT(t), batch)
		if !errors.As(err, &be) || len(be.Failed) != 1 || be.Failed[1] == nil {
			t.Fatalf("got %v, want a BatchError for message 1 only", err)
		}
		if !strings.Contains(be.Failed[1].Error(), `"ghost"`) {
			t.Errorf("error %q does not name the topic", be.Failed[1])
		}
		recs := consume(t, brokers, "present", 2)
		checkRecord(t, recs[0], batch[0])
		checkRecord(t, recs[1], batch[2])
	})
	t.Run("auto create", func(t *testing.T) {
		brokers := newCluster(t, kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(2))
		s := newSink(t, Config{Brokers: brokers, Topic: "fresh", AutoCreateTopics: true}, "made-later")
		batch := []sinks.Message{sinktest.Event("", "task-1", "ev-1"), sinktest.Event("made-later", "task-2", "ev-2")}
		if err := s.Publish(ctxT(t), batch); err != nil {
			t.Fatal(err)
		}
		checkRecord(t, consume(t, brokers, "fresh", 1)[0], batch[0])
		checkRecord(t, consume(t, brokers, "made-later", 1)[0], batch[1])
	})
}

func TestUnreachableBroker(t *testing.T) {
	dead := sinktest.FreeAddr(t) // nothing listens there
	t.Run("probe fails", func(t *testing.T) {
		_, err := New(ctxT(t), Config{Brokers: []string{dead}, Topic: "tasks"}, nil, nil)
		if err == nil {
			t.Fatal("New succeeded against a closed port")
		}
		for _, want := range []string{`cannot reach broker "` + dead + `"`, "skip_probe: true"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
	})
	t.Run("one of two down", func(t *testing.T) {
		live := newCluster(t, kfake.SeedTopics(1, "tasks"))
		var logs bytes.Buffer
		s, err := New(ctxT(t), Config{Brokers: []string{dead, live[0]}, Topic: "tasks"}, nil, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close(context.Background())
		if !strings.Contains(logs.String(), dead) {
			t.Errorf("no warning names %s: %s", dead, logs.String())
		}
	})
	t.Run("skip probe", func(t *testing.T) {
		s := newSink(t, Config{Brokers: []string{dead}, Topic: "tasks", SkipProbe: true})
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		err := s.Publish(ctx, []sinks.Message{sinktest.Event("", "task-1", "ev-1")})
		if err == nil {
			t.Fatal("Publish to a closed port returned nil")
		}
		var be *sinks.BatchError
		if errors.As(err, &be) {
			t.Errorf("got a BatchError %v, want a plain error", err)
		}
		t.Logf("publish error: %v", err)
	})
}

func TestMessageWithoutTopic(t *testing.T) {
	brokers := newCluster(t, kfake.SeedTopics(2, "tasks"))
	s := newSink(t, Config{Brokers: brokers}, "tasks")
	batch := []sinks.Message{sinktest.Event("tasks", "task-1", "ev-1"), sinktest.Event("", "task-2", "ev-2"), sinktest.Event("tasks", "task-3", "ev-3")}
	err := s.Publish(ctxT(t), batch)
	var be *sinks.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 1 || !errors.Is(be.Failed[1], errNoTopic) {
		t.Fatalf("got %v, want a BatchError for message 1 only", err)
	}
	for _, i := range []int{0, 2} {
		if e := sinks.MessageErr(err, i); e != nil {
			t.Errorf("message %d: %v", i, e)
		}
	}
	recs := consume(t, brokers, "tasks", 2)
	got := map[string]*kgo.Record{}
	for _, r := range recs {
		got[string(r.Key)] = r
	}
	checkRecord(t, got["task-1"], batch[0])
	checkRecord(t, got["task-3"], batch[2])
}

func TestMessageTooLarge(t *testing.T) {
	brokers := newCluster(t, kfake.SeedTopics(1, "tasks"))
	s := newSink(t, Config{Brokers: brokers, Topic: "tasks", BatchBytes: 2048}, "tasks")
	big := sinktest.Event("", "task-2", "ev-2")
	big.Body = bytes.Repeat([]byte("x"), 4096)
	batch := []sinks.Message{sinktest.Event("", "task-1", "ev-1"), big}
	err := s.Publish(ctxT(t), batch)
	var be *sinks.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 1 || be.Failed[1] == nil {
		t.Fatalf("got %v, want a BatchError for message 1 only", err)
	}
	if !strings.Contains(be.Failed[1].Error(), "batch_bytes") {
		t.Errorf("error %q does not mention batch_bytes", be.Failed[1])
	}
	checkRecord(t, consume(t, brokers, "tasks", 1)[0], batch[0])
}

// TestRecordSize checks recordSize against kafka-go's own limit: a record
// exactly batch_bytes long passes kafka-go's check, one byte more fails it.
func TestRecordSize(t *testing.T) {
	brokers := newCluster(t, kfake.SeedTopics(1, "tasks"))
	m := sinktest.Event("tasks", "task-1", "ev-1")
	km, err := record(&m, "tasks", sinks.Structured)
	if err != nil {
		t.Fatal(err)
	}
	n := recordSize(&km)
	for _, limit := range []int64{n, n - 1} {
		s := newSink(t, Config{Brokers: brokers, BatchBytes: limit, SkipProbe: true})
		s.maxBytes = 1 << 30 // let kafka-go judge
		err := s.Publish(ctxT(t), []sinks.Message{m})
		if ok := err == nil; ok != (limit >= n) {
			t.Errorf("batch_bytes %d, record %d bytes: kafka-go says %v", limit, n, err)
		}
	}
}

func TestCompression(t *testing.T) {
	for _, codec := range []string{"gzip", "snappy", "lz4", "zstd"} {
		t.Run(codec, func(t *testing.T) {
			brokers := newCluster(t, kfake.SeedTopics(1, "tasks"))
			s := newSink(t, Config{Brokers: brokers, Topic: "tasks", Compression: codec}, "tasks")
			m := sinktest.Event("", "task-1", "ev-1")
			m.Body = bytes.Repeat(m.Body, 20) // something worth compressing
			if err := s.Publish(ctxT(t), []sinks.Message{m}); err != nil {
				t.Fatal(err)
			}
			checkRecord(t, consume(t, brokers, "tasks", 1)[0], m)
		})
	}
}

func TestSASL(t *testing.T) {
	for _, mech := range []string{"plain", "scram-sha-256", "scram-sha-512"} {
		t.Run(mech, func(t *testing.T) {
			brokers := newCluster(t, kfake.EnableSASL(), kfake.Superuser(strings.ToUpper(mech), "hook", "s3cret-pw"), kfake.SeedTopics(1, "tasks"))
			cfg := Config{Brokers: brokers, Topic: "tasks", SASL: SASLConfig{Mechanism: mech, Username: "hook", Password: "s3cret-pw"}}
			s := newSink(t, cfg)
			if err := s.Publish(ctxT(t), []sinks.Message{sinktest.Event("", "task-1", "ev-1")}); err != nil {
				t.Fatal(err)
			}
			cfg.SASL.Password = "wrong-pw"
			_, err := New(ctxT(t), cfg, nil, nil)
			if err == nil {
				t.Fatal("New succeeded with a wrong password")
			}
			if strings.Contains(err.Error(), "wrong-pw") {
				t.Errorf("error shows the password: %v", err)
			}
			t.Logf("wrong password: %v", err)
		})
	}
}

func TestClose(t *testing.T) {
	brokers := newCluster(t, kfake.SeedTopics(1, "tasks"))
	s, err := New(ctxT(t), Config{Brokers: brokers, Topic: "tasks"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Publish(ctxT(t), []sinks.Message{sinktest.Event("", "task-1", "ev-1")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctxT(t)); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.Publish(ctxT(t), []sinks.Message{sinktest.Event("", "task-1", "ev-2")}); !errors.Is(err, errClosed) {
		t.Fatalf("Publish after Close: %v, want %v", err, errClosed)
	}
}

func TestConfig(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		c := Config{TLS: TLSConfig{CAFile: "ca.pem"}, Acks: "ALL", Compression: " Zstd"}
		c.SetDefaults()
		c.SetDefaults() // idempotent
		want := Config{ClientID: "hookbridge", Acks: "all", Compression: "zstd", BatchSize: 100, BatchBytes: 1 << 20,
			BatchTimeout: 2 * time.Millisecond, WriteTimeout: 10 * time.Second, ContentMode: sinks.Structured, TLS: TLSConfig{Enabled: true, CAFile: "ca.pem"}}
		if fmt.Sprint(c) != fmt.Sprint(want) {
			t.Errorf("got  %+v\nwant %+v", c, want)
		}
	})
	ok := Config{Brokers: []string{"kafka-1:9092"}}
	tests := []struct {
		name string
		edit func(*Config)
		want []string // "key: problem", in order
	}{
		{"valid", func(*Config) {}, nil},
		{"no brokers", func(c *Config) { c.Brokers = nil }, []string{"brokers: missing: list your brokers, e.g. [kafka-1:9092]"}},
		{"bad brokers", func(c *Config) { c.Brokers = []string{"kafka-1:9092", "x", "h:0", ":9092"} }, []string{
			`brokers[1]: "x" is not host:port: write e.g. kafka-1:9092`,
			`brokers[2]: "h:0": the port must be a number from 1 to 65535`,
			`brokers[3]: ":9092" is not host:port: write e.g. kafka-1:9092`,
		}},
		{"topic", func(c *Config) { c.Topic = "tasks/finished" }, []string{`topic: "tasks/finished": a topic name holds only letters, digits, '.', '_' and '-'`}},
		{"acks", func(c *Config) { c.Acks = "2" }, []string{`acks: "2": use "all", "leader" or "none"`}},
		{"compression", func(c *Config) { c.Compression = "brotli" }, []string{`compression: "brotli": use "none", "gzip", "snappy", "lz4" or "zstd"`}},
		{"batch", func(c *Config) {
			c.BatchSize, c.BatchBytes, c.BatchTimeout, c.WriteTimeout = -1, -1, -time.Second, -time.Second
		}, []string{
			"batch_size: -1: use 1 or more records",
			"batch_bytes: -1: use a size in bytes, e.g. 1048576",
			"batch_timeout: -1s: use a positive duration, e.g. 2ms",
			"write_timeout: -1s: use a positive duration, e.g. 10s",
		}},
		{"cert without key", func(c *Config) { c.TLS.CertFile = "c.pem" }, []string{"tls.cert_file: a client certificate needs its key: set tls.key_file too"}},
		{"key without cert", func(c *Config) { c.TLS.KeyFile = "k.pem" }, []string{"tls.key_file: a client key needs its certificate: set tls.cert_file too"}},
		{"sasl mechanism", func(c *Config) { c.SASL = SASLConfig{Mechanism: "gssapi", Username: "u", Password: "p"} }, []string{
			`sasl.mechanism: "gssapi": use "plain", "scram-sha-256" or "scram-sha-512", or leave it empty for no sasl`,
		}},
		{"sasl credentials", func(c *Config) { c.SASL = SASLConfig{Mechanism: "scram-sha-512"} }, []string{
			`sasl.username: missing: sasl mechanism "scram-sha-512" needs a username`,
			`sasl.password: missing: sasl mechanism "scram-sha-512" needs a password (give it as ${VAR})`,
		}},
		{"sasl without mechanism", func(c *Config) { c.SASL = SASLConfig{Username: "u", Password: "secret"} }, []string{
			`sasl.mechanism: missing: credentials are set; choose "plain", "scram-sha-256" or "scram-sha-512"`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.edit(&c)
			c.SetDefaults()
			err := c.Validate()
			got := sinktest.Problems(t, err)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if strings.Contains(fmt.Sprint(err), "secret") {
				t.Errorf("error shows the password: %v", err)
			}
			if err != nil {
				if _, nerr := New(context.Background(), c, nil, nil); nerr == nil || nerr.Error() != err.Error() {
					t.Errorf("New: %v, want the Validate error", nerr)
				}
			}
		})
	}
	t.Run("tls files", func(t *testing.T) {
		_, err := New(context.Background(), Config{Brokers: []string{"kafka-1:9092"}, TLS: TLSConfig{CAFile: t.TempDir() + "/none.pem"}}, nil, nil)
		var ce *sinks.ConfigError
		if !errors.As(err, &ce) || ce.Key != "tls.ca_file" {
			t.Fatalf("got %v, want a tls.ca_file ConfigError", err)
		}
	})
}

// BenchmarkPublish publishes one message per Publish call. "serial" waits
// for each acknowledgement in turn (so each call includes batch_timeout);
// "parallel" runs many publishers at once and reports how many records the
// writer put in each produce request.
func BenchmarkPublish(b *testing.B) {
	brokers := newCluster(b, kfake.SeedTopics(4, "tasks"))
	msgs := make([]sinks.Message, 64)
	for i := range msgs {
		msgs[i] = sinktest.Event("tasks", "task-"+strconv.Itoa(i), "ev-"+strconv.Itoa(i))
	}
	report := func(b *testing.B, s *Sink) {
		st := s.w.Stats()
		if st.Writes > 0 {
			b.ReportMetric(float64(st.Messages)/float64(st.Writes), "records/request")
		}
	}
	b.Run("serial", func(b *testing.B) {
		s := newSink(b, Config{Brokers: brokers}, "tasks")
		ctx := ctxT(b)
		s.w.Stats() // reset
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			if err := s.Publish(ctx, msgs[i%len(msgs):i%len(msgs)+1]); err != nil {
				b.Fatal(err)
			}
		}
		report(b, s)
	})
	b.Run("parallel", func(b *testing.B) {
		s := newSink(b, Config{Brokers: brokers}, "tasks")
		ctx := ctxT(b)
		s.w.Stats()
		b.ReportAllocs()
		b.SetParallelism(32) // like many webhooks in flight
		b.ResetTimer()
		var n sync.Mutex
		next := 0
		b.RunParallel(func(pb *testing.PB) {
			n.Lock()
			i := next
			next++
			n.Unlock()
			for pb.Next() {
				i++
				if err := s.Publish(ctx, msgs[i%len(msgs):i%len(msgs)+1]); err != nil {
					b.Error(err)
					return
				}
			}
		})
		report(b, s)
	})
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	caPEM, serverCert := testCerts(t)
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	brokers := newCluster(t, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{serverCert}}), kfake.SeedTopics(1, "tasks"))

	s := newSink(t, Config{Brokers: brokers, Topic: "tasks", TLS: TLSConfig{CAFile: caFile}})
	m := sinktest.Event("", "task-1", "ev-1")
	if err := s.Publish(ctxT(t), []sinks.Message{m}); err != nil {
		t.Fatal(err)
	}

	// Without the CA, the broker's certificate is not trusted.
	_, err := New(ctxT(t), Config{Brokers: brokers, Topic: "tasks", TLS: TLSConfig{Enabled: true}}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("got %v, want a certificate error", err)
	}
}

// testCerts returns a CA certificate (PEM) and a server certificate for
// 127.0.0.1 that it signed.
func testCerts(t *testing.T) ([]byte, tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestRecordContentModes pins each mode's record layout, per the
// CloudEvents Kafka binding: structured carries the content type and no
// ce_ header; binary carries data as the value, datacontenttype as
// content-type and every other attribute as a ce_ header. Both keep the
// key and the W3C trace context under its own names.
func TestRecordContentModes(t *testing.T) {
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	m := sinktest.Event("tasks", "task-1", "ev-1")
	m.Attrs = append(m.Attrs, sinks.Attr{Name: "traceparent", Value: parent})
	data, err := m.Data()
	if err != nil {
		t.Fatal(err)
	}
	binary := map[string]string{"content-type": "application/json", "traceparent": parent}
	for _, a := range m.Attrs {
		if a.Name != "datacontenttype" {
			binary["ce_"+a.Name] = a.Value
		}
	}
	tests := []struct {
		mode    sinks.ContentMode
		headers map[string]string
		value   []byte
	}{
		{sinks.Structured, map[string]string{"content-type": sinks.StructuredContentType, "traceparent": parent}, m.Body},
		{sinks.Binary, binary, data},
	}
	for _, tt := range tests {
		km, err := record(&m, "tasks", tt.mode)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, h := range km.Headers {
			if _, dup := got[h.Key]; dup {
				t.Errorf("%s: header %s twice", tt.mode, h.Key)
			}
			got[h.Key] = string(h.Value)
		}
		if !maps.Equal(got, tt.headers) || !bytes.Equal(km.Value, tt.value) || string(km.Key) != "task-1" {
			t.Errorf("%s: key %q headers %v value %s\nwant headers %v value %s", tt.mode, km.Key, got, km.Value, tt.headers, tt.value)
		}
	}
	if _, err := record(&sinks.Message{Body: []byte("not json")}, "tasks", sinks.Binary); err == nil {
		t.Error("binary record of a body that is no CloudEvent: no error")
	}
}
