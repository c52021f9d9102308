//go:build !unix

package local

import (
	"errors"
	"os"
)

// lockFile: the local spool relies on flock(2), which this system lacks.
func lockFile(*os.File) error {
	return errors.New("spool.backend: local needs a Unix system (flock); use spool.backend: jetstream here")
}

func syncDir(string) error { return nil }
