package webhook

import "time"

// Backoff is the wait before try attempt+1 after attempt failed ones
// (attempt ≥ 1): base·2^(attempt-1), capped at max, of which the upper
// half is drawn at random (jitter ∈ [0,1)): so waits grow exponentially,
// never exceed max, and receivers that failed together do not all come
// back at once.
func Backoff(attempt int, base, max time.Duration, jitter float64) time.Duration {
	d := base
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	half := d / 2
	return half + time.Duration(jitter*float64(d-half))
}
