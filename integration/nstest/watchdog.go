package nstest

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
)

// watchdogGrace is how long a test may go on after its watchdog fired before
// the process is stopped.
const watchdogGrace = 10 * time.Second

// Watchdog fails t with a dump of all goroutines if the test (including its
// cleanups registered after this call) is still running after d. If it is
// still running watchdogGrace (10 s) later, it panics with the dump, ending
// the test binary rather than hanging until go test's -timeout; namespaces
// left behind that way are removed by the next NewLab.
func Watchdog(t testing.TB, d time.Duration) {
	t.Helper()
	var mu sync.Mutex
	finished := false
	var grace *time.Timer
	timer := time.AfterFunc(d, func() {
		dump := goroutines()
		mu.Lock()
		defer mu.Unlock()
		if finished {
			return
		}
		t.Errorf("watchdog: %s still running after %v; goroutines:\n%s", t.Name(), d, dump)
		fmt.Fprintf(os.Stderr, "watchdog: %s still running after %v\n", t.Name(), d)
		grace = time.AfterFunc(watchdogGrace, func() {
			mu.Lock()
			defer mu.Unlock()
			if !finished {
				panic(fmt.Sprintf("watchdog: %s still running %v after its watchdog fired; goroutines:\n%s", t.Name(), watchdogGrace, goroutines()))
			}
		})
	})
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		finished = true
		timer.Stop()
		if grace != nil {
			grace.Stop()
		}
	})
}

// goroutines returns the stacks of all goroutines.
func goroutines() string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return string(buf[:n])
		}
		buf = make([]byte, 2*len(buf))
	}
}
