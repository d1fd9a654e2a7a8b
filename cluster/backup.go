package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"

	"github.com/troupe-db/troupe/storage"
)

// RestoreFile is where `troupe restore` leaves a backup in a data dir; the
// node that starts there boots a fresh one-node cluster holding it.
const RestoreFile = "restore.snapshot"

// Backup captures a consistent, immutable view of the whole state; write
// it with storage.WriteSnapshot (the format of raft snapshots) while the
// node goes on. Backups hold password hashes: they are secrets.
func (n *Node) Backup() *storage.Snapshot { return n.fsm.Capture() }

// PrepareRestore checks that from is a readable backup and that dataDir
// holds no raft state, then places the backup in dataDir, where the next
// `troupe serve` picks it up.
func PrepareRestore(from, dataDir string) (*storage.Snapshot, error) {
	f, err := os.Open(from)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	snap, err := storage.ReadSnapshot(f)
	if err != nil {
		return nil, fmt.Errorf("%s is not a usable backup: %w", from, err)
	}
	if snap.Meta.Init == nil {
		return nil, fmt.Errorf("%s holds an uninitialised cluster", from)
	}
	if entries, err := os.ReadDir(filepath.Join(dataDir, "raft")); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("data dir %s already holds a node's raft state; restore into an empty dir", dataDir)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	dst := filepath.Join(dataDir, RestoreFile)
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(out, f); err != nil {
		out.Close()
		return nil, err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return nil, err
	}
	if err := out.Close(); err != nil {
		return nil, err
	}
	return snap, os.Rename(tmp, dst)
}

// pendingRestore returns the backup waiting in the data dir, if any.
func pendingRestore(dataDir string) string {
	p := filepath.Join(dataDir, RestoreFile)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return ""
}

// restoreBackup makes this fresh one-node cluster's leader take on the
// backup's state, then proposes a no-op so the FSM's applied index covers
// raft's restore entry.
func (n *Node) restoreBackup(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Size: st.Size()}
	if err := n.raft.Restore(meta, f, 10*time.Minute); err != nil {
		return fmt.Errorf("cannot restore %s: %w", path, err)
	}
	if _, _, err := n.Propose(context.Background(), &storage.Command{Kind: storage.CmdNoop, Stamp: n.Stamps(1)}, time.Now().Add(n.cfg.ApplyTimeout)); err != nil {
		return err
	}
	if err := os.Rename(path, path+".done"); err != nil && !errors.Is(err, os.ErrNotExist) {
		n.log.Warn("cannot mark the backup as restored", slog.Any("err", err))
	}
	n.log.Info("restored the backup into a new one-node cluster", slog.String("from", path),
		slog.Uint64("index", n.fsm.AppliedIndex()))
	return nil
}
