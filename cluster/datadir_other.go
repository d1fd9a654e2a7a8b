//go:build !unix

package cluster

import "os"

// lockFile does not lock where flock is unavailable: there, a second
// process on a data dir is refused by the raft log's own lock instead.
func lockFile(*os.File) error { return nil }

func unlockFile(*os.File) {}
