package bench

import (
	"time"

	"golang.org/x/sys/unix"
)

// preciseSleep sleeps for d in a nanosleep system call, which wakes within
// the kernel's timer slack (≈ 50 µs). time.Sleep rounds a wait below a
// millisecond up to one when the process is otherwise idle (the runtime
// waits for timers in epoll_wait, whose timeout is in milliseconds).
func preciseSleep(d time.Duration) {
	ts := unix.NsecToTimespec(int64(d))
	for {
		var rem unix.Timespec
		if err := unix.Nanosleep(&ts, &rem); err != unix.EINTR {
			return
		}
		ts = rem
	}
}
