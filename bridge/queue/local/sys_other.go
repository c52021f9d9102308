//go:build !linux

package local

import "os"

// datasync flushes f to stable storage; without fdatasync, an fsync.
func datasync(f *os.File) error { return f.Sync() }
