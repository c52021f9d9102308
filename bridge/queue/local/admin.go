package local

import (
	"context"

	"github.com/hookbridge/hookbridge/bridge/queue"
)

// Admin is `hookbridge spool ls|replay|drop` on a spool file. It opens the
// file itself, so it works only while no hookbridge serves from it (a
// running one holds the file's lock).
type Admin struct {
	store *Store
}

var _ queue.Admin = (*Admin)(nil)

// OpenAdmin opens the spool file in dir.
func OpenAdmin(dir string, opts Options) (*Admin, error) {
	st, err := Open(dir, opts)
	if err != nil {
		return nil, err
	}
	return &Admin{store: st}, nil
}

// Stats implements queue.Admin.
func (a *Admin) Stats(context.Context) (queue.Stats, error) { return a.store.Stats() }

// Pending implements queue.Admin.
func (a *Admin) Pending(_ context.Context, sink string, after uint64, n int) ([]queue.Record, error) {
	return a.store.Pending(sink, after, n)
}

// Dead implements queue.Admin.
func (a *Admin) Dead(_ context.Context, after uint64, n int) ([]queue.Record, error) {
	return a.store.Dead(after, n)
}

// Replay implements queue.Admin: a replayed record gets a new Seq and is
// delivered by the next serve.
func (a *Admin) Replay(_ context.Context, seqs []uint64) (int, error) { return a.store.Replay(seqs) }

// Drop implements queue.Admin.
func (a *Admin) Drop(_ context.Context, seqs []uint64) (int, error) { return a.store.Drop(seqs) }

// DropPending implements queue.Admin.
func (a *Admin) DropPending(_ context.Context, sink string, seqs []uint64) (int, error) {
	return a.store.DropPending(sink, seqs)
}

// PurgePending implements queue.Admin.
func (a *Admin) PurgePending(ctx context.Context, sink string) (int, error) {
	return a.store.PurgePending(sink)
}

// Shared implements queue.Admin: no replica delivers while the file is
// open here.
func (a *Admin) Shared() bool { return false }

// Close implements queue.Admin.
func (a *Admin) Close() error { return a.store.Close() }
