package storage

// Commands forwarded by a follower are stamped again by the leader, which
// alone decides stamps (and so the ids and times derived from them), and
// their results travel back to the follower in the binary encoding.

// StampCount is how many consecutive stamps c takes: one per user a
// batch creates, one for any other command.
func (c *Command) StampCount() int {
	if c.Kind == CmdUserBatch && len(c.Batch) > 0 {
		return len(c.Batch)
	}
	return 1
}

// Restamp gives c the first of StampCount() fresh stamps and derives the
// ids of the users it creates from them again, keeping each id's home
// shard. An id that does not parse is left as it is (apply refuses it).
func (c *Command) Restamp(stamp uint64) {
	c.Stamp = stamp
	switch c.Kind {
	case CmdUserCreate:
		if c.Create != nil {
			restampItem(c.Create, stamp)
		}
	case CmdUserBatch:
		for i := range c.Batch {
			restampItem(&c.Batch[i], stamp+uint64(i))
		}
	}
}

func restampItem(it *BatchItem, stamp uint64) {
	if _, shard, ok := ParseUserID(it.ID); ok {
		it.ID = MakeUserID(stamp, shard)
	}
}

// AppendResult appends the binary form of r (without its Index) to dst.
func AppendResult(dst []byte, r *Result) []byte {
	e := encoder{b: dst}
	e.result(r)
	return e.b
}

// DecodeResult parses what AppendResult wrote, failing (never panicking)
// on anything else.
func DecodeResult(b []byte) (Result, error) {
	d := decoder{b: b}
	var r Result
	d.result(&r, 0)
	if err := d.end(); err != nil {
		return Result{}, err
	}
	return r, nil
}
