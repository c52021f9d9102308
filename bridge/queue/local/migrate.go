package local

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/hookbridge/hookbridge/bridge/queue"
)

// hookbridge up to 0.x kept the local spool in one bbolt file. Open moves
// its records into the log, keeping their Seqs, and renames the file so
// that it is never read again:
//
//	spool.db           the bbolt spool: pending/<sink>/<seq>, dead/<seq>, meta/next
//	migrate.tmp        the log being written from it
//	spool.db.migrated  the bbolt spool once migrated, kept for the operator
//
// The steps are ordered so that a crash at any point either leaves
// spool.db in place (the migration starts over) or finishes it.
const (
	// LegacyFile is the bbolt spool file of earlier versions.
	LegacyFile = "spool.db"
	// MigratedSuffix is appended to LegacyFile once it is migrated.
	MigratedSuffix  = ".migrated"
	migrationTmp    = "migrate.tmp"
	migrationFrame  = 1 << 20 // bytes of records per frame of the new log
	legacyNotLocked = "spool %s is in use by another hookbridge process (an earlier version holds %s): stop it first"
)

type migration struct {
	moved, unreadable int
}

// migrate moves the records of dir's bbolt spool into a new log, if dir
// holds one.
func migrate(dir string, timeout time.Duration) (migration, error) {
	legacy := filepath.Join(dir, LegacyFile)
	tmp := filepath.Join(dir, migrationTmp)
	_, err := os.Stat(legacy)
	legacyThere := err == nil
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return migration{}, err
	}
	if _, err := os.Stat(tmp); err == nil {
		if legacyThere {
			// A migration that did not finish: start it over.
			if err := os.Remove(tmp); err != nil {
				return migration{}, err
			}
		} else {
			// spool.db was renamed: only the last rename is left.
			return migration{}, finishMigration(dir, tmp)
		}
	}
	if !legacyThere {
		return migration{}, nil
	}
	ids, err := listSegments(dir)
	if err != nil {
		return migration{}, err
	}
	if len(ids) > 0 {
		return migration{}, fmt.Errorf("%s holds both a spool file of an earlier hookbridge (%s) and a spool log: deliver what %s holds with that earlier version (it drains on shutdown; hookbridge spool ls shows what is left), or move %s out of the directory", dir, LegacyFile, LegacyFile, LegacyFile)
	}
	db, err := bolt.Open(legacy, 0o600, &bolt.Options{Timeout: timeout, ReadOnly: true})
	if errors.Is(err, berrors.ErrTimeout) {
		return migration{}, fmt.Errorf(legacyNotLocked, dir, legacy)
	}
	if err != nil {
		return migration{}, fmt.Errorf("open %s to migrate it: %w", legacy, err)
	}
	m, err := writeMigration(db, tmp)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return migration{}, fmt.Errorf("migrate %s: %w", legacy, err)
	}
	if err := os.Rename(legacy, legacy+MigratedSuffix); err != nil {
		return migration{}, err
	}
	if err := syncDir(dir); err != nil {
		return migration{}, err
	}
	return m, finishMigration(dir, tmp)
}

// finishMigration makes the migrated log the first segment.
func finishMigration(dir, tmp string) error {
	if err := os.Rename(tmp, filepath.Join(dir, segmentName(1))); err != nil {
		return err
	}
	return syncDir(dir)
}

// writeMigration writes every record of the bbolt spool db into a new
// segment file at path, and fsyncs it.
func writeMigration(db *bolt.DB, path string) (migration, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return migration{}, err
	}
	defer f.Close()
	var m migration
	fb := frameBuilder{start: -1}
	flush := func() error {
		if _, err := f.Write(fb.buf); err != nil {
			return err
		}
		fb.buf = fb.buf[:0]
		return nil
	}
	err = db.View(func(tx *bolt.Tx) error {
		var next uint64
		if mb := tx.Bucket([]byte("meta")); mb != nil {
			if v := mb.Get([]byte("next")); len(v) == 8 {
				next = binary.BigEndian.Uint64(v)
			}
		}
		fb.buf = segmentStart(max(next, 1))
		add := func(k, v []byte, state byte) error {
			if len(k) != 8 {
				return nil // not a record
			}
			if _, err := queue.Summarize(v); err != nil {
				m.unreadable++ // stays in the migrated file, named in the log
				return nil
			}
			if fb.start < 0 {
				fb.begin()
			}
			fb.put(binary.BigEndian.Uint64(k), state, v)
			m.moved++
			if len(fb.buf) >= migrationFrame {
				fb.end()
				return flush()
			}
			return nil
		}
		if pend := tx.Bucket([]byte("pending")); pend != nil {
			err := pend.ForEachBucket(func(name []byte) error {
				return pend.Bucket(name).ForEach(func(k, v []byte) error { return add(k, v, statePending) })
			})
			if err != nil {
				return err
			}
		}
		if dead := tx.Bucket([]byte("dead")); dead != nil {
			if err := dead.ForEach(func(k, v []byte) error { return add(k, v, stateDead) }); err != nil {
				return err
			}
		}
		if fb.start >= 0 {
			fb.end()
		}
		return flush()
	})
	if err != nil {
		return migration{}, err
	}
	if err := datasync(f); err != nil {
		return migration{}, err
	}
	return m, nil
}
