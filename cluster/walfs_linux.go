package cluster

import (
	"os"
	"path/filepath"
	"sync"

	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
	"golang.org/x/sys/unix"
)

// The raft log's files, made cheap to sync.
//
// raft-wal reserves each new segment file with fallocate, which leaves its
// space as unwritten extents: every fsync after a write into them must
// also commit the file system's journal to mark the blocks written (and
// fsync records the new modification time as well). With several nodes
// on one disk those journal commits queue behind each other and a sync
// takes twice as long.
//
// So a new segment's space is written with zeros a few MiB ahead of the
// log, in the background, and the log syncs with fdatasync: once its
// blocks are written, a sync flushes the data and nothing else. fdatasync
// still flushes whatever metadata reading the data back needs, so a write
// that outruns the zeroing is as durable as before, only slower to sync.
// Segments reopened after a restart are synced the same way but not
// zeroed (their end is known only to raft-wal's recovery).

const (
	zeroAhead = 4 << 20   // how far ahead of the log the space is zeroed
	zeroChunk = 128 << 10 // bytes zeroed under the file's lock at a time
	zeroSync  = 1 << 20   // zeroed bytes between the zeroer's own syncs
)

var zeros = make([]byte, zeroChunk)

// segmentFiler returns raft-wal's segment files in dir on segmentFS.
func segmentFiler(dir string) types.SegmentFiler {
	return segment.NewFiler(dir, segmentFS{fs.New()})
}

// segmentFS is raft-wal's file system with segmentFile for writable files.
type segmentFS struct{ *fs.FS }

func (segmentFS) Create(dir, name string, size uint64) (types.WritableFile, error) {
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if size == 0 {
		return &segmentFile{f: f, dir: dir}, nil
	}
	// Reserve the space first, as raft-wal does, so a full disk shows
	// now rather than mid-segment.
	if err := unix.Fallocate(int(f.Fd()), 0, 0, int64(size)); err != nil && err != unix.EOPNOTSUPP {
		_ = f.Close()
		_ = os.Remove(f.Name())
		return nil, err
	}
	sf := &segmentFile{f: f, dir: dir, size: int64(size), wake: make(chan struct{}, 1), done: make(chan struct{})}
	go sf.zeroer()
	sf.wakeZeroer()
	return sf, nil
}

func (segmentFS) OpenWriter(dir, name string) (types.WritableFile, error) {
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	// A file that existed before was synced into its directory already.
	return &segmentFile{f: f, dir: dir, dirSynced: true}, nil
}

// segmentFile is one segment open for writing. The log appends to it
// (raft-wal writes each segment front to back); a zeroer, for new
// files, keeps the space up to zeroAhead past the log's end written.
type segmentFile struct {
	f         *os.File
	dir       string
	dirSynced bool // only raft-wal's writer goroutine touches it

	mu      sync.Mutex
	size    int64 // zero up to here (0 once zeroing failed)
	end     int64 // end of the log's writes
	zeroed  int64 // the space before this is written (by the log or zeros)
	closing bool

	wake chan struct{}
	done chan struct{} // closed when the zeroer returns; nil without one
}

func (s *segmentFile) WriteAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	n, err := s.f.WriteAt(p, off)
	s.end = max(s.end, off+int64(n))
	behind := s.size > 0 && s.zeroed < min(s.size, s.end+zeroAhead/2)
	s.mu.Unlock()
	if behind {
		s.wakeZeroer()
	}
	return n, err
}

func (s *segmentFile) ReadAt(p []byte, off int64) (int, error) { return s.f.ReadAt(p, off) }

// Sync makes the log's writes durable; the first sync of a new file also
// syncs its directory, so the file itself survives a crash.
func (s *segmentFile) Sync() error {
	if err := fdatasync(s.f); err != nil {
		return err
	}
	if !s.dirSynced {
		if err := syncDir(s.dir); err != nil {
			return err
		}
		s.dirSynced = true
	}
	return nil
}

func (s *segmentFile) Close() error {
	if s.done != nil { // a new file, with a zeroer
		s.mu.Lock()
		s.closing = true
		s.mu.Unlock()
		s.wakeZeroer()
		<-s.done
	}
	return s.f.Close()
}

func (s *segmentFile) wakeZeroer() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// zeroer writes zeros from the log's end (or where it got to) up to
// zeroAhead past it, a chunk at a time under the lock so that it never
// writes where the log has, and syncs every zeroSync bytes so the log's
// own syncs do not carry its pages.
func (s *segmentFile) zeroer() {
	defer close(s.done)
	unsynced := int64(0)
	for range s.wake {
		for {
			s.mu.Lock()
			if s.closing {
				s.mu.Unlock()
				return
			}
			from, to := zeroRange(s.zeroed, s.end, s.size)
			if from >= to {
				s.mu.Unlock()
				break
			}
			n, err := s.f.WriteAt(zeros[:to-from], from)
			s.zeroed = from + int64(n)
			if err != nil {
				// Only a cost: the log's syncs stay as dear as
				// without zeroing.
				s.size = 0
			}
			s.mu.Unlock()
			if err != nil {
				return
			}
			if unsynced += int64(n); unsynced >= zeroSync {
				_ = fdatasync(s.f)
				unsynced = 0
			}
		}
		if unsynced > 0 {
			_ = fdatasync(s.f)
			unsynced = 0
		}
	}
}

// zeroRange is the next chunk to zero: from what is written already (by
// the log or zeros), to at most zeroAhead past the log's end and the
// file's size; empty (from ≥ to) when the window is written.
func zeroRange(zeroed, end, size int64) (from, to int64) {
	from = max(zeroed, end)
	return from, min(size, end+zeroAhead, from+zeroChunk)
}

func fdatasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			return err
		}
	}
}
