package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nftlimitd/nftlimitd/integration/nstest"
)

// idleWindow is how long BenchmarkDaemonIdle watches the idle daemon.
const idleWindow = 10 * time.Second

// BenchmarkDaemonIdle measures what `nftlimitd run` costs while nothing
// happens, with the repository's example configuration: CPU ticks
// (utime+stime) and context switches of all its threads (wakeups) over a
// fixed window, and its resident memory. It fails if RSS reaches 20 MB or
// the daemon wakes up more than 5 times a second. The measurement runs once
// per call, whatever b.N: it takes idleWindow, so the benchmark framework
// never asks for more than b.N = 1.
func BenchmarkDaemonIdle(b *testing.B) {
	nstest.Require(b)
	nstest.Watchdog(b, time.Minute)
	lab := nstest.NewLab(b, nstest.Options{})
	bin := nstest.BuildBinary(b)
	// A copy of the example in a directory of its own: the daemon watches
	// its configuration's directory, and edits elsewhere in the repository
	// would wake it.
	example, err := os.ReadFile("../nftlimit.conf")
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	conf := filepath.Join(dir, "nftlimit.conf")
	writeFile(b, conf, string(example))
	d := lab.Server.Start(b, bin, "run", "-state", filepath.Join(dir, "bans.json"), "-c", conf)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(d.Stderr(), `msg="applied configuration"`) {
		select {
		case <-d.Done():
			b.Fatalf("nftlimitd run exited: %v\n%s", d.Err(), d.Stderr())
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("nftlimitd run not ready within 5 s:\n%s", d.Stderr())
		}
		time.Sleep(pollEvery)
	}
	pid := d.Cmd.Process.Pid
	if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err != nil || strings.TrimSpace(string(comm)) != "nftlimitd" {
		b.Fatalf("pid %d is %q (%v), not nftlimitd", pid, comm, err)
	}
	// Let the start settle: the event subscription asks for one check of
	// the table right after the first apply.
	time.Sleep(time.Second)

	b.ResetTimer()
	ticks0 := cpuTicks(b, pid)
	vol0, invol0 := contextSwitches(b, pid)
	start := time.Now()
	// Sample every second too, to show when the daemon woke up.
	var perSecond []int64
	last := vol0 + invol0
	for second := time.Second; second <= idleWindow; second += time.Second {
		time.Sleep(time.Until(start.Add(second)))
		v, i := contextSwitches(b, pid)
		perSecond = append(perSecond, v+i-last)
		last = v + i
	}
	vol1, invol1 := contextSwitches(b, pid)
	ticks, vol, invol := cpuTicks(b, pid)-ticks0, vol1-vol0, invol1-invol0
	switches := vol + invol
	elapsed := time.Since(start)
	b.StopTimer()
	rss := statusField(b, fmt.Sprintf("/proc/%d/status", pid), "VmRSS")
	select {
	case <-d.Done():
		b.Fatalf("nftlimitd run exited while idle: %v\n%s", d.Err(), d.Stderr())
	default:
	}

	wakeups := float64(switches) / elapsed.Seconds()
	b.ReportMetric(wakeups, "wakeups/s")
	b.ReportMetric(float64(rss)/1024, "MB-RSS")
	b.ReportMetric(float64(ticks), "cpu-ticks")
	b.Logf("idle for %v: %d context switches (%d voluntary, %d involuntary; %.2f/s; second by second %v), %d CPU ticks, VmRSS %d kB, %d threads",
		elapsed.Round(time.Millisecond), switches, vol, invol, wakeups, perSecond, ticks, rss, len(tasks(b, pid)))
	if rss >= 20*1024 {
		b.Fatalf("VmRSS %d kB, want under 20 MB", rss)
	}
	if wakeups > 5 {
		b.Fatalf("%.2f wakeups/s while idle, want at most 5", wakeups)
	}
}

// cpuTicks returns utime+stime of process pid (all its threads), in clock
// ticks.
func cpuTicks(b *testing.B, pid int) int64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// The fields after "(comm)": state is field 3, utime 14, stime 15.
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		b.Fatalf("/proc/%d/stat: %q", pid, s)
	}
	var sum int64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			b.Fatalf("/proc/%d/stat: %q: %v", pid, s, err)
		}
		sum += n
	}
	return sum
}

// contextSwitches returns the voluntary and the involuntary context
// switches of all threads of process pid, each summed over the threads.
func contextSwitches(b *testing.B, pid int) (voluntary, involuntary int64) {
	b.Helper()
	for _, task := range tasks(b, pid) {
		file := fmt.Sprintf("/proc/%d/task/%s/status", pid, task)
		if _, err := os.Stat(file); err != nil {
			continue // the thread just ended
		}
		voluntary += statusField(b, file, "voluntary_ctxt_switches")
		involuntary += statusField(b, file, "nonvoluntary_ctxt_switches")
	}
	return voluntary, involuntary
}

// tasks lists the thread ids of process pid.
func tasks(b *testing.B, pid int) []string {
	b.Helper()
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		b.Fatal(err)
	}
	var ids []string
	for _, e := range entries {
		ids = append(ids, e.Name())
	}
	return ids
}

// statusField returns the number of field name in a /proc status file
// ("VmRSS:  1234 kB" gives 1234).
func statusField(b *testing.B, file, name string) int64 {
	b.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			n, err := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			if err != nil {
				b.Fatalf("%s: %q: %v", file, line, err)
			}
			return n
		}
	}
	b.Fatalf("%s has no %s", file, name)
	return 0
}
