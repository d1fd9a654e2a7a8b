package storage

import (
	"sort"

	"github.com/google/btree"
)

// A userIndex orders a shard's records by id: a copy-on-write B-tree,
// and in front of it a short sorted run of the most recent ids.
//
// Why the run: views (UserShard.View) share the tree, and the first write
// to a tree node after a view copies the node. A shard that is read
// between its writes publishes a view per write, so every write would
// copy a root-to-leaf path (≈ 2.7 KB with degree 32). But most writes are
// creates, and new ids grow (their stamps do): they go to the end of the
// order. They are appended to recent instead, which views share by its
// length, as the arena's chunks are shared: the owner appends past what a
// view sees and never writes what it sees. Once recent holds
// recentMax ids it moves into the tree, one path copy for that many
// creates.
//
// Invariant: every id in recent is greater than every id in the tree.
// An insert that would break it (an id lower than the run's first) goes
// to the tree; a change to an id in the run copies the run first if a
// view shares it.
type userIndex struct {
	tree   *btree.BTreeG[userRef]
	recent []userRef
	// shared: a clone holds recent[:len] of the same array, so its
	// elements may not be written (appending past them may).
	shared bool
}

// recentMax bounds the run: a look-up in it is a binary search of at
// most this many, and a move into the tree happens once per this many
// creates.
const recentMax = 128

func newUserIndex() userIndex {
	return userIndex{tree: btree.NewG(btreeDegree, lessRef)}
}

// clone returns an index with the same ids that shares structure with x;
// later changes to either do not show in the other.
func (x *userIndex) clone() userIndex {
	x.shared = x.shared || len(x.recent) > 0
	return userIndex{tree: x.tree.Clone(), recent: x.recent[:len(x.recent):len(x.recent)], shared: x.shared}
}

func (x *userIndex) len() int { return x.tree.Len() + len(x.recent) }

// inRecent reports whether k sorts at or after the run's first id, and
// where it is (or would be) in the run.
func (x *userIndex) inRecent(k userRef) (int, bool) {
	if len(x.recent) == 0 || lessRef(k, x.recent[0]) {
		return 0, false
	}
	return sort.Search(len(x.recent), func(i int) bool { return !lessRef(x.recent[i], k) }), true
}

func (x *userIndex) found(i int, k userRef) bool {
	return i < len(x.recent) && !lessRef(k, x.recent[i])
}

func (x *userIndex) get(k userRef) (userRef, bool) {
	if i, ok := x.inRecent(k); ok {
		if x.found(i, k) {
			return x.recent[i], true
		}
		return userRef{}, false
	}
	return x.tree.Get(k)
}

func (x *userIndex) has(k userRef) bool {
	_, ok := x.get(k)
	return ok
}

// own makes recent's array the index's alone before an element of it is
// written.
func (x *userIndex) own() {
	if x.shared {
		x.recent = append(make([]userRef, 0, recentMax), x.recent...)
		x.shared = false
	}
}

// replaceOrInsert adds r, or replaces the entry with r's id and returns
// it.
func (x *userIndex) replaceOrInsert(r userRef) (userRef, bool) {
	i, ok := x.inRecent(r)
	switch {
	case ok && x.found(i, r):
		x.own()
		old := x.recent[i]
		x.recent[i] = r
		return old, true
	case ok && i < len(x.recent):
		// Between two ids of the run: rare (ids grow); keep it sorted by
		// moving the run into the tree first.
		x.flush()
		return x.tree.ReplaceOrInsert(r)
	case ok, len(x.recent) == 0 && x.greaterThanTree(r):
		if len(x.recent) == recentMax {
			x.flush()
		}
		x.recent = append(x.recent, r)
		return userRef{}, false
	default:
		return x.tree.ReplaceOrInsert(r)
	}
}

// greaterThanTree reports whether r sorts after every id in the tree.
func (x *userIndex) greaterThanTree(r userRef) bool {
	last, ok := x.tree.Max()
	return !ok || lessRef(last, r)
}

// flush moves the run into the tree.
func (x *userIndex) flush() {
	for _, r := range x.recent {
		x.tree.ReplaceOrInsert(r)
	}
	if x.shared {
		x.recent, x.shared = make([]userRef, 0, recentMax), false
	} else {
		x.recent = x.recent[:0]
	}
}

// delete removes the entry with k's id and returns it.
func (x *userIndex) delete(k userRef) (userRef, bool) {
	i, ok := x.inRecent(k)
	if !ok {
		return x.tree.Delete(k)
	}
	if !x.found(i, k) {
		return userRef{}, false
	}
	x.own()
	old := x.recent[i]
	x.recent = append(x.recent[:i], x.recent[i+1:]...)
	return old, true
}

// ascend calls fn for every entry in id order until it returns false.
func (x *userIndex) ascend(fn func(userRef) bool) {
	more := true
	x.tree.Ascend(func(r userRef) bool {
		more = fn(r)
		return more
	})
	for i := 0; more && i < len(x.recent); i++ {
		more = fn(x.recent[i])
	}
}

// ascendFrom calls fn for every entry from pivot's id on, in id order,
// until it returns false.
func (x *userIndex) ascendFrom(pivot userRef, fn func(userRef) bool) {
	i, ok := x.inRecent(pivot)
	more := true
	if !ok {
		x.tree.AscendGreaterOrEqual(pivot, func(r userRef) bool {
			more = fn(r)
			return more
		})
	}
	for ; more && i < len(x.recent); i++ {
		more = fn(x.recent[i])
	}
}
