package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/troupe-db/troupe/storage"
)

// BackupSchedule makes the leader write a backup into Dir every Every,
// keeping the newest Keep (--backup-dir, --backup-every, --backup-keep).
// An empty Dir: no scheduled backups.
type BackupSchedule struct {
	Dir   string
	Every time.Duration
	Keep  int
}

// The accepted ranges of BackupSchedule.
const (
	MinBackupEvery = time.Second
	MaxBackupEvery = 7 * 24 * time.Hour
	MaxBackupKeep  = 10000
)

func (s BackupSchedule) validate() error {
	if s.Dir == "" {
		return nil
	}
	var errs []error
	if s.Every < MinBackupEvery || s.Every > MaxBackupEvery {
		errs = append(errs, fmt.Errorf("--backup-every %v out of range 1s..168h", s.Every))
	}
	if s.Keep < 1 || s.Keep > MaxBackupKeep {
		errs = append(errs, fmt.Errorf("--backup-keep %d out of range 1..%d", s.Keep, MaxBackupKeep))
	}
	return errors.Join(errs...)
}

// backupSuffix ends every scheduled backup's name; ".sha256" after it
// names its checksum file (the format of sha256sum, so `sha256sum -c`
// checks it too).
const (
	backupPrefix = "troupe-"
	backupSuffix = ".backup"
	sumSuffix    = ".sha256"
)

// prepareBackupDir makes sure dir exists and takes files, before the node
// writes anything else: a start with an unusable --backup-dir fails at once.
func prepareBackupDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("cannot use --backup-dir %s: %w", dir, err)
	}
	probe, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return fmt.Errorf("cannot use --backup-dir %s: %w", dir, err)
	}
	probe.Close()
	return os.Remove(probe.Name())
}

// backupMetrics are the scheduled backups' metrics.
type backupMetrics struct {
	lastSuccess atomic.Int64 // unix seconds; 0: none yet
	lastSize    atomic.Int64
	lastMillis  atomic.Uint64 // how long the last one took
	failures    *metrics.Counter
	written     *metrics.Counter
}

func newBackupMetrics(set *metrics.Set) *backupMetrics {
	m := &backupMetrics{
		failures: set.NewCounter(`troupe_backup_failures_total`),
		written:  set.NewCounter(`troupe_backups_total`),
	}
	set.NewGauge(`troupe_backup_last_success_timestamp_seconds`, func() float64 { return float64(m.lastSuccess.Load()) })
	set.NewGauge(`troupe_backup_last_size_bytes`, func() float64 { return float64(m.lastSize.Load()) })
	set.NewGauge(`troupe_backup_last_duration_seconds`, func() float64 { return float64(m.lastMillis.Load()) / 1000 })
	return m
}

// runBackups writes a backup every s.Every while this node leads, until
// the node stops. A failure is logged and counted, never fatal: the next
// tick tries again.
func (n *Node) runBackups(s BackupSchedule, m *backupMetrics) {
	defer n.wg.Done()
	t := time.NewTicker(s.Every)
	defer t.Stop()
	var lastIndex uint64
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		if !n.IsLeader() {
			continue
		}
		start := time.Now()
		snap := n.Backup()
		if snap.Meta.Index == lastIndex {
			// Nothing new since the last one: it still holds everything.
			m.lastSuccess.Store(time.Now().Unix())
			continue
		}
		name, size, err := writeBackup(s.Dir, snap, start)
		if err == nil {
			err = pruneBackups(s.Dir, s.Keep)
		}
		if err != nil {
			m.failures.Inc()
			n.log.Error("scheduled backup failed", slog.String("dir", s.Dir), slog.Any("err", err))
			continue
		}
		lastIndex = snap.Meta.Index
		m.written.Inc()
		m.lastSuccess.Store(time.Now().Unix())
		m.lastSize.Store(size)
		m.lastMillis.Store(uint64(time.Since(start).Milliseconds()))
		n.log.Info("scheduled backup written", slog.String("file", name), slog.Uint64("index", snap.Meta.Index), slog.Int64("bytes", size))
	}
}

// BackupName is the file name of a scheduled backup taken at t of index:
// names sort by time.
func BackupName(t time.Time, index uint64) string {
	return fmt.Sprintf("%s%s-i%012d%s", backupPrefix, t.UTC().Format("20060102T150405.000Z"), index, backupSuffix)
}

// writeBackup writes snap into dir atomically — a temporary file, synced,
// renamed, the dir synced — with its checksum file beside it, and returns
// the backup's path and size.
func writeBackup(dir string, snap *storage.Snapshot, at time.Time) (string, int64, error) {
	name := BackupName(at, snap.Meta.Index)
	path := filepath.Join(dir, name)
	sum := sha256.New()
	size, err := writeAtomically(path, func(w io.Writer) error {
		return storage.WriteSnapshot(io.MultiWriter(w, sum), snap)
	})
	if err != nil {
		return "", 0, err
	}
	line := hex.EncodeToString(sum.Sum(nil)) + "  " + name + "\n"
	if _, err := writeAtomically(path+sumSuffix, func(w io.Writer) error {
		_, err := io.WriteString(w, line)
		return err
	}); err != nil {
		return "", 0, err
	}
	return path, size, syncDir(dir)
}

// writeAtomically writes path through a temporary file that is synced and
// renamed into place, so a crash leaves the old state or the new, never
// half a file under path.
func writeAtomically(path string, write func(io.Writer) error) (int64, error) {
	tmp := path + ".partial"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, err
	}
	cw := &countingWriter{w: f}
	err = write(cw)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return 0, fmt.Errorf("cannot write %s: %w", path, err)
	}
	return cw.n, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// pruneBackups removes the oldest scheduled backups (and their checksum
// files) beyond keep, and any temporary file a crash left. Only files named
// as scheduled backups are touched.
func pruneBackups(dir string, keep int) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var backups []string
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, backupPrefix) {
			continue
		}
		switch {
		case strings.HasSuffix(name, backupSuffix):
			backups = append(backups, name)
		case strings.HasSuffix(name, ".partial"):
			errs = append(errs, removeIfOld(filepath.Join(dir, name)))
		}
	}
	slices.Sort(backups)
	for _, name := range backups[:max(0, len(backups)-keep)] {
		errs = append(errs, os.Remove(filepath.Join(dir, name)))
		if err := os.Remove(filepath.Join(dir, name+sumSuffix)); err != nil && !os.IsNotExist(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeIfOld removes a temporary file left by a write that did not
// finish, unless it may still be being written (younger than a minute).
func removeIfOld(path string) error {
	fi, err := os.Stat(path)
	if err != nil || time.Since(fi.ModTime()) < time.Minute {
		return nil
	}
	return os.Remove(path)
}

// VerifyBackup reads the backup at path whole, as a restore would, and
// checks it against its checksum file if one lies beside it. It returns
// the snapshot and whether a checksum was checked.
func VerifyBackup(path string) (*storage.Snapshot, bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	sum := sha256.New()
	snap, err := storage.ReadSnapshot(io.TeeReader(f, sum))
	if err != nil {
		return nil, false, fmt.Errorf("%s is not a usable backup: %w", path, err)
	}
	// Whatever follows the snapshot's end counts too.
	if _, err := io.Copy(sum, f); err != nil {
		return nil, false, err
	}
	want, err := os.ReadFile(path + sumSuffix)
	if os.IsNotExist(err) {
		return snap, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	fields := strings.Fields(string(want))
	if len(fields) < 1 || fields[0] != hex.EncodeToString(sum.Sum(nil)) {
		return nil, true, fmt.Errorf("%s does not match its checksum in %s", path, path+sumSuffix)
	}
	return snap, true, nil
}
