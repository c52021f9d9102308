package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookbridge/hookbridge/bridge/queue"
	"github.com/hookbridge/hookbridge/sinks"
	natssink "github.com/hookbridge/hookbridge/sinks/nats"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

var discard = slog.New(slog.DiscardHandler)

// openQueue dials url and opens the spool stream in partitions lanes.
func openQueue(t *testing.T, url string, partitions int) (*Queue, error) {
	t.Helper()
	cfg := Config{Connection: natssink.Connection{URL: url}, Partitions: partitions, Duplicates: time.Minute}
	cfg.SetDefaults()
	conn, err := Dial(cfg, 5*time.Second, discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn.OpenQueue(context.Background(), Limits{MaxEvents: 1000, MaxBytes: 1 << 20}, nil)
}

// TestPartitionChangeNeedsAnEmptyStream: messages laid out in one
// partition count keep it until they are delivered; then the count may
// change, and lanes no longer used lose their consumers.
func TestPartitionChangeNeedsAnEmptyStream(t *testing.T) {
	srv := sinktest.NATS(t)
	q4, err := openQueue(t, srv.ClientURL(), 4)
	if err != nil {
		t.Fatal(err)
	}
	rec := queue.Record{Sink: "bus", Message: sinks.Message{ID: "x", Key: "t"}}
	if err := q4.Append(context.Background(), []queue.Record{rec}); err != nil {
		t.Fatal(err)
	}
	_, err = openQueue(t, srv.ClientURL(), 8)
	if err == nil || !strings.Contains(err.Error(), "spool.partitions") || !strings.Contains(err.Error(), "partitions: 4") {
		t.Errorf("err = %v, want a spool.partitions error naming 4", err)
	}
	// Once nothing waits, the count may change.
	if err := q4.stream.Purge(context.Background()); err != nil {
		t.Fatal(err)
	}
	q8, err := openQueue(t, srv.ClientURL(), 8)
	if err != nil {
		t.Fatalf("with the stream empty: %v", err)
	}
	if got := q8.stream.CachedInfo().Config.Metadata[partitionsKey]; got != "8" {
		t.Errorf("the stream records %q partitions, want 8", got)
	}

	// Down to 2: the consumers of lanes 2 to 7 go with them.
	r := q8.Receiver("bus").(*receiver)
	r.start()
	consumers := func() []string {
		var names []string
		for name := range q8.stream.ConsumerNames(context.Background()).Name() {
			names = append(names, name)
		}
		slices.Sort(names)
		return names
	}
	sinktest.WaitFor(t, "8 consumers", func() bool { return len(consumers()) == 8 })
	r.Close()
	if _, err := openQueue(t, srv.ClientURL(), 2); err != nil {
		t.Fatal(err)
	}
	if got, want := consumers(), []string{"hookbridge_bus_0", "hookbridge_bus_1"}; !slices.Equal(got, want) {
		t.Errorf("consumers %v, want %v", got, want)
	}
}

// TestUnreadableMessageIsMovedAside: a message in a lane that is not a
// record (written by something else) is handed out as unreadable; killing
// it moves it, as it is, to the sink's dead subject.
func TestUnreadableMessageIsMovedAside(t *testing.T) {
	srv := sinktest.NATS(t)
	q, err := openQueue(t, srv.ClientURL(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.c.publish(context.Background(), []outgoing{{subject: q.layout.waiting("bus", 0), id: "junk", data: []byte("not a record")}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	recv := q.Receiver("bus")
	defer recv.Close()
	leases, err := recv.Receive(ctx, 10)
	if err != nil || len(leases) != 1 {
		t.Fatalf("Receive: %d leases, %v", len(leases), err)
	}
	if _, err := leases[0].Record(); err == nil || !strings.Contains(err.Error(), "not a spool record") {
		t.Fatalf("Record() error = %v", err)
	}
	if err := leases[0].Kill("not a spool record", nil); err != nil {
		t.Fatal(err)
	}
	sinktest.WaitFor(t, "the message on the dead subject, nothing waiting", func() bool {
		st, err := readStats(context.Background(), q.stream, q.layout, q.c.cfg.Stream)
		return err == nil && st.Dead == 1 && st.Pending == 0
	})
	m, err := q.stream.GetLastMsgForSubject(context.Background(), q.layout.dead("bus"))
	if err != nil || string(m.Data) != "not a record" {
		t.Errorf("dead subject holds %q, %v", m.Data, err)
	}
}

// TestReadyWhileTheStreamRefusesWrites: after an append the stream
// refused (injected: a NATS server whose disk is full cannot be made on
// demand here), the queue is not ready for failureHold; then it is, and
// the next append decides. A full stream, or an append cancelled by its
// caller, does not count.
func TestReadyWhileTheStreamRefusesWrites(t *testing.T) {
	srv := sinktest.NATS(t)
	var now atomic.Int64
	now.Store(time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC).UnixNano())
	cfg := Config{Connection: natssink.Connection{URL: srv.ClientURL()}, Partitions: 1, Duplicates: time.Minute}
	cfg.SetDefaults()
	conn, err := Dial(cfg, 5*time.Second, discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	q, err := conn.OpenQueue(context.Background(), Limits{MaxEvents: 1000, MaxBytes: 1 << 20}, func() time.Time { return time.Unix(0, now.Load()) })
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	refuse := errors.New("nats: insufficient resources")
	var failing atomic.Pointer[error]
	real := q.publish
	q.publish = func(ctx context.Context, msgs []outgoing) error {
		if p := failing.Load(); p != nil {
			return *p
		}
		return real(ctx, msgs)
	}
	rec := func(id string) []queue.Record {
		return []queue.Record{{Sink: "bus", Message: sinks.Message{ID: id, Key: "t", Body: []byte(`{}`)}, Received: time.Unix(0, now.Load())}}
	}
	if err := q.Ready(ctx); err != nil {
		t.Fatalf("a new queue: %v", err)
	}
	failing.Store(&refuse)
	if err := q.Append(ctx, rec("a")); !errors.Is(err, refuse) {
		t.Fatalf("Append: %v", err)
	}
	if err := q.Ready(ctx); !errors.Is(err, refuse) {
		t.Errorf("right after a refused write: Ready = %v", err)
	}
	now.Add(int64(failureHold))
	if err := q.Ready(ctx); err != nil {
		t.Errorf("after the hold: Ready = %v", err)
	}
	// A refused write starts the hold again; a successful one ends it.
	_ = q.Append(ctx, rec("b"))
	failing.Store(nil)
	if err := q.Append(ctx, rec("c")); err != nil {
		t.Fatal(err)
	}
	if err := q.Ready(ctx); err != nil {
		t.Errorf("after a successful append: Ready = %v", err)
	}
	// Neither a full stream nor a cancelled append is a refused write.
	for _, e := range []error{fmt.Errorf("%w: stream X", queue.ErrFull), context.Canceled} {
		failing.Store(&e)
		_ = q.Append(ctx, rec("d"))
		if q.failed.Load() != nil {
			t.Errorf("%v was taken for a refused write", e)
		}
	}
}
