package integration

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/nftlimitd/nftlimitd/integration/nstest"
)

// pollEvery is how often the daemon tests look at the kernel while they
// wait for it.
const pollEvery = 5 * time.Millisecond

// statePath is the daemon's ban state file in the test's directory: tests
// never write the host's /var/lib.
func (s *suite) statePath() string { return filepath.Join(s.dir, "bans.json") }

// startDaemon starts `nftlimitd run -c path` in h, with env (NAME=VALUE)
// added to its environment, and waits until it has applied its
// configuration.
func (s *suite) startDaemon(t *testing.T, h *nstest.Host, path string, env ...string) *nstest.Process {
	t.Helper()
	var p *nstest.Process
	if len(env) > 0 {
		p = h.Start(t, "env", append(env, s.bin, "run", "-state", s.statePath(), "-c", path)...)
	} else {
		p = h.Start(t, s.bin, "run", "-state", s.statePath(), "-c", path)
	}
	// The log line, not the table: on a restart the table is there already.
	waitFor(t, p, "nftlimitd run to apply its configuration", 5*time.Second, func() bool {
		return strings.Contains(p.Stderr(), `msg="applied configuration"`)
	})
	return p
}

// waitFor polls cond every pollEvery until it holds, and fails the test
// after timeout or when the daemon p (if not nil) exits meanwhile.
func waitFor(t *testing.T, p *nstest.Process, what string, timeout time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if cond() {
			return time.Since(start)
		}
		if p != nil {
			select {
			case <-p.Done():
				t.Fatalf("waiting for %s: nftlimitd exited: %v\nstderr:\n%s", what, p.Err(), p.Stderr())
			default:
			}
		}
		if time.Since(start) > timeout {
			stderr := ""
			if p != nil {
				stderr = "\nnftlimitd stderr:\n" + p.Stderr()
			}
			t.Fatalf("waited %v for %s%s", timeout, what, stderr)
		}
		time.Sleep(pollEvery)
	}
}

// tableExists reports whether table inet name exists in h.
func tableExists(t *testing.T, h *nstest.Host, name string) bool {
	t.Helper()
	_, _, code := h.Exec(t, "nft", "list", "table", "inet", name)
	return code == 0
}

// chainHas reports whether chain inet nftlimit chain in h exists and its
// listing contains text.
func chainHas(t *testing.T, h *nstest.Host, chain, text string) bool {
	t.Helper()
	out, _, code := h.Exec(t, "nft", "list", "chain", "inet", "nftlimit", chain)
	return code == 0 && strings.Contains(out, text)
}

// replaceFile writes text to a temporary file next to path and renames it
// into place, the way editors and configuration managers do.
func replaceFile(t *testing.T, path, text string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func sshLimit(n int) string {
	return fmt.Sprintf("[[limit]]\nname = \"ssh\"\nports = [22]\nmax_connections = %d\n", n)
}

const webLimit = "\n[[limit]]\nname = \"web\"\nports = [80]\nmax_connections = 10\n"

// TestDaemonReload: SIGHUP and edits of the file (rename into place) reload
// the configuration; a bad edit is logged with FILE:LINE:COL and the last
// good limit keeps biting; open connections stay counted across a reload.
func TestDaemonReload(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{})
	s.Server.ServeTCP(t, 22)
	path := s.writeConfig(t, "nftlimit.conf", sshLimit(3))
	d := s.startDaemon(t, s.Server, path)
	c := s.Client

	// Hold the whole budget of one source.
	src := nstest.ClientV4(1, 1)
	held := c.DialMany(t, 3, src, nstest.ServerV4, 22, dialTimeout)
	defer closeAll(held)
	if n := nstest.Count(held, accepted); n != 3 {
		t.Fatalf("accepted %d of 3 before any reload", n)
	}

	// SIGHUP after an unrelated change: the new limit appears, the held
	// connections are still counted.
	if err := os.WriteFile(path, []byte(sshLimit(3)+webLimit), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, d, "chain lim_web after SIGHUP", 3*time.Second, func() bool { return chainHas(t, s.Server, "lim_web", "ct count over 10") })
	if r := c.DialTCP(t, src, nstest.ServerV4, 22, dialTimeout); r.Outcome != refused {
		t.Fatalf("4th connection after a reload: %v, want refused (the held connections were forgotten)", r.Outcome)
	}

	// Edit the file (write and rename): max_connections 3 -> 1.
	start := time.Now()
	replaceFile(t, path, sshLimit(1)+webLimit)
	waitFor(t, d, "max_connections 1 after a file edit", 3*time.Second, func() bool { return chainHas(t, s.Server, "lim_ssh", "ct count over 1 ") })
	t.Logf("file edit to enforced limit: %v (includes the 200 ms debounce)", time.Since(start).Round(time.Millisecond))
	want(t, "fresh source after the edit", tally(t, c, 3, nstest.ClientV4(1, 2), nstest.ServerV4, 22), map[nstest.Outcome]int{accepted: 1, refused: 2})

	// A bad edit is logged with its position and changes nothing.
	replaceFile(t, path, "[[limit]]\nname = \"ssh\"\nports = [70000]\nmax_connections = 5\n")
	badRE := regexp.MustCompile(regexp.QuoteMeta(path) + `:3:10: .*port 70000`)
	waitFor(t, d, "the bad edit to be logged with FILE:LINE:COL", 3*time.Second, func() bool { return badRE.MatchString(d.Stderr()) })
	if !chainHas(t, s.Server, "lim_ssh", "ct count over 1 ") || !chainHas(t, s.Server, "lim_web", "over 10") {
		t.Fatalf("the kernel changed after a bad edit:\n%s", listTable(t, s.Server, "nftlimit"))
	}
	want(t, "fresh source after the bad edit", tally(t, c, 3, nstest.ClientV4(1, 3), nstest.ServerV4, 22), map[nstest.Outcome]int{accepted: 1, refused: 2})
	if r := c.DialTCP(t, src, nstest.ServerV4, 22, dialTimeout); r.Outcome != refused {
		t.Fatalf("held source after the bad edit: %v, want refused", r.Outcome)
	}
	if err := d.Stop(); err != nil {
		t.Errorf("nftlimitd run: %v, want exit 0 on SIGTERM", err)
	}
}

// TestDaemonDriftRepair: whatever deletes or edits the table, the daemon
// puts it back within a second and the limit bites again.
func TestDaemonDriftRepair(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{})
	s.Server.ServeTCP(t, 22)
	path := s.writeConfig(t, "nftlimit.conf", sshLimit(2))
	d := s.startDaemon(t, s.Server, path)

	for i, drift := range [][]string{
		{"delete", "table", "inet", "nftlimit"},
		{"flush", "ruleset"},
		{"flush", "chain", "inet", "nftlimit", "lim_ssh"},
	} {
		s.Server.MustExec(t, "nft", drift...)
		took := waitFor(t, d, "repair after nft "+strings.Join(drift, " "), 3*time.Second, func() bool {
			return chainHas(t, s.Server, "lim_ssh", "ct count over 2 ")
		})
		t.Logf("nft %s: repaired in %v", strings.Join(drift, " "), took.Round(time.Millisecond))
		rs := s.Client.DialMany(t, 3, nstest.ClientV4(1, i+1), nstest.ServerV4, 22, dialTimeout)
		got := map[nstest.Outcome]int{}
		for _, r := range rs {
			got[r.Outcome]++
		}
		want(t, "after nft "+strings.Join(drift, " "), got, map[nstest.Outcome]int{accepted: 2, refused: 1})
		closeAll(rs)
	}

	// Repair latency: from `nft delete table` returning until the table is
	// back, polled every 5 ms (each poll is one `ip netns exec nft`).
	const reps = 50
	var lat []time.Duration
	for range reps {
		s.Server.MustExec(t, "nft", "delete", "table", "inet", "nftlimit")
		lat = append(lat, waitFor(t, d, "table back after delete", 3*time.Second, func() bool { return tableExists(t, s.Server, "nftlimit") }))
	}
	slices.Sort(lat)
	p50, p99, maxLat := lat[reps/2-1], lat[(reps*99+99)/100-1], lat[reps-1]
	t.Logf("repair latency over %d deletes: p50 %v, p99 %v, max %v", reps, p50.Round(time.Millisecond), p99.Round(time.Millisecond), maxLat.Round(time.Millisecond))
	if p99 > time.Second {
		t.Errorf("repair latency p99 %v, want <= 1s", p99)
	}
	if !strings.Contains(d.Stderr(), "repaired table") {
		t.Errorf("repairs not logged:\n%s", d.Stderr())
	}
}

// TestDaemonStop: SIGTERM leaves the table by default and removes it with
// keep_on_exit = false; the exit code is 0 either way.
func TestDaemonStop(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{})
	for _, tc := range []struct {
		name, conf string
		keep       bool
	}{
		{"remove", "[table]\nkeep_on_exit = false\n" + sshLimit(2), false},
		{"keep", sshLimit(2), true},
	} {
		path := s.writeConfig(t, tc.name+".conf", tc.conf)
		d := s.startDaemon(t, s.Server, path)
		if err := d.Stop(); err != nil {
			t.Fatalf("%s: nftlimitd run: %v, want exit 0 on SIGTERM\nstderr:\n%s", tc.name, err, d.Stderr())
		}
		if got := tableExists(t, s.Server, "nftlimit"); got != tc.keep {
			t.Errorf("%s: after SIGTERM, table exists = %v, want %v\nstderr:\n%s", tc.name, got, tc.keep, d.Stderr())
		}
	}
}

// TestDaemonBadConfigAtStart: a configuration with errors stops the daemon
// at once, with exit 1 and FILE:LINE:COL, and nothing is programmed.
func TestDaemonBadConfigAtStart(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{})
	path := s.writeConfig(t, "bad.conf", "[[limit]]\nname = \"ssh\"\nports = [70000]\nmax_connections = 5\n")
	_, stderr, code := s.run(t, s.Server, "run", "-state", s.statePath(), "-c", path)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if !strings.Contains(stderr, path+":3:10:") {
		t.Errorf("stderr does not name %s:3:10:\n%s", path, stderr)
	}
	if tableExists(t, s.Server, "nftlimit") {
		t.Error("table inet nftlimit exists after a failed start")
	}
}

// TestDaemonNotify: with NOTIFY_SOCKET, READY=1 comes once the table is
// there, RELOADING=1 (with MONOTONIC_USEC) then READY=1 around a SIGHUP,
// WATCHDOG=1 at half of WATCHDOG_USEC, and STOPPING=1 on SIGTERM.
func TestDaemonNotify(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{})
	sock := filepath.Join(s.dir, "notify.sock")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	path := s.writeConfig(t, "nftlimit.conf", sshLimit(2))
	// WATCHDOG_USEC=100ms: a ping every 50 ms.
	d := s.Server.Start(t, "env", "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=100000", s.bin, "run", "-state", s.statePath(), "-c", path)

	// read returns the next message but for watchdog pings, which it
	// counts.
	pings := 0
	read := func(what string) string {
		t.Helper()
		buf := make([]byte, 4096)
		if err := ln.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		for {
			n, err := ln.Read(buf)
			if err != nil {
				t.Fatalf("waiting for %s: %v\nstderr:\n%s", what, err, d.Stderr())
			}
			if msg := string(buf[:n]); msg != "WATCHDOG=1" {
				return msg
			}
			pings++
		}
	}
	expect := func(msg string, fields ...string) {
		t.Helper()
		for _, f := range fields {
			if !regexp.MustCompile(`(?m)^` + f + `$`).MatchString(msg) {
				t.Errorf("notify message %q lacks %s", msg, f)
			}
		}
	}

	msg := read("READY=1")
	expect(msg, "READY=1")
	if !tableExists(t, s.Server, "nftlimit") {
		t.Error("READY=1 before the table exists")
	}

	start := time.Now()
	if err := d.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	expect(read("RELOADING=1"), "RELOADING=1", `MONOTONIC_USEC=\d+`)
	expect(read("READY=1 after the reload"), "READY=1")
	t.Logf("SIGHUP to READY=1: %v", time.Since(start).Round(time.Microsecond))

	// Watchdog pings keep coming while the daemon is idle.
	before := pings
	time.Sleep(200 * time.Millisecond)
	if err := d.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	expect(read("RELOADING=1"), "RELOADING=1")
	expect(read("READY=1 after the reload"), "READY=1")
	if pings-before < 2 {
		t.Errorf("%d WATCHDOG=1 in 200 ms with WATCHDOG_USEC=100000, want at least 2", pings-before)
	}

	if err := d.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	expect(read("STOPPING=1"), "STOPPING=1")
	if err := d.Stop(); err != nil {
		t.Errorf("nftlimitd run: %v, want exit 0", err)
	}
}

// TestDaemonSnippetsAndRename: a new nftlimit.d/ directory and the snippets
// in it are picked up without a signal, a removed snippet's limit goes
// away, a renamed table replaces the old one, and a foreign table is never
// touched.
func TestDaemonSnippetsAndRename(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{})
	s.Server.ServeTCP(t, 22)
	s.Server.Nft(t, "table inet other {\n\tchain c {\n\t\ttype filter hook input priority 0; policy accept;\n\t\tcounter\n\t}\n}")
	path := s.writeConfig(t, "nftlimit.conf", sshLimit(2))
	d := s.startDaemon(t, s.Server, path)

	snippets := filepath.Join(s.dir, "nftlimit.d")
	if err := os.Mkdir(snippets, 0o755); err != nil {
		t.Fatal(err)
	}
	// The new directory is watched from its creation on, and the reload
	// its creation triggers reads whatever it holds by then.
	snippet := filepath.Join(snippets, "web.conf")
	replaceFile(t, snippet, webLimit)
	waitFor(t, d, "the snippet's limit", 3*time.Second, func() bool { return chainHas(t, s.Server, "lim_web", "ct count over 10 ") })

	if err := os.Remove(snippet); err != nil {
		t.Fatal(err)
	}
	waitFor(t, d, "the removed snippet's limit to go", 3*time.Second, func() bool {
		_, _, code := s.Server.Exec(t, "nft", "list", "chain", "inet", "nftlimit", "lim_web")
		return code != 0
	})

	replaceFile(t, path, "[table]\nname = \"guard\"\n"+sshLimit(2))
	waitFor(t, d, "table inet guard to replace inet nftlimit", 3*time.Second, func() bool {
		return tableExists(t, s.Server, "guard") && !tableExists(t, s.Server, "nftlimit")
	})
	// Drift repair follows the new name.
	s.Server.MustExec(t, "nft", "delete", "table", "inet", "guard")
	waitFor(t, d, "table inet guard back", 3*time.Second, func() bool { return tableExists(t, s.Server, "guard") })
	want(t, "limit in the renamed table", tally(t, s.Client, 3, nstest.ClientV4(1, 1), nstest.ServerV4, 22), map[nstest.Outcome]int{accepted: 2, refused: 1})

	if out := s.Server.MustExec(t, "nft", "list", "table", "inet", "other"); !strings.Contains(out, "counter packets") {
		t.Errorf("foreign table inet other changed:\n%s", out)
	}
}

// TestDaemonExemptFileEdit: an exempt file outside the configuration's
// directory is watched too; editing it reloads.
func TestDaemonExemptFileEdit(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{})
	lists := filepath.Join(s.dir, "lists")
	if err := os.Mkdir(lists, 0o755); err != nil {
		t.Fatal(err)
	}
	exempt := filepath.Join(lists, "trusted.txt")
	replaceFile(t, exempt, "# trusted\n192.0.2.200\n")
	path := s.writeConfig(t, "nftlimit.conf", sshLimit(2)+fmt.Sprintf("exempt_file = %q\n", exempt))
	d := s.startDaemon(t, s.Server, path)

	src := nstest.ClientV4(1, 5)
	replaceFile(t, exempt, "# trusted\n192.0.2.200\n"+src.String()+"\n")
	waitFor(t, d, "the new exempt address in the kernel", 3*time.Second, func() bool {
		_, _, code := s.Server.Exec(t, "nft", "get", "element", "inet", "nftlimit", "ssh_exempt4", "{ "+src.String()+" }")
		return code == 0
	})
}

// TestDaemonEventOverflow: a foreign `nft -f` of a large set floods the
// event socket; the daemon subscribes again and still repairs at once, and
// the foreign table is left alone.
func TestDaemonEventOverflow(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{})
	path := s.writeConfig(t, "nftlimit.conf", sshLimit(2))
	d := s.startDaemon(t, s.Server, path)

	const n = 200000
	var b strings.Builder
	b.WriteString("table inet foreign {\n\tset s {\n\t\ttype ipv4_addr\n\t\telements = {\n")
	for i := range n {
		fmt.Fprintf(&b, "\t\t\t10.%d.%d.%d,\n", i>>16, (i>>8)&255, i&255)
	}
	b.WriteString("\t\t}\n\t}\n}\n")
	file := filepath.Join(s.dir, "foreign.nft")
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	s.Server.MustExec(t, "nft", "-f", file)

	s.Server.MustExec(t, "nft", "delete", "table", "inet", "nftlimit")
	took := waitFor(t, d, "repair after the flood", time.Second, func() bool { return tableExists(t, s.Server, "nftlimit") })
	t.Logf("repair after a %d-element foreign load: %v; event socket overflowed: %v", n, took.Round(time.Millisecond),
		strings.Contains(d.Stderr(), "subscription broke"))
	out := s.Server.MustExec(t, "nft", "list", "set", "inet", "foreign", "s")
	if !strings.Contains(out, "10.3.13.63") { // the last element
		t.Errorf("foreign set lost elements")
	}
}

// TestDaemonApplyRetry: while the kernel refuses the daemon's transactions
// (another netlink socket took table inet nftlimit over with the owner
// flag), the daemon logs the error and retries with backoff; once the
// owner goes away, the table is back.
func TestDaemonApplyRetry(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{})
	path := s.writeConfig(t, "nftlimit.conf", sshLimit(2))
	d := s.startDaemon(t, s.Server, path)

	owner, err := nftables.New(nftables.WithNetNSFd(s.Server.NsFd()), nftables.AsLasting())
	if err != nil {
		t.Fatal(err)
	}
	defer owner.CloseLasting()
	table := &nftables.Table{Name: "nftlimit", Family: nftables.TableFamilyINet}
	owner.DelTable(table)
	owner.AddTable(&nftables.Table{Name: "nftlimit", Family: nftables.TableFamilyINet, Flags: nftables.TableFlagOwner})
	if err := owner.Flush(); err != nil {
		t.Fatalf("take table inet nftlimit over: %v", err)
	}
	waitFor(t, d, "the refused apply to be logged", 3*time.Second, func() bool {
		return strings.Contains(d.Stderr(), "apply failed") && strings.Contains(d.Stderr(), "will retry")
	})
	// No busy loop: within 300 ms, the first attempt and at most one
	// retry (after 1 s) have run.
	time.Sleep(300 * time.Millisecond)
	if n := strings.Count(d.Stderr(), "apply failed"); n != 1 {
		t.Errorf("%d failed applies within 300 ms, want 1 (then retries after 1 s, 2 s, ...):\n%s", n, d.Stderr())
	}
	if chainHas(t, s.Server, "lim_ssh", "ct count") {
		t.Fatal("the daemon changed a table another socket owns")
	}
	// The owner lets go: the kernel deletes its table, the daemon
	// programs its own.
	owner.CloseLasting()
	took := waitFor(t, d, "the table back after the owner left", 3*time.Second, func() bool { return chainHas(t, s.Server, "lim_ssh", "ct count over 2 ") })
	t.Logf("table back %v after the owner left", took.Round(time.Millisecond))
}
