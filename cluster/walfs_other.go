//go:build !linux

package cluster

import (
	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
)

// segmentFiler returns raft-wal's own segment files: the zeroed,
// fdatasync'ed ones of walfs_linux.go are for Linux.
func segmentFiler(dir string) types.SegmentFiler {
	return segment.NewFiler(dir, fs.New())
}
