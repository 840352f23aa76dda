package nstest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// CheckThreads returns an error if a thread of this process is in another
// network namespace than the one the process started in. Call it from
// TestMain after m.Run to prove that no namespace leaked into a thread Go
// may reuse. Threads left in a namespace by an exiting goroutine end a moment
// later, so it retries for up to half a second.
func CheckThreads() error {
	if initialNSErr != nil {
		return fmt.Errorf("check threads: read initial namespace: %w", initialNSErr)
	}
	var bad []string
	for range 50 {
		bad = bad[:0]
		dir := fmt.Sprintf("/proc/%d/task", os.Getpid())
		tasks, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("check threads: %w", err)
		}
		for _, task := range tasks {
			ns, err := os.Readlink(filepath.Join(dir, task.Name(), "ns/net"))
			if err != nil {
				continue // the thread just ended
			}
			if ns != initialNS {
				bad = append(bad, fmt.Sprintf("thread %s in %s", task.Name(), ns))
			}
		}
		if len(bad) == 0 {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("check threads: threads outside the initial namespace %s: %s", initialNS, strings.Join(bad, ", "))
}
