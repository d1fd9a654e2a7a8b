package cluster

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Scheduled backups: written whole with a checksum file, read back by
// VerifyBackup, the oldest pruned beyond keep, and a damaged or cut file
// refused.
func TestScheduledBackupFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "backups")
	if err := prepareBackupDir(dir); err != nil {
		t.Fatal(err)
	}
	x := newIdemFSM(t, 60_000, 1_000_000)
	at := time.Date(2026, 12, 6, 23, 0, 0, 0, time.UTC)
	var paths []string
	for i := range 4 {
		x.keyed("k"+strconv.Itoa(i), 1, 1_000_000+int64(i))
		snap := x.fsm.capture()
		path, size, err := writeBackup(dir, snap, at.Add(time.Duration(i)*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(path); err != nil || fi.Size() != size || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v (size %d)", path, fi, err, size)
		}
		got, summed, err := VerifyBackup(path)
		if err != nil || !summed || got.Meta.Index != snap.Meta.Index {
			t.Fatalf("verify %s: %v %v", path, err, summed)
		}
		paths = append(paths, path)
		if err := pruneBackups(dir, 2); err != nil {
			t.Fatal(err)
		}
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	want := []string{filepath.Base(paths[2]), filepath.Base(paths[2]) + ".sha256", filepath.Base(paths[3]), filepath.Base(paths[3]) + ".sha256"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("kept %v, want %v", names, want)
	}
	// Names sort by time: the same order as the times they carry.
	if filepath.Base(paths[2]) >= filepath.Base(paths[3]) || !strings.HasPrefix(filepath.Base(paths[3]), "troupe-20261206T230300.000Z-i") {
		t.Fatalf("names %v", names)
	}

	// A flipped byte fails the checksum; a cut file fails to read.
	b, err := os.ReadFile(paths[3])
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(paths[3], b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := VerifyBackup(paths[3]); err == nil {
		t.Fatal("a damaged backup verified")
	}
	if err := os.WriteFile(paths[2], b[:len(b)/3], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := VerifyBackup(paths[2]); err == nil || !strings.Contains(err.Error(), "not a usable backup") {
		t.Fatalf("a cut backup: %v", err)
	}
	// Without a checksum file it is read, and says so.
	os.Remove(paths[2] + ".sha256")
	if err := os.WriteFile(paths[2], b[:0], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := VerifyBackup(paths[2]); err == nil {
		t.Fatal("an empty file verified")
	}
}

// A --backup-dir that cannot be used fails at start, naming the flag.
func TestBackupDirUnusable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := prepareBackupDir(filepath.Join(file, "sub")); err == nil || !strings.Contains(err.Error(), "--backup-dir") {
		t.Fatalf("a dir under a file: %v", err)
	}
	s := BackupSchedule{Dir: "x", Every: 100 * time.Millisecond, Keep: 0}
	if err := s.validate(); err == nil || !strings.Contains(err.Error(), "1s..168h") || !strings.Contains(err.Error(), "1..10000") {
		t.Fatalf("bad schedule: %v", err)
	}
}
