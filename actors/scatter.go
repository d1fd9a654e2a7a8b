package actors

import (
	"slices"
	"strings"
	"time"

	"github.com/troupe-db/troupe/storage"
)

// scatter runs fn on every shard at once and waits for all of them until
// deadline. fn gets the shard's index and runs in that shard's actor.
func (u *Users) scatter(deadline time.Time, fn func(i int, s *storage.UserShard)) error {
	done := make(chan bool, len(u.pids))
	for i := range u.pids {
		u.send(i, &shardMsg{
			run:       func(s *storage.UserShard) { fn(i, s); done <- true },
			recovered: func() { done <- false },
		})
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for range u.pids {
		select {
		case ok := <-done:
			if !ok {
				return &storage.Error{Kind: storage.KindInternal, Message: "internal error while reading"}
			}
		case <-t.C:
			return ErrTimeout
		}
	}
	return nil
}

// List returns up to limit users with ids after q.After whose name or
// email contains q.Q (case-insensitive), in id order, and whether more
// follow. Every shard returns its first limit+1 matches; the merge keeps
// the first limit overall.
func (u *Users) List(after, q string, limit int, deadline time.Time) ([]*storage.User, bool, error) {
	parts := make([][]*storage.User, len(u.pids))
	lq := storage.ListQuery{After: after, Q: strings.ToLower(q), Limit: limit + 1}
	if err := u.scatter(deadline, func(i int, s *storage.UserShard) {
		parts[i] = s.List(nil, lq)
	}); err != nil {
		return nil, false, err
	}
	all := make([]*storage.User, 0, limit+1)
	for _, p := range parts {
		all = append(all, p...)
	}
	slices.SortFunc(all, func(a, b *storage.User) int { return strings.Compare(a.ID, b.ID) })
	if len(all) > limit {
		return all[:limit], true, nil
	}
	return all, false, nil
}

// Count returns the number of users, or of those matching q.
func (u *Users) Count(q string, deadline time.Time) (int, error) {
	counts := make([]int, len(u.pids))
	lq := strings.ToLower(q)
	if err := u.scatter(deadline, func(i int, s *storage.UserShard) { counts[i] = s.Count(lq) }); err != nil {
		return 0, err
	}
	total := 0
	for _, c := range counts {
		total += c
	}
	return total, nil
}
