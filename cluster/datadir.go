package cluster

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// LockFile is the file in a data dir that a running node holds locked, so
// that a second process on the same data dir is refused at once.
const LockFile = "LOCK"

// dataDirEntries are the names troupe itself puts in a data dir; a
// directory holding none of them, but other things, belongs to something
// else. lost+found is what a freshly made file system holds at its root.
var dataDirEntries = []string{"node-id", "raft", "admin-password", RestoreFile, LockFile}

// CheckDataDir reports whether dir can be a node's data dir: absent, empty,
// or holding troupe's own files. It writes nothing.
func CheckDataDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("cannot read data dir %s (--data): %w", dir, pathCause(err))
	}
	var foreign []string
	for _, e := range entries {
		if slices.Contains(dataDirEntries, e.Name()) {
			return nil
		}
		if e.Name() != "lost+found" {
			foreign = append(foreign, e.Name())
		}
	}
	if len(foreign) == 0 {
		return nil
	}
	if len(foreign) > 3 {
		foreign = append(foreign[:3], "…")
	}
	return fmt.Errorf("cannot use data dir %s (--data): it is not a troupe data dir (it holds %s); give an empty or new directory",
		dir, strings.Join(foreign, ", "))
}

// LockDataDir creates dir if needed and locks it for this process until
// release is called. A data dir another process holds is refused at once.
func LockDataDir(dir string) (release func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cannot create data dir %s (--data): %w", dir, pathCause(err))
	}
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cannot lock data dir %s (--data): %w", dir, pathCause(err))
	}
	if err := lockFile(f); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if pid := strings.TrimSpace(string(holder)); pid != "" {
			return nil, fmt.Errorf("cannot use data dir %s (--data): another troupe process (pid %s) is using it", dir, pid)
		}
		return nil, fmt.Errorf("cannot use data dir %s (--data): another process holds its lock: %w", dir, err)
	}
	// The holder's pid, for the message above; the lock, not the text,
	// is what excludes.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(fmt.Sprintf("%d\n", os.Getpid())), 0)
	}
	return func() { unlockFile(f); f.Close() }, nil
}

// pathCause strips a *fs.PathError down to its cause, since the message
// around it names the path already.
func pathCause(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
