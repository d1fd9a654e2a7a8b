package storage

import (
	"io"
	"strings"
	"unicode/utf8"
)

// Text is the content of a collaborative document: an immutable sequence
// of Unicode code points. It is a rope, a height-balanced (AVL) binary tree
// whose leaves hold chunks of UTF-8, with the byte and code-point counts of
// every subtree cached in its node. An edit copies only the path from the
// root to the leaves it touches, O(log n) nodes and at most a few chunks,
// and returns a new Text; every older Text stays valid and shares all the
// rest, so a snapshot can hold a version while the document goes on.
//
// Positions and lengths count code points. Methods clamp positions and
// lengths to the text rather than panic: callers that must refuse a bad
// range (Apply) check it first. Text assumes valid UTF-8; given anything
// else it stays memory-safe, counting each invalid byte as one code point
// as package utf8 does.
//
// The zero Text is empty and ready to use. Texts are safe to share between
// goroutines: nothing in them is ever written after construction.
type Text struct{ root *rnode }

// Leaf sizes in bytes. Every leaf holds at most maxLeaf bytes; every leaf
// except the first and the last holds at least minLeaf, so a long sequence
// of small edits cannot fragment the text into tiny leaves (concat keeps
// this, see there). Chunks are cut only at the start of a code point.
const (
	maxLeaf = 1024
	minLeaf = maxLeaf / 4
)

// rnode is a rope node: a leaf (height 0, chunk set, no children) or an
// inner node with both children set. Nodes are never modified once built.
type rnode struct {
	left, right *rnode
	chunk       string
	bytes       int // of the subtree
	runes       int // of the subtree
	height      int
}

// NewText returns the text holding s.
func NewText(s string) Text { return Text{root: fromString(s)} }

// Len is the number of code points.
func (t Text) Len() int {
	if t.root == nil {
		return 0
	}
	return t.root.runes
}

// Size is the length of the UTF-8 encoding in bytes.
func (t Text) Size() int {
	if t.root == nil {
		return 0
	}
	return t.root.bytes
}

// String returns the whole text.
func (t Text) String() string {
	if t.root == nil {
		return ""
	}
	if t.root.height == 0 {
		return t.root.chunk
	}
	var b strings.Builder
	b.Grow(t.root.bytes)
	walkLeaves(t.root, func(s string) { b.WriteString(s) })
	return b.String()
}

// AppendTo appends the UTF-8 encoding of the text to b.
func (t Text) AppendTo(b []byte) []byte {
	if t.root == nil {
		return b
	}
	b = growBytes(b, t.root.bytes)
	walkLeaves(t.root, func(s string) { b = append(b, s...) })
	return b
}

// WriteTo writes the text to w, chunk by chunk, without building it in
// memory.
func (t Text) WriteTo(w io.Writer) (int64, error) {
	var total int64
	var err error
	walkLeaves(t.root, func(s string) {
		if err != nil {
			return
		}
		var n int
		n, err = io.WriteString(w, s)
		total += int64(n)
	})
	return total, err
}

// Slice returns the n code points from pos.
func (t Text) Slice(pos, n int) string {
	pos, n = t.clamp(pos, n)
	if n == 0 {
		return ""
	}
	return string(appendRange(nil, t.root, pos, n))
}

// Insert returns the text with s inserted before the code point at pos
// (pos = Len() appends).
func (t Text) Insert(pos int, s string) Text {
	if s == "" {
		return t
	}
	pos, _ = t.clamp(pos, 0)
	if t.root == nil {
		return NewText(s)
	}
	if len(s) <= maxLeaf {
		if r := insertInLeaf(t.root, pos, s, utf8.RuneCountInString(s)); r != nil {
			return Text{root: r}
		}
	}
	l, r := split(t.root, pos)
	return Text{root: concat(concat(l, fromString(s)), r)}
}

// Delete returns the text without the n code points from pos.
func (t Text) Delete(pos, n int) Text {
	pos, n = t.clamp(pos, n)
	if n == 0 {
		return t
	}
	if n == t.root.runes {
		return Text{}
	}
	if r := deleteInLeaf(t.root, pos, n); r != nil {
		return Text{root: r}
	}
	l, rest := split(t.root, pos)
	_, r := split(rest, n)
	return Text{root: concat(l, r)}
}

// clamp limits pos to [0, Len()] and n to [0, Len()-pos].
func (t Text) clamp(pos, n int) (int, int) {
	size := t.Len()
	pos = min(max(pos, 0), size)
	n = min(max(n, 0), size-pos)
	return pos, n
}

func growBytes(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), len(b)+n)
		copy(nb, b)
		return nb
	}
	return b
}

func walkLeaves(n *rnode, f func(string)) {
	for n != nil {
		if n.height == 0 {
			f(n.chunk)
			return
		}
		walkLeaves(n.left, f)
		n = n.right
	}
}

// appendRange appends the cnt code points of n from pos; the range is
// within n.
func appendRange(dst []byte, n *rnode, pos, cnt int) []byte {
	for cnt > 0 {
		if n.height == 0 {
			start := byteOffset(n.chunk, pos)
			end := start + byteOffset(n.chunk[start:], cnt)
			return append(dst, n.chunk[start:end]...)
		}
		if pos < n.left.runes {
			k := min(cnt, n.left.runes-pos)
			dst = appendRange(dst, n.left, pos, k)
			cnt -= k
			pos = 0
		} else {
			pos -= n.left.runes
		}
		n = n.right
	}
	return dst
}

// byteOffset is the byte offset of the code point at index pos of s, or
// len(s) when s has no more than pos code points.
func byteOffset(s string, pos int) int {
	if pos >= len(s) {
		return len(s) // pos code points take at least pos bytes
	}
	i := 0
	for ; pos > 0 && i < len(s); pos-- {
		if s[i] < utf8.RuneSelf {
			i++
			continue
		}
		_, w := utf8.DecodeRuneInString(s[i:])
		i += w
	}
	return i
}

func newLeaf(s string) *rnode {
	if s == "" {
		return nil
	}
	return &rnode{chunk: s, bytes: len(s), runes: utf8.RuneCountInString(s)}
}

func newNode(l, r *rnode) *rnode {
	return &rnode{left: l, right: r, bytes: l.bytes + r.bytes, runes: l.runes + r.runes,
		height: 1 + max(l.height, r.height)}
}

// fromString builds a balanced rope of s: chunks of nearly equal size, so
// that each is at least minLeaf bytes when s needs more than one.
func fromString(s string) *rnode {
	if s == "" {
		return nil
	}
	if len(s) <= maxLeaf {
		return newLeaf(s)
	}
	chunks := (len(s) + maxLeaf - 1) / maxLeaf
	// The target leaves room for cuts that move forward to a code point.
	target := (len(s) + chunks - 1) / chunks
	if target > maxLeaf-utf8.UTFMax {
		chunks = (len(s) + maxLeaf - utf8.UTFMax - 1) / (maxLeaf - utf8.UTFMax)
		target = (len(s) + chunks - 1) / chunks
	}
	leaves := make([]*rnode, 0, chunks+1)
	for start := 0; start < len(s); {
		end := start + target
		if end >= len(s) {
			end = len(s)
		} else {
			// Move the cut forward to the start of a code point; an
			// invalid run of continuation bytes is cut anyway.
			for i := 0; i < utf8.UTFMax-1 && end < len(s) && !utf8.RuneStart(s[end]); i++ {
				end++
			}
		}
		leaves = append(leaves, newLeaf(s[start:end]))
		start = end
	}
	return buildBalanced(leaves)
}

// buildBalanced halves recursively: heights of siblings differ by at most
// one.
func buildBalanced(leaves []*rnode) *rnode {
	if len(leaves) == 1 {
		return leaves[0]
	}
	mid := len(leaves) / 2
	return newNode(buildBalanced(leaves[:mid]), buildBalanced(leaves[mid:]))
}

// insertInLeaf inserts s at pos by rewriting the one leaf that holds pos
// and copying the path to it, or returns nil if that leaf has no room.
func insertInLeaf(n *rnode, pos int, s string, runes int) *rnode {
	if n.height == 0 {
		if n.bytes+len(s) > maxLeaf {
			return nil
		}
		b := byteOffset(n.chunk, pos)
		return &rnode{chunk: n.chunk[:b] + s + n.chunk[b:], bytes: n.bytes + len(s), runes: n.runes + runes}
	}
	if pos <= n.left.runes {
		l := insertInLeaf(n.left, pos, s, runes)
		if l == nil {
			return nil
		}
		return newNode(l, n.right)
	}
	r := insertInLeaf(n.right, pos-n.left.runes, s, runes)
	if r == nil {
		return nil
	}
	return newNode(n.left, r)
}

// deleteInLeaf deletes [pos, pos+cnt) when it lies within one leaf that
// keeps at least minLeaf bytes, copying the path to it; otherwise nil.
func deleteInLeaf(n *rnode, pos, cnt int) *rnode {
	if n.height == 0 {
		start := byteOffset(n.chunk, pos)
		end := start + byteOffset(n.chunk[start:], cnt)
		if n.bytes-(end-start) < minLeaf {
			return nil
		}
		return &rnode{chunk: n.chunk[:start] + n.chunk[end:], bytes: n.bytes - (end - start), runes: n.runes - cnt}
	}
	switch {
	case pos+cnt <= n.left.runes:
		l := deleteInLeaf(n.left, pos, cnt)
		if l == nil {
			return nil
		}
		return newNode(l, n.right)
	case pos >= n.left.runes:
		r := deleteInLeaf(n.right, pos-n.left.runes, cnt)
		if r == nil {
			return nil
		}
		return newNode(n.left, r)
	}
	return nil
}

// split cuts n before the code point at pos. Its joins cost O(log n) in
// all (the heights of the pieces joined along the path telescope).
func split(n *rnode, pos int) (*rnode, *rnode) {
	switch {
	case n == nil:
		return nil, nil
	case pos <= 0:
		return nil, n
	case pos >= n.runes:
		return n, nil
	case n.height == 0:
		b := byteOffset(n.chunk, pos)
		return newLeaf(n.chunk[:b]), newLeaf(n.chunk[b:])
	case pos <= n.left.runes:
		l, r := split(n.left, pos)
		return l, join(r, n.right)
	default:
		l, r := split(n.right, pos-n.left.runes)
		return join(n.left, l), r
	}
}

// join concatenates two AVL ropes in O(|height(l) - height(r)|) and keeps
// the result an AVL tree: the shorter one is hung on the taller one's
// spine at the height where it fits, rotating on the way back up (the
// join algorithm of Blelloch, Ferizovic and Sun, "Just Join for Parallel
// Ordered Sets", for a tree whose elements live in the leaves). Two
// leaves that fit in one are merged.
func join(l, r *rnode) *rnode {
	switch {
	case l == nil:
		return r
	case r == nil:
		return l
	case l.height > r.height+1:
		return joinRight(l, r)
	case r.height > l.height+1:
		return joinLeft(l, r)
	}
	return pair(l, r)
}

// pair makes the node (l, r), heights within one of each other, or merges
// two leaves that fit in one.
func pair(l, r *rnode) *rnode {
	if l.height == 0 && r.height == 0 && l.bytes+r.bytes <= maxLeaf {
		return &rnode{chunk: l.chunk + r.chunk, bytes: l.bytes + r.bytes, runes: l.runes + r.runes}
	}
	return newNode(l, r)
}

// joinRight hangs r on the right spine of l; l.height > r.height+1.
func joinRight(l, r *rnode) *rnode {
	c := l.right
	var t *rnode
	if c.height <= r.height+1 {
		t = pair(c, r)
		if t.height <= l.left.height+1 {
			return newNode(l.left, t)
		}
		// t is a node one too tall: rotate right below, then left here.
		return rotateLeft(newNode(l.left, rotateRight(t)))
	}
	t = joinRight(c, r)
	if t.height <= l.left.height+1 {
		return newNode(l.left, t)
	}
	return rotateLeft(newNode(l.left, t))
}

// joinLeft is the mirror of joinRight; r.height > l.height+1.
func joinLeft(l, r *rnode) *rnode {
	c := r.left
	var t *rnode
	if c.height <= l.height+1 {
		t = pair(l, c)
		if t.height <= r.right.height+1 {
			return newNode(t, r.right)
		}
		return rotateRight(newNode(rotateLeft(t), r.right))
	}
	t = joinLeft(l, c)
	if t.height <= r.right.height+1 {
		return newNode(t, r.right)
	}
	return rotateRight(newNode(t, r.right))
}

func rotateLeft(n *rnode) *rnode {
	r := n.right
	return newNode(newNode(n.left, r.left), r.right)
}

func rotateRight(n *rnode) *rnode {
	l := n.left
	return newNode(l.left, newNode(l.right, n.right))
}

func firstLeaf(n *rnode) *rnode {
	for n.height > 0 {
		n = n.left
	}
	return n
}

func lastLeaf(n *rnode) *rnode {
	for n.height > 0 {
		n = n.right
	}
	return n
}

// concat joins l and r and keeps the leaf invariant (every leaf but the
// first and the last holds at least minLeaf bytes): the two leaves that
// meet at the seam, the only ones an edit can have shrunk, are merged, or
// evened out when they do not fit in one; a merged leaf still below
// minLeaf absorbs its neighbour too. Each step is a split or join of
// O(log n).
func concat(l, r *rnode) *rnode {
	if l == nil {
		return r
	}
	if r == nil {
		return l
	}
	a, b := lastLeaf(l), firstLeaf(r)
	if a.bytes >= minLeaf && b.bytes >= minLeaf {
		return join(l, r)
	}
	l, _ = split(l, l.runes-a.runes)
	_, r = split(r, b.runes)
	s := a.chunk + b.chunk
	if len(s) < minLeaf {
		switch {
		case l != nil:
			a2 := lastLeaf(l)
			l, _ = split(l, l.runes-a2.runes)
			s = a2.chunk + s
		case r != nil:
			b2 := firstLeaf(r)
			_, r = split(r, b2.runes)
			s += b2.chunk
		}
	}
	return join(join(l, fromString(s)), r)
}
