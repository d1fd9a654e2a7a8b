package storage

import "unicode/utf8"

// Restoring a version: the op list that turns a document's text into an
// older text as a small edit rather than a replacement of everything, so
// that what did not change keeps its place (and the carets of the people
// typing in it survive the transform).

// The diff's search is bounded: at most maxDiffEdits code points
// inserted or deleted (its trace, kept for the walk back, is O(edits²)
// ints: 2 MiB at most) and maxDiffWork steps (about one per code point
// compared). Beyond either, the changed middle is replaced in one op.
// The search runs on middles of at most maxDiffBytes together (as code
// points, 4 bytes each), so a request never copies a whole large text.
const (
	maxDiffEdits = 512
	maxDiffWork  = 1 << 22
	maxDiffBytes = 2 << 20
)

// DiffOps returns ops that turn from into to (nil if they are equal):
// the common start and end are kept, and the middle is the shortest edit
// script of code points (Myers' algorithm) as long as finding it takes at
// most maxDiffWork steps and it makes at most MaxOpsPerList ops;
// otherwise one replace of the middle. Adjacent deletes and inserts are
// merged into replaces.
func DiffOps(from, to string) []Op {
	// The common start and end, by bytes, then back to the start of a
	// code point. Whether a byte offset starts a code point depends only
	// on the bytes before it (after it, for the end), which the two texts
	// share; where one text ends, it does.
	pre := 0
	for pre < len(from) && pre < len(to) && from[pre] == to[pre] {
		pre++
	}
	for pre > 0 && pre < len(from) && pre < len(to) && !utf8.RuneStart(from[pre]) {
		pre--
	}
	suf := 0
	for suf < len(from)-pre && suf < len(to)-pre && from[len(from)-1-suf] == to[len(to)-1-suf] {
		suf++
	}
	for suf > 0 && !utf8.RuneStart(from[len(from)-suf]) {
		suf--
	}
	ma, mb := from[pre:len(from)-suf], to[pre:len(to)-suf]
	if ma == "" && mb == "" {
		return nil
	}
	pos := utf8.RuneCountInString(from[:pre])
	if len(ma)+len(mb) <= maxDiffBytes {
		a, b := []rune(ma), []rune(mb)
		if script, ok := shortestEdit(a, b, maxDiffEdits, maxDiffWork); ok {
			return scriptOps(script, b, pos)
		}
	}
	n := utf8.RuneCountInString(ma)
	switch {
	case n == 0:
		return []Op{{Kind: OpInsert, Pos: pos, Text: mb}}
	case mb == "":
		return []Op{{Kind: OpDelete, Pos: pos, Len: n}}
	}
	return []Op{{Kind: OpReplace, Pos: pos, Len: n, Text: mb}}
}

// An edit script step: keep a[i] (=b[j]), delete a[i] or insert b[j].
type editStep byte

const (
	stepKeep editStep = iota
	stepDelete
	stepInsert
)

// shortestEdit is Myers' O((N+M)·D) greedy search with the trace kept for
// the walk back; false if it needs more than maxD edits or maxWork steps.
func shortestEdit(a, b []rune, maxD, maxWork int) ([]editStep, bool) {
	n, m := len(a), len(b)
	maxD = min(maxD, n+m)
	off := maxD + 1
	v := make([]int, 2*maxD+3)
	var trace [][]int
	work := 0
	for d := 0; d <= maxD; d++ {
		trace = append(trace, append([]int(nil), v[off-d-1:off+d+2]...))
		for k := -d; k <= d; k += 2 {
			var x int
			if k == -d || (k != d && v[off+k-1] < v[off+k+1]) {
				x = v[off+k+1] // down: an insert
			} else {
				x = v[off+k-1] + 1 // right: a delete
			}
			y := x - k
			for x < n && y < m && a[x] == b[y] {
				x++
				y++
				work++
			}
			v[off+k] = x
			work++
			if work > maxWork {
				return nil, false
			}
			if x >= n && y >= m {
				return walkBack(trace, d, n, m), true
			}
		}
	}
	return nil, false
}

// walkBack turns the trace into the steps, first to last. trace[d] holds
// v[-d-1 .. d+1] as it was before round d.
func walkBack(trace [][]int, dEnd, n, m int) []editStep {
	var rev []editStep
	x, y := n, m
	for d := dEnd; d > 0; d-- {
		vd := trace[d] // index k + d + 1
		at := func(k int) int { return vd[k+d+1] }
		k := x - y
		var prevK int
		if k == -d || (k != d && at(k-1) < at(k+1)) {
			prevK = k + 1
		} else {
			prevK = k - 1
		}
		prevX := at(prevK)
		prevY := prevX - prevK
		for x > prevX && y > prevY {
			rev = append(rev, stepKeep)
			x--
			y--
		}
		if x == prevX {
			rev = append(rev, stepInsert)
		} else {
			rev = append(rev, stepDelete)
		}
		x, y = prevX, prevY
	}
	for x > 0 && y > 0 {
		rev = append(rev, stepKeep)
		x--
		y--
	}
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	return rev
}

// scriptOps turns the steps (of a text into b, at pos of the whole text) into
// ops applied in order, each at its position in the text as the ops
// before it left it: a run of deletes next to a run of inserts is one
// replace.
func scriptOps(script []editStep, b []rune, pos int) []Op {
	var ops []Op
	j := 0 // in b
	for s := 0; s < len(script); {
		if script[s] == stepKeep {
			j, pos, s = j+1, pos+1, s+1
			continue
		}
		del, ins := 0, 0
		for ; s < len(script) && script[s] != stepKeep; s++ {
			if script[s] == stepDelete {
				del++
			} else {
				ins++
			}
		}
		text := string(b[j : j+ins])
		switch {
		case del == 0:
			ops = append(ops, Op{Kind: OpInsert, Pos: pos, Text: text})
		case ins == 0:
			ops = append(ops, Op{Kind: OpDelete, Pos: pos, Len: del})
		default:
			ops = append(ops, Op{Kind: OpReplace, Pos: pos, Len: del, Text: text})
		}
		j, pos = j+ins, pos+ins
	}
	return ops
}
