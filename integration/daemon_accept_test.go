package integration

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nftlimitd/nftlimitd/integration/nstest"
)

// Acceptance tests of `nftlimitd run` against the real kernel: reloads under
// load, restarts, limit changes and bad reloads, each checked with real
// traffic between namespaces.

// The addresses of holdAndBan: holder holds the ssh limit's whole budget,
// banned is banned by hand from the web limit.
var (
	holderAddr = nstest.ClientV4(1, 1)
	bannedAddr = nstest.ClientV4(1, 5)
)

// holdAndBan starts the daemon with an ssh limit of 3 and the rate-and-ban
// web limit, makes holderAddr hold 3 ssh connections and bans bannedAddr
// for an hour. The caller closes the held connections.
func holdAndBan(t *testing.T) (*suite, string, *nstest.Process, []nstest.Result) {
	t.Helper()
	s := newSuite(t, nstest.Options{})
	s.Server.ServeTCP(t, 22)
	s.Server.ServeTCP(t, 80)
	path := s.writeConfig(t, "nftlimit.conf", sshLimit(3)+banConfig)
	d := s.startDaemon(t, s.Server, path)
	held := s.Client.DialMany(t, 3, holderAddr, nstest.ServerV4, 22, dialTimeout)
	if n := nstest.Count(held, accepted); n != 3 {
		closeAll(held)
		t.Fatalf("accepted %d of 3", n)
	}
	s.Server.MustExec(t, s.bin, "ban", bannedAddr.String(), "--limit", "web", "--for", "1h", "-c", path)
	return s, path, d, held
}

// reloadEvent is one finished reload in the daemon's log.
type reloadEvent struct {
	trigger string        // the "reloading configuration" line's trigger
	changes int           // changes the reload sent to the kernel
	took    time.Duration // the daemon's own time for it
}

var (
	triggerRE = regexp.MustCompile(`trigger=("(?:[^"\\]|\\.)*"|\S+)`)
	changesRE = regexp.MustCompile(`\bchanges=(\d+)`)
	tookRE    = regexp.MustCompile(`\btook=(\S+)`)
)

// reloadsIn parses the reloads in log, a piece of the daemon's stderr that
// starts at a line boundary: each "reloaded configuration" line, with the
// trigger of the "reloading configuration" line before it (empty if that
// came before log).
func reloadsIn(t *testing.T, log string) []reloadEvent {
	t.Helper()
	var evs []reloadEvent
	trigger := ""
	for _, line := range strings.Split(log, "\n") {
		switch {
		case strings.Contains(line, `msg="reloading configuration"`):
			m := triggerRE.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("no trigger in %q", line)
			}
			trigger = m[1]
			if u, err := strconv.Unquote(trigger); err == nil {
				trigger = u
			}
		case strings.Contains(line, `msg="reloaded configuration"`):
			c, k := changesRE.FindStringSubmatch(line), tookRE.FindStringSubmatch(line)
			if c == nil || k == nil {
				t.Fatalf("no changes or took in %q", line)
			}
			n, _ := strconv.Atoi(c[1])
			took, err := time.ParseDuration(k[1])
			if err != nil {
				t.Fatalf("took in %q: %v", line, err)
			}
			evs = append(evs, reloadEvent{trigger: trigger, changes: n, took: took})
			trigger = ""
		}
	}
	return evs
}

// connElement returns the `ct count over N` the kernel keeps in the element
// of src in the connection set set, or 0 if src has no element.
func connElement(t *testing.T, h *nstest.Host, set string, src netip.Addr) int {
	t.Helper()
	out := h.MustExec(t, "nft", "list", "set", "inet", "nftlimit", set)
	m := regexp.MustCompile(`[\s{,]` + regexp.QuoteMeta(src.String()) + ` ct count over (\d+)`).FindStringSubmatch(out)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// percentile returns the p-th percentile (0 < p <= 100) of sorted ds.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	i := (len(ds)*p+99)/100 - 1
	return ds[max(i, 0)]
}

// TestReloadUnderHammering proves that reloads never let an over-limit
// connection through and never forget open connections: a source holds
// its whole budget of 3 while the same source dials as fast as it can, and
// the daemon reloads 200 times, alternately on SIGHUP and on a file edit
// (write and rename). Every reload changes the exempt set, which rebuilds
// chain lim_ssh (flush and re-add in the same transaction); every other one
// toggles log, which rebuilds act_ssh; and an unrelated limit comes and goes
// every other pair, which changes the port dispatch map and rebuilds the
// base chain. Not one of the hammering connections may be accepted, and
// afterwards the 3 held connections still count.
func TestReloadUnderHammering(t *testing.T) {
	t.Parallel()
	hammerReloads(t, 200, func(i int) string {
		c := fmt.Sprintf("[[limit]]\nname = \"ssh\"\nports = [22]\nmax_connections = 3\nexempt = [\"10.9.%d.%d\"]\nlog = %v\n",
			i/256, i%256, i%2 == 0)
		if i/2%2 == 1 {
			c += webLimit
		}
		return c
	})
}

// hammerReloads runs the daemon with the ssh limit (max_connections 3) of
// conf(0), holds 3 connections from one source and hammers from the same
// source while it reloads the daemon with conf(1)...conf(reloads), each
// different from the one before, alternately by SIGHUP and by a file edit,
// waiting for each to be applied. It fails t if a hammering connection is
// accepted, if the hammer made too few attempts, or if the held connections
// no longer count afterwards; it logs the reload latencies.
func hammerReloads(t *testing.T, reloads int, conf func(i int) string) {
	t.Helper()
	const minAttempts = 1000
	s := newSuite(t, nstest.Options{})
	s.Server.ServeTCP(t, 22)
	path := s.writeConfig(t, "nftlimit.conf", conf(0))
	d := s.startDaemon(t, s.Server, path)
	c, src := s.Client, nstest.ClientV4(1, 1)

	held := c.DialMany(t, 3, src, nstest.ServerV4, 22, dialTimeout)
	defer closeAll(held)
	if n := nstest.Count(held, accepted); n != 3 {
		t.Fatalf("accepted %d of 3 before the hammering", n)
	}

	// The hammer: one connection after the other from the same source,
	// for as long as the reloads go on. A tcp-reset answers at once.
	type hammerResult struct {
		outcomes    map[nstest.Outcome]int
		acceptedAt  []time.Duration // since the hammer started
		tookLongest time.Duration
	}
	stop := make(chan struct{})
	result := make(chan hammerResult, 1)
	hammerStart := time.Now()
	go func() {
		r := hammerResult{outcomes: map[nstest.Outcome]int{}}
		defer func() { result <- r }() // also if DialTCP fails the test
		for {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			res := c.DialTCP(t, src, nstest.ServerV4, 22, 200*time.Millisecond)
			r.tookLongest = max(r.tookLongest, time.Since(start))
			r.outcomes[res.Outcome]++
			if res.Conn != nil {
				r.acceptedAt = append(r.acceptedAt, time.Since(hammerStart))
				res.Conn.Close()
			}
		}
	}()
	var hr hammerResult
	stopped := false
	stopHammer := func() {
		if !stopped {
			stopped = true
			close(stop)
			hr = <-result
		}
	}
	defer stopHammer()

	latency := map[string][]time.Duration{}
	var took []time.Duration
	for i := 1; i <= reloads; i++ {
		kind := "file edit"
		if i%2 == 1 {
			kind = "SIGHUP"
		}
		off := len(d.Stderr())
		start := time.Now()
		if kind == "SIGHUP" {
			// The edit is seen by the file watcher too, which reloads
			// again after its debounce (a no-op) unless the next edit
			// comes first.
			replaceFile(t, path, conf(i))
			if err := d.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
		} else {
			replaceFile(t, path, conf(i))
		}
		// Done when a reload since the edit has sent changes (and, for a
		// SIGHUP, the signal's reload has run: it may find that a trailing
		// file reload already applied the edit).
		var applied *reloadEvent
		waitFor(t, d, fmt.Sprintf("reload %d (%s) to be applied", i, kind), 5*time.Second, func() bool {
			signalled := kind != "SIGHUP"
			for _, ev := range reloadsIn(t, d.Stderr()[off:]) {
				if ev.changes > 0 && applied == nil {
					applied = &ev
				}
				signalled = signalled || ev.trigger == "signal hangup"
			}
			return applied != nil && signalled
		})
		latency[kind] = append(latency[kind], time.Since(start))
		took = append(took, applied.took)
	}
	stopHammer()

	total := 0
	for _, n := range hr.outcomes {
		total += n
	}
	t.Logf("hammer: %d attempts in %v (%.0f/s) from %s: %v; slowest attempt %v",
		total, time.Since(hammerStart).Round(time.Millisecond), float64(total)/time.Since(hammerStart).Seconds(),
		src, hr.outcomes, hr.tookLongest.Round(time.Microsecond))
	if n := hr.outcomes[accepted]; n != 0 {
		t.Errorf("%d hammering connections accepted over the limit during %d reloads, at %v", n, reloads, hr.acceptedAt)
	}
	if total <= minAttempts {
		t.Errorf("the hammer made only %d attempts, want more than %d", total, minAttempts)
	}
	if n := total - hr.outcomes[refused] - hr.outcomes[accepted]; n > 0 {
		// Not a breach of the limit, but not the reset expected either.
		t.Logf("note: %d hammering attempts were neither refused nor accepted: %v", n, hr.outcomes)
	}

	for _, kind := range []string{"SIGHUP", "file edit"} {
		ls := latency[kind]
		slices.Sort(ls)
		t.Logf("%d reloads by %s: edit to applied (seen in the log) p50 %v, p99 %v, max %v", len(ls), kind,
			percentile(ls, 50).Round(time.Microsecond), percentile(ls, 99).Round(time.Microsecond), ls[len(ls)-1].Round(time.Microsecond))
	}
	slices.Sort(took)
	t.Logf("the daemon's own reload time (took=): p50 %v, p99 %v, max %v",
		percentile(took, 50), percentile(took, 99), took[len(took)-1])
	if log := d.Stderr(); strings.Contains(log, "level=ERROR") || strings.Contains(log, "replaced set") {
		t.Errorf("the daemon logged errors or lost state:\n%s", log)
	}

	// The held connections are still counted, and still open.
	if r := c.DialTCP(t, src, nstest.ServerV4, 22, dialTimeout); r.Outcome != refused {
		t.Errorf("4th connection after %d reloads: %v, want refused (the held connections were forgotten)", reloads, r)
	}
	for i, h := range held {
		if _, err := h.Conn.Write([]byte("still here")); err != nil {
			t.Errorf("held connection %d after the reloads: %v", i, err)
		}
	}
	if n := connElement(t, s.Server, "ssh_conn4", src); n != 3 {
		t.Errorf("the element of %s says ct count over %d, want 3", src, n)
	}
}

// TestStateSurvivesRestart proves that stopping the daemon, gracefully or
// with kill -9, and starting it again forgets nothing: the connections a
// source holds still count (its 4th is refused), a ban stays, and the new
// daemon finds the table as it wants it (no changes: no set recreated).
func TestStateSurvivesRestart(t *testing.T) {
	t.Parallel()
	s, path, d, held := holdAndBan(t)
	defer closeAll(held)
	c := s.Client
	holder, banned := holderAddr, bannedAddr

	fresh := 2 // a new source for each check
	check := func(when string) {
		t.Helper()
		if r := c.DialTCP(t, holder, nstest.ServerV4, 22, dialTimeout); r.Outcome != refused {
			t.Errorf("%s: the holder's 4th connection: %v, want refused", when, r)
		}
		for i, h := range held {
			if _, err := h.Conn.Write([]byte("x")); err != nil {
				t.Errorf("%s: held connection %d: %v", when, i, err)
			}
		}
		want(t, when+": the banned source", tallyT(t, c, 1, banned, nstest.ServerV4, 80, 300*time.Millisecond), map[nstest.Outcome]int{timedOut: 1})
		src := nstest.ClientV4(1, fresh)
		fresh++
		rs := c.DialMany(t, 4, src, nstest.ServerV4, 22, dialTimeout)
		closeAll(rs)
		if n := nstest.Count(rs, accepted); n != 3 {
			t.Errorf("%s: a fresh source got %d of 4, want 3", when, n)
		}
		if n := connElement(t, s.Server, "ssh_conn4", holder); n != 3 {
			t.Errorf("%s: the holder's element says ct count over %d, want 3 (present)", when, n)
		}
		var bans []string
		for _, l := range readStatus(t, s, path).Limits {
			for _, b := range l.Bans {
				bans = append(bans, fmt.Sprintf("%s by %s, %.0f s left", b.Source, l.Name, b.ExpiresIn))
				if l.Name != "web" || b.Source != banned.String()+"/32" || b.ExpiresIn < 3000 {
					t.Errorf("%s: unexpected ban %s", when, bans[len(bans)-1])
				}
			}
		}
		if len(bans) != 1 {
			t.Errorf("%s: bans %v, want only %s by web", when, bans, banned)
		}
	}
	// noChanges checks that a freshly started daemon found everything in
	// place.
	noChanges := func(p *nstest.Process, when string) {
		t.Helper()
		for _, line := range strings.Split(p.Stderr(), "\n") {
			if strings.Contains(line, `msg="applied configuration"`) && !strings.Contains(line, " changes=0 ") {
				t.Errorf("%s: the new daemon changed the table:\n%s", when, p.Stderr())
			}
		}
	}

	check("before any restart")

	if err := d.Stop(); err != nil {
		t.Fatalf("SIGTERM: %v\n%s", err, d.Stderr())
	}
	d = s.startDaemon(t, s.Server, path)
	noChanges(d, "after SIGTERM")
	check("after SIGTERM and a new start")

	if err := d.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-d.Done()
	d = s.startDaemon(t, s.Server, path)
	noChanges(d, "after kill -9")
	check("after kill -9 and a new start")
	if err := d.Stop(); err != nil {
		t.Errorf("nftlimitd run: %v, want exit 0 on SIGTERM", err)
	}
}

// TestMaxConnectionsChange proves what a changed max_connections does to
// sources that hold connections: a source never holds more than the larger
// of the old and the new limit, and new sources get the new limit at once.
// A source keeps the limit it started with (the kernel copied it into its
// set element) until it has closed everything and its element is collected.
func TestMaxConnectionsChange(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{})
	s.Server.ServeTCP(t, 22)
	path := s.writeConfig(t, "nftlimit.conf", sshLimit(3))
	d := s.startDaemon(t, s.Server, path)
	c := s.Client
	a, b, cc := nstest.ClientV4(1, 1), nstest.ClientV4(1, 2), nstest.ClientV4(1, 3)
	setLimit := func(n int) {
		t.Helper()
		replaceFile(t, path, sshLimit(n))
		waitFor(t, d, fmt.Sprintf("max_connections %d in the kernel", n), 3*time.Second, func() bool {
			return chainHas(t, s.Server, "lim_ssh", fmt.Sprintf("ct count over %d ", n))
		})
	}
	dial := func(src netip.Addr, n int) []nstest.Result {
		t.Helper()
		return c.DialMany(t, n, src, nstest.ServerV4, 22, dialTimeout)
	}

	heldA := dial(a, 3)
	if n := nstest.Count(heldA, accepted); n != 3 {
		t.Fatalf("A: accepted %d of 3", n)
	}

	// 3 -> 5: A keeps 3, B gets 5.
	setLimit(5)
	if r := c.DialTCP(t, a, nstest.ServerV4, 22, dialTimeout); r.Outcome != refused {
		t.Errorf("A's 4th after raising to 5: %v, want refused (A's element keeps 3)", r)
	}
	if n := connElement(t, s.Server, "ssh_conn4", a); n != 3 {
		t.Errorf("A's element: ct count over %d, want 3", n)
	}
	heldB := dial(b, 6)
	defer closeAll(heldB)
	if n := nstest.Count(heldB, accepted); n != 5 {
		t.Errorf("B after raising to 5: %d of 6 accepted, want 5", n)
	}

	// A closes everything; once its element is collected, A starts over
	// with the new limit.
	closeAll(heldA)
	took := waitFor(t, d, "A's element to be collected", 3*time.Second, func() bool {
		return connElement(t, s.Server, "ssh_conn4", a) == 0
	})
	t.Logf("A's element collected %v after its connections closed", took.Round(time.Millisecond))
	heldA = dial(a, 6)
	defer closeAll(heldA)
	if n := nstest.Count(heldA, accepted); n != 5 {
		t.Errorf("A after its element was collected: %d of 6 accepted, want 5", n)
	}

	// 5 -> 2 while A and B hold 5: neither gets a 6th; C gets 2.
	setLimit(2)
	for _, src := range []netip.Addr{a, b} {
		if r := c.DialTCP(t, src, nstest.ServerV4, 22, dialTimeout); r.Outcome != refused {
			t.Errorf("%s holding 5, after lowering to 2: 6th %v, want refused", src, r)
		}
	}
	want(t, "C after lowering to 2", tally(t, c, 3, cc, nstest.ServerV4, 22), map[nstest.Outcome]int{accepted: 2, refused: 1})
	if n := connElement(t, s.Server, "ssh_conn4", b); n != 5 {
		t.Errorf("B's element: ct count over %d, want 5", n)
	}
}

// TestBadConfigAtReloadKeepsBans proves that a broken configuration at a
// SIGHUP changes nothing: the daemon logs the error with FILE:LINE:COL and
// keeps running, bans and limits keep biting, and the fixed file is then
// applied.
func TestBadConfigAtReloadKeepsBans(t *testing.T) {
	t.Parallel()
	s, path, d, held := holdAndBan(t)
	defer closeAll(held)
	c := s.Client
	holder, banned := holderAddr, bannedAddr
	// status reads the configuration; while the daemon's file is broken,
	// ask with a copy of the good one.
	good := s.writeConfig(t, "good.conf", sshLimit(3)+banConfig)
	want(t, "banned", tallyT(t, c, 1, banned, nstest.ServerV4, 80, 300*time.Millisecond), map[nstest.Outcome]int{timedOut: 1})

	// Break it: port 70000 is line 3, column 10.
	off := len(d.Stderr())
	replaceFile(t, path, "[[limit]]\nname = \"ssh\"\nports = [70000]\nmax_connections = 3\n"+banConfig)
	if err := d.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	badRE := regexp.MustCompile(`(?s)trigger="signal hangup".*` + regexp.QuoteMeta(path) + `:3:10: .*port 70000.*configuration not reloaded`)
	waitFor(t, d, "the bad configuration to be logged with FILE:LINE:COL", 3*time.Second, func() bool { return badRE.MatchString(d.Stderr()[off:]) })
	if strings.Contains(d.Stderr()[off:], `msg="reloaded configuration"`) {
		t.Errorf("a bad configuration was reloaded:\n%s", d.Stderr()[off:])
	}

	select {
	case <-d.Done():
		t.Fatalf("nftlimitd exited on a bad configuration: %v\n%s", d.Err(), d.Stderr())
	default:
	}
	want(t, "banned after the bad reload", tallyT(t, c, 1, banned, nstest.ServerV4, 80, 300*time.Millisecond), map[nstest.Outcome]int{timedOut: 1})
	if r := c.DialTCP(t, holder, nstest.ServerV4, 22, dialTimeout); r.Outcome != refused {
		t.Errorf("the holder's 4th after the bad reload: %v, want refused", r)
	}
	want(t, "a fresh source after the bad reload", tally(t, c, 4, nstest.ClientV4(1, 2), nstest.ServerV4, 22), map[nstest.Outcome]int{accepted: 3, refused: 1})
	want(t, "a fresh source on the ban's port", tally(t, c, 1, nstest.ClientV4(1, 3), nstest.ServerV4, 80), map[nstest.Outcome]int{accepted: 1})
	if bans := readStatus(t, s, good).Limits[1].Bans; len(bans) != 1 || bans[0].Source != banned.String()+"/32" {
		t.Errorf("bans after the bad reload: %+v", bans)
	}

	// Fix it (max_connections 4 now): applied, the ban still there.
	off = len(d.Stderr())
	replaceFile(t, path, sshLimit(4)+banConfig)
	if err := d.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, d, "the fixed configuration to be applied", 3*time.Second, func() bool {
		return strings.Contains(d.Stderr()[off:], `msg="reloaded configuration"`) && chainHas(t, s.Server, "lim_ssh", "ct count over 4 ")
	})
	want(t, "a fresh source after the fix", tally(t, c, 5, nstest.ClientV4(1, 4), nstest.ServerV4, 22), map[nstest.Outcome]int{accepted: 4, refused: 1})
	want(t, "banned after the fix", tallyT(t, c, 1, banned, nstest.ServerV4, 80, 300*time.Millisecond), map[nstest.Outcome]int{timedOut: 1})
	if bans := readStatus(t, s, path).Limits[1].Bans; len(bans) != 1 || bans[0].ExpiresIn < 3000 {
		t.Errorf("bans after the fix: %+v", bans)
	}
	if r := c.DialTCP(t, holder, nstest.ServerV4, 22, dialTimeout); r.Outcome != refused {
		t.Errorf("the holder's 4th after the fix: %v, want refused (its element keeps 3)", r)
	}
}
