package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/nftlimitd/nftlimitd/integration/nstest"
	"github.com/nftlimitd/nftlimitd/internal/status"
)

// TestRateBurstAndRefill: a token bucket lets a burst through at once, then
// refills at the configured pace; refused attempts use no tokens.
func TestRateBurstAndRefill(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{})
	s.Server.ServeTCP(t, 80)
	s.apply(t, s.Server, `
[[limit]]
name = "web"
ports = [80]
rate = "4/second"
burst = 5
reject_with = "tcp-reset"
`)
	c := s.Client
	for _, src := range []netip.Addr{nstest.ClientV4(1, 1), nstest.ClientV6(1, 1)} {
		rs := c.DialMany(t, 9, src, serverFor(src), 80, dialTimeout)
		closeAll(rs)
		if got := nstest.Count(rs, accepted); got != 5 {
			t.Errorf("%s: burst: %d of 9 accepted, want 5", src, got)
		}
	}
	// Then one attempt every 25 ms for 2 s: 4 a second get through.
	src := nstest.ClientV4(1, 2)
	closeAll(c.DialMany(t, 5, src, nstest.ServerV4, 80, dialTimeout)) // empty the bucket
	start := time.Now()
	var first, last time.Time
	n := 0
	for time.Since(start) < 2*time.Second {
		r := c.DialTCP(t, src, nstest.ServerV4, 80, dialTimeout)
		if r.Outcome == accepted {
			if n == 0 {
				first = time.Now()
			}
			last = time.Now()
			n++
			r.Conn.Close()
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n < 3 {
		t.Fatalf("refill: only %d accepted in 2 s", n)
	}
	// The pace between the first and the last token.
	pace := float64(n-1) / last.Sub(first).Seconds()
	t.Logf("refill: %d accepted in 2 s; %d tokens in %v = %.2f/s (configured 4/s)", n, n-1, last.Sub(first).Round(time.Millisecond), pace)
	if pace < 3.6 || pace > 4.4 {
		t.Errorf("refill pace %.2f/s, want 4/s", pace)
	}
}

// serverFor picks the server address of src's family.
func serverFor(src netip.Addr) netip.Addr {
	if src.Is6() {
		return nstest.ServerV6
	}
	return nstest.ServerV4
}

const banConfig = `
[[limit]]
name = "web"
ports = [80]
rate = "2/second"
ipv6_prefix = 64
action = "reject"
ban = "30s"
`

// TestBan: going over the rate bans the source group: all its packets to
// the limit's ports are dropped (established connections too), also after
// the bucket has refilled, also across a reload, until the ban ends or
// `unban` lifts it. IPv6 sources are banned by /64.
func TestBan(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{})
	s.Server.ServeTCP(t, 80)
	s.Server.ServeTCP(t, 81)
	s.apply(t, s.Server, banConfig)
	p := s.dir + "/nftlimit.conf"
	c := s.Client
	for _, tc := range []struct{ offender, neighbour, other netip.Addr }{
		{nstest.ClientV4(1, 1), nstest.ClientV4(1, 1), nstest.ClientV4(1, 2)},
		{nstest.ClientV6(1, 1), nstest.ClientV6(1, 2), nstest.ClientV6(2, 1)},
	} {
		dst := serverFor(tc.offender)
		var got []nstest.Outcome
		var held nstest.Result
		for i := 0; i < 4; i++ {
			r := c.DialTCP(t, tc.offender, dst, 80, dialTimeout)
			if i == 0 {
				held = r
			}
			got = append(got, r.Outcome)
		}
		// Burst 2, then the violation is refused and bans; then dropped.
		if exp := []nstest.Outcome{accepted, accepted, refused, timedOut}; fmt.Sprint(got) != fmt.Sprint(exp) {
			t.Fatalf("%s going over: %v, want %v", tc.offender, got, exp)
		}
		// The bucket refills in 1 s; the ban lasts 30 s.
		time.Sleep(1100 * time.Millisecond)
		want(t, fmt.Sprint(tc.neighbour, " banned after the refill"), tally(t, c, 1, tc.neighbour, dst, 80), map[nstest.Outcome]int{timedOut: 1})
		want(t, "other ports are not banned", tally(t, c, 1, tc.offender, dst, 81), map[nstest.Outcome]int{accepted: 1})
		want(t, fmt.Sprint(tc.other, " (another group) not banned"), tally(t, c, 1, tc.other, dst, 80), map[nstest.Outcome]int{accepted: 1})
		// The connection the source held is cut too: its packets are
		// dropped by the ban.
		before := readStatus(t, s, p).Limits[0].BannedDrops.Packets
		if _, err := held.Conn.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(2 * time.Second)
		for readStatus(t, s, p).Limits[0].BannedDrops.Packets == before {
			if time.Now().After(deadline) {
				t.Fatalf("%s: data on the held connection was not dropped by the ban", tc.offender)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// A reload that changes the limit keeps the bans.
	s.apply(t, s.Server, strings.Replace(banConfig, `action = "reject"`, `action = "drop"`, 1))
	want(t, "banned after a reload", tally(t, c, 1, nstest.ClientV4(1, 1), nstest.ServerV4, 80), map[nstest.Outcome]int{timedOut: 1})
	// status shows the bans; unban lifts one at once.
	if bans := readStatus(t, s, p).Limits[0].Bans; len(bans) != 2 || bans[0].ExpiresIn > 30 || bans[0].ExpiresIn < 20 {
		t.Errorf("status bans: %+v, want 2 with 20-30 s left", bans)
	}
	out := s.Server.MustExec(t, s.bin, "unban", nstest.ClientV4(1, 1).String(), "-c", p)
	if !strings.Contains(out, "lifted the ban on 198.51.100.1/32 by web") {
		t.Errorf("unban: %s", out)
	}
	want(t, "after unban", tally(t, c, 1, nstest.ClientV4(1, 1), nstest.ServerV4, 80), map[nstest.Outcome]int{accepted: 1})
	if _, errOut, code := s.run(t, s.Server, "unban", nstest.ClientV4(1, 1).String(), "-c", p); code != 1 || !strings.Contains(errOut, "is not banned") {
		t.Errorf("second unban: exit %d: %s", code, errOut)
	}
	if _, errOut, code := s.run(t, s.Server, "unban", "198.51.100.1", "--limit", "nope", "-c", p); code != 1 || !strings.Contains(errOut, `no limit named "nope"`) {
		t.Errorf("unban of an unknown limit: exit %d: %s", code, errOut)
	}
	// unban of a v6 address lifts its /64.
	s.Server.MustExec(t, s.bin, "unban", nstest.ClientV6(1, 9).String(), "--limit", "web", "-c", p)
	want(t, "v6 after unban", tally(t, c, 1, nstest.ClientV6(1, 1), nstest.ServerV6, 80), map[nstest.Outcome]int{accepted: 1})
}

// TestBanExpires: a ban ends by itself.
func TestBanExpires(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{})
	s.Server.ServeTCP(t, 80)
	s.apply(t, s.Server, banConfig)
	p := s.dir + "/nftlimit.conf"
	s.Server.MustExec(t, s.bin, "ban", "2001:db8:1:2::7", "--limit", "web", "--for", "1s", "-c", p)
	src := nstest.ClientV6(2, 3) // same /64
	want(t, "banned", tally(t, s.Client, 1, src, nstest.ServerV6, 80), map[nstest.Outcome]int{timedOut: 1})
	deadline := time.Now().Add(3 * time.Second)
	for s.Client.DialTCP(t, src, nstest.ServerV6, 80, 200*time.Millisecond).Outcome != accepted {
		if time.Now().After(deadline) {
			t.Fatal("the 1 s ban did not end within 3 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestManualBan: `ban` bans a group for the given time at once.
func TestManualBan(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{})
	s.Server.ServeTCP(t, 80)
	s.apply(t, s.Server, banConfig)
	p := s.dir + "/nftlimit.conf"
	out := s.Server.MustExec(t, s.bin, "ban", "198.51.100.5", "--limit", "web", "--for", "1h", "-c", p)
	if !strings.Contains(out, "banned 198.51.100.5/32 from web for 1h0m0s") {
		t.Errorf("ban: %s", out)
	}
	want(t, "banned by hand", tally(t, s.Client, 1, nstest.ClientV4(1, 5), nstest.ServerV4, 80), map[nstest.Outcome]int{timedOut: 1})
	st := readStatus(t, s, p)
	if bans := st.Limits[0].Bans; len(bans) != 1 || bans[0].Source != "198.51.100.5/32" || bans[0].ExpiresIn < 3500 {
		t.Errorf("status bans: %+v", bans)
	}
	if _, errOut, code := s.run(t, s.Server, "ban", "198.51.100.5", "--limit", "web", "-c", p); code != 1 || !strings.Contains(errOut, "--for") {
		t.Errorf("ban without --for: exit %d: %s", code, errOut)
	}
}

// TestBanEscalation: a repeat offender within the window gets the next,
// longer ban.
func TestBanEscalation(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{})
	s.Server.ServeTCP(t, 80)
	s.apply(t, s.Server, `
[[limit]]
name = "web"
ports = [80]
rate = "5/second"
ban_escalate = ["1s", "5s"]
ban_window = "1m"
`)
	p := s.dir + "/nftlimit.conf"
	c, src := s.Client, nstest.ClientV4(1, 1)
	offend := func() {
		t.Helper()
		rs := c.DialMany(t, 7, src, nstest.ServerV4, 80, dialTimeout)
		closeAll(rs)
		if nstest.Count(rs, accepted) > 5 {
			t.Fatalf("offence: %d accepted", nstest.Count(rs, accepted))
		}
	}
	offend()
	if b := readStatus(t, s, p).Limits[0].Bans; len(b) != 1 || b[0].ExpiresIn > 1 {
		t.Fatalf("first offence: bans %+v, want one of at most 1 s", b)
	}
	time.Sleep(1300 * time.Millisecond) // first ban over; the bucket refilled
	offend()
	b := readStatus(t, s, p).Limits[0].Bans
	if len(b) != 1 || b[0].ExpiresIn < 4 || b[0].ExpiresIn > 5 {
		t.Fatalf("second offence: bans %+v, want one of about 5 s", b)
	}
	time.Sleep(1300 * time.Millisecond)
	want(t, "still banned after the first ban's length", tally(t, c, 1, src, nstest.ServerV4, 80), map[nstest.Outcome]int{timedOut: 1})
}

// readStatus runs `status --json` and decodes it strictly into the
// documented shape.
func readStatus(t *testing.T, s *suite, config string) status.Status {
	t.Helper()
	out := s.Server.MustExec(t, s.bin, "status", "--json", "-c", config)
	dec := json.NewDecoder(bytes.NewReader([]byte(out)))
	dec.DisallowUnknownFields()
	var st status.Status
	if err := dec.Decode(&st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	return st
}

// TestStatus: status shows what the test did: tracked groups, hits that
// match the refused connections, the heaviest sources, and how full each set
// is; --json has the documented shape.
func TestStatus(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{})
	s.Server.ServeTCP(t, 22)
	s.apply(t, s.Server, `
[[limit]]
name = "ssh"
ports = [22]
max_connections = 3
max_sources = 100
rate = "100/second"
`)
	p := s.dir + "/nftlimit.conf"
	c := s.Client
	held := c.DialMany(t, 5, nstest.ClientV4(1, 1), nstest.ServerV4, 22, dialTimeout)
	if nstest.Count(held, accepted) != 3 {
		t.Fatalf("accepted %d of 5", nstest.Count(held, accepted))
	}
	held2 := c.DialMany(t, 2, nstest.ClientV6(1, 1), nstest.ServerV6, 22, dialTimeout)
	if nstest.Count(held2, accepted) != 2 {
		t.Fatalf("v6: accepted %d of 2", nstest.Count(held2, accepted))
	}
	st := readStatus(t, s, p)
	if !st.Present || st.Table != "nftlimit" || len(st.Limits) != 1 {
		t.Fatalf("status: %+v", st)
	}
	l := st.Limits[0]
	if l.Hits.Packets != 2 {
		t.Errorf("hits = %d, want 2 (the refused connections)", l.Hits.Packets)
	}
	sets := map[string]status.SetStatus{}
	for _, ss := range l.Sets {
		sets[ss.Name] = ss
	}
	for name, n := range map[string]int{"ssh_conn4": 1, "ssh_conn6": 1, "ssh_rate4": 1, "ssh_rate6": 1} {
		if sets[name].Elements != n || sets[name].Size != 100 {
			t.Errorf("set %s: %+v, want %d element(s) of 100", name, sets[name], n)
		}
	}
	wantTop := []status.Source{{Source: "198.51.100.1/32", OpenConnections: 3}, {Source: "2001:db8:1:1::/64", OpenConnections: 2}}
	if fmt.Sprint(l.TopSources) != fmt.Sprint(wantTop) {
		t.Errorf("top sources: %+v, want %+v", l.TopSources, wantTop)
	}
	out := s.Server.MustExec(t, s.bin, "status", "-c", p)
	for _, w := range []string{"LIMIT", "ssh", "3 conns, 100/second burst 100", "heaviest sources by open connections", "198.51.100.1/32"} {
		if !strings.Contains(out, w) {
			t.Errorf("status lacks %q:\n%s", w, out)
		}
	}
	t.Logf("status:\n%s", out)
}

// TestBanScope: a ban applies where its limit applies: only on the limit's
// interfaces, and never to an exempt source.
func TestBanScope(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{SecondLink: true})
	s.Server.ServeTCP(t, 80)
	s.apply(t, s.Server, cfg(`
[[limit]]
name = "web"
ports = [80]
rate = "2/second"
ban = "1h"
interfaces = [%q]
exempt = ["198.51.100.9"]
`, s.Server.Link(0)))
	p := s.dir + "/nftlimit.conf"
	c := s.Client
	s.Server.MustExec(t, s.bin, "ban", "198.51.100.1", "--limit", "web", "--for", "1h", "-c", p)
	s.Server.MustExec(t, s.bin, "ban", "198.51.100.9", "--limit", "web", "--for", "1h", "-c", p)
	want(t, "banned, via the limited link", tally(t, c, 1, nstest.ClientV4(1, 1), nstest.ServerV4, 80), map[nstest.Outcome]int{timedOut: 1})
	want(t, "banned, via the other link", tally(t, c, 1, nstest.ClientV4(1, 1), nstest.ServerV4LinkB, 80), map[nstest.Outcome]int{accepted: 1})
	want(t, "exempt source banned by hand", tally(t, c, 1, nstest.ClientV4(1, 9), nstest.ServerV4, 80), map[nstest.Outcome]int{accepted: 1})
}
