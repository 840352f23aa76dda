package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nftlimitd/nftlimitd/integration/nstest"
)

var (
	accepted    = nstest.Accepted
	refused     = nstest.Refused
	unreachable = nstest.Unreachable
	timedOut    = nstest.TimedOut
)

// want checks a tally against the expected outcomes.
func want(t *testing.T, what string, got map[nstest.Outcome]int, exp map[nstest.Outcome]int) {
	t.Helper()
	for _, o := range []nstest.Outcome{accepted, refused, unreachable, timedOut} {
		if got[o] != exp[o] {
			t.Errorf("%s: got %v, want %v", what, got, exp)
			return
		}
	}
}

// TestConnLimitPerSource replaces `iptables -p tcp --syn --dport 22 -m
// connlimit --connlimit-above 3 -j REJECT`: each IPv4 source gets exactly 3;
// IPv6 sources are grouped by /64 by default.
func TestConnLimitPerSource(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{})
	s.Server.ServeTCP(t, 22)
	s.apply(t, s.Server, `
[[limit]]
name = "ssh"
ports = [22]
max_connections = 3
`)
	c := s.Client
	want(t, "v4 source 1", tally(t, c, 5, nstest.ClientV4(1, 1), nstest.ServerV4, 22), map[nstest.Outcome]int{accepted: 3, refused: 2})
	want(t, "v4 source 2 (same /24, own budget)", tally(t, c, 4, nstest.ClientV4(1, 2), nstest.ServerV4, 22), map[nstest.Outcome]int{accepted: 3, refused: 1})
	want(t, "v6 host 1 of a /64", tally(t, c, 2, nstest.ClientV6(1, 1), nstest.ServerV6, 22), map[nstest.Outcome]int{accepted: 2})
	want(t, "v6 host 2 of the same /64", tally(t, c, 3, nstest.ClientV6(1, 2), nstest.ServerV6, 22), map[nstest.Outcome]int{accepted: 1, refused: 2})
	want(t, "v6 other /64", tally(t, c, 3, nstest.ClientV6(2, 1), nstest.ServerV6, 22), map[nstest.Outcome]int{accepted: 3})
	if got := counter(t, s.Server, "nftlimit", "ssh_hits"); got != 5 {
		t.Errorf("ssh_hits counter = %d, want 5 (2+1+2 refused)", got)
	}
}

// TestSlotsFreeOnClose: closing connections gives the budget back.
func TestSlotsFreeOnClose(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{})
	s.Server.ServeTCP(t, 22)
	s.apply(t, s.Server, "[[limit]]\nname = \"ssh\"\nports = [22]\nmax_connections = 2\n")
	src := nstest.ClientV4(1, 1)
	rs := s.Client.DialMany(t, 2, src, nstest.ServerV4, 22, dialTimeout)
	if n := nstest.Count(rs, accepted); n != 2 {
		t.Fatalf("accepted %d of 2", n)
	}
	if r := s.Client.DialTCP(t, src, nstest.ServerV4, 22, dialTimeout); r.Outcome != refused {
		t.Fatalf("third connection: %v, want refused", r.Outcome)
	}
	closeAll(rs)
	// The slot frees when conntrack sees the close; allow for the jiffy.
	ok := false
	for i := 0; i < 50 && !ok; i++ {
		r := s.Client.DialTCP(t, src, nstest.ServerV4, 22, dialTimeout)
		ok = r.Outcome == accepted
		if !ok {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if !ok {
		t.Fatal("no slot freed after closing both connections")
	}
}

// TestPrefixGrouping replaces `--connlimit-mask 24`: one budget per /24 and,
// with ipv6_prefix = 56, per /56 (both client /64s share one).
func TestPrefixGrouping(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{})
	s.Server.ServeTCP(t, 80)
	s.apply(t, s.Server, `
[[limit]]
name = "http"
ports = [80]
max_connections = 4
ipv4_prefix = 24
ipv6_prefix = 56
`)
	c := s.Client
	want(t, "198.51.100.1", tally(t, c, 3, nstest.ClientV4(1, 1), nstest.ServerV4, 80), map[nstest.Outcome]int{accepted: 3})
	want(t, "198.51.100.2 (same /24)", tally(t, c, 3, nstest.ClientV4(1, 2), nstest.ServerV4, 80), map[nstest.Outcome]int{accepted: 1, refused: 2})
	want(t, "203.0.113.1 (other /24)", tally(t, c, 4, nstest.ClientV4(2, 1), nstest.ServerV4, 80), map[nstest.Outcome]int{accepted: 4})
	want(t, "v6 /64 one", tally(t, c, 3, nstest.ClientV6(1, 1), nstest.ServerV6, 80), map[nstest.Outcome]int{accepted: 3})
	want(t, "v6 /64 two, same /56", tally(t, c, 3, nstest.ClientV6(2, 1), nstest.ServerV6, 80), map[nstest.Outcome]int{accepted: 1, refused: 2})
	// The set holds the masked prefixes.
	out := s.Server.MustExec(t, "nft", "list", "set", "inet", "nftlimit", "http_conn4")
	if !strings.Contains(out, "198.51.100.0") || !strings.Contains(out, "203.0.113.0") {
		t.Errorf("http_conn4 does not hold the /24 prefixes:\n%s", out)
	}
}

// TestExemptions: exempt addresses and CIDRs, inline and from a file, are
// never limited; everyone else is.
func TestExemptions(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{})
	s.Server.ServeTCP(t, 80)
	file := filepath.Join(s.dir, "exempt.txt")
	if err := os.WriteFile(file, []byte("# CDN\n203.0.113.0/24\n\n2001:db8:1:2::/64 # proxies\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.apply(t, s.Server, cfg(`
[[limit]]
name = "http"
ports = [80]
max_connections = 2
exempt = ["198.51.100.7", "2001:db8:1:1::5"]
exempt_file = %q
`, file))
	c := s.Client
	want(t, "exempt address", tally(t, c, 6, nstest.ClientV4(1, 7), nstest.ServerV4, 80), map[nstest.Outcome]int{accepted: 6})
	want(t, "neighbour of the exempt address", tally(t, c, 4, nstest.ClientV4(1, 8), nstest.ServerV4, 80), map[nstest.Outcome]int{accepted: 2, refused: 2})
	want(t, "exempt v6 address", tally(t, c, 5, nstest.ClientV6(1, 5), nstest.ServerV6, 80), map[nstest.Outcome]int{accepted: 5})
	want(t, "exempt_file v4 CIDR", tally(t, c, 5, nstest.ClientV4(2, 3), nstest.ServerV4, 80), map[nstest.Outcome]int{accepted: 5})
	want(t, "exempt_file v6 CIDR", tally(t, c, 5, nstest.ClientV6(2, 3), nstest.ServerV6, 80), map[nstest.Outcome]int{accepted: 5})
	want(t, "v6 not exempt", tally(t, c, 4, nstest.ClientV6(1, 6), nstest.ServerV6, 80), map[nstest.Outcome]int{accepted: 2, refused: 2})
}

// TestActions: reject with a TCP reset or ICMP is refused at once (and the
// client sees the RST or the ICMP), drop times out, log lets everything
// through but counts.
func TestActions(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{})
	observe(t, s.Client)
	ports := []int{1001, 1002, 1003, 1004, 1005}
	for _, p := range ports {
		s.Server.ServeTCP(t, p)
	}
	s.apply(t, s.Server, `
[[limit]]
name = "reset"
ports = [1001]
max_connections = 1
reject_with = "tcp-reset"

[[limit]]
name = "icmp"
ports = [1002]
max_connections = 1
reject_with = "icmp-port-unreachable"

[[limit]]
name = "admin"
ports = [1003]
max_connections = 1
reject_with = "icmp-admin-prohibited"

[[limit]]
name = "dropper"
ports = [1004]
max_connections = 1
action = "drop"

[[limit]]
name = "dryrun"
ports = [1005]
max_connections = 1
action = "log"
log = true
`)
	c, src, dst := s.Client, nstest.ClientV4(1, 1), nstest.ServerV4
	rst0, icmp0 := counter(t, c, "observe", "rst"), counter(t, c, "observe", "unreach")
	want(t, "tcp-reset", tally(t, c, 3, src, dst, 1001), map[nstest.Outcome]int{accepted: 1, refused: 2})
	if d := counter(t, c, "observe", "rst") - rst0; d != 2 {
		t.Errorf("client saw %d TCP resets, want 2", d)
	}
	want(t, "icmp-port-unreachable", tallyT(t, c, 3, src, dst, 1002, icmpTimeout), map[nstest.Outcome]int{accepted: 1, refused: 2})
	if d := counter(t, c, "observe", "unreach") - icmp0; d != 2 {
		t.Errorf("client saw %d ICMP unreachables, want 2", d)
	}
	want(t, "icmp-admin-prohibited", tallyT(t, c, 3, src, dst, 1003, icmpTimeout), map[nstest.Outcome]int{accepted: 1, unreachable: 2})
	want(t, "drop", tally(t, c, 3, src, dst, 1004), map[nstest.Outcome]int{accepted: 1, timedOut: 2})
	want(t, "log (dry run)", tally(t, c, 3, src, dst, 1005), map[nstest.Outcome]int{accepted: 3})
	if got := counter(t, s.Server, "nftlimit", "dryrun_hits"); got != 2 {
		t.Errorf("dryrun_hits = %d, want 2", got)
	}
	// IPv6 is rejected the same way.
	want(t, "tcp-reset v6", tally(t, c, 2, nstest.ClientV6(1, 1), nstest.ServerV6, 1001), map[nstest.Outcome]int{accepted: 1, refused: 1})
	// An ICMP error that reaches the client while connect() still holds
	// the socket (always the case over a local veth) is only a soft error:
	// the client fails on its SYN retransmit, after about a second.
	want(t, "icmp v6", tallyT(t, c, 2, nstest.ClientV6(1, 1), nstest.ServerV6, 1002, icmpTimeout), map[nstest.Outcome]int{accepted: 1, refused: 1})
	want(t, "admin-prohibited v6", tallyT(t, c, 2, nstest.ClientV6(1, 1), nstest.ServerV6, 1003, icmpTimeout), map[nstest.Outcome]int{accepted: 1, unreachable: 1})
}

// TestUDP: a UDP limit counts flows; over the limit the client gets ICMP
// port unreachable (refused).
func TestUDP(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{})
	s.Server.ServeUDP(t, 53)
	s.apply(t, s.Server, `
[[limit]]
name = "dns"
protocol = "udp"
ports = [53]
max_connections = 2
`)
	var got []nstest.Outcome
	for i := 0; i < 4; i++ {
		got = append(got, s.Client.DialUDP(t, nstest.ClientV4(1, 1), nstest.ServerV4, 53, dialTimeout).Outcome)
	}
	exp := []nstest.Outcome{accepted, accepted, refused, refused}
	for i := range exp {
		if got[i] != exp[i] {
			t.Fatalf("udp flows: got %v, want %v", got, exp)
		}
	}
	if r := s.Client.DialUDP(t, nstest.ClientV6(1, 1), nstest.ServerV6, 53, dialTimeout); r.Outcome != accepted {
		t.Errorf("v6 flow: %v, want accepted", r.Outcome)
	}
}

// TestPortRanges: integers and "from-to" ranges are limited, ports outside
// are not; two limits sharing a port both apply.
func TestPortRanges(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{})
	for _, p := range []int{80, 8000, 8001, 8002, 8003} {
		s.Server.ServeTCP(t, p)
	}
	s.apply(t, s.Server, `
[[limit]]
name = "web"
ports = [80, "8000-8002"]
max_connections = 2

[[limit]]
name = "tight"
ports = [8002]
max_connections = 1
`)
	c, src := s.Client, nstest.ClientV4(1, 1)
	want(t, "port 80", tally(t, c, 3, src, nstest.ServerV4, 80), map[nstest.Outcome]int{accepted: 2, refused: 1})
	want(t, "port 8001 (in range)", tally(t, c, 3, nstest.ClientV4(1, 2), nstest.ServerV4, 8001), map[nstest.Outcome]int{accepted: 2, refused: 1})
	want(t, "port 8002 (both limits: the tighter bites)", tally(t, c, 3, nstest.ClientV4(1, 3), nstest.ServerV4, 8002), map[nstest.Outcome]int{accepted: 1, refused: 2})
	want(t, "port 8003 (outside)", tally(t, c, 5, src, nstest.ServerV4, 8003), map[nstest.Outcome]int{accepted: 5})
}

// TestInterfaceScoping: `interfaces` limits only traffic that arrives on
// them.
func TestInterfaceScoping(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{SecondLink: true})
	s.Server.ServeTCP(t, 80)
	s.apply(t, s.Server, cfg(`
[[limit]]
name = "http"
ports = [80]
max_connections = 1
interfaces = [%q]
`, s.Server.Link(0)))
	c, src := s.Client, nstest.ClientV4(1, 1)
	want(t, "via link A (limited)", tally(t, c, 3, src, nstest.ServerV4, 80), map[nstest.Outcome]int{accepted: 1, refused: 2})
	want(t, "via link B (not limited)", tally(t, c, 3, nstest.ClientV4(1, 2), nstest.ServerV4LinkB, 80), map[nstest.Outcome]int{accepted: 3})
}

// TestDestinationScoping: `destinations` limits only connections to those
// local addresses; a family without destinations is not limited.
func TestDestinationScoping(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{})
	s.Server.ServeTCP(t, 80)
	s.apply(t, s.Server, cfg(`
[[limit]]
name = "http"
ports = [80]
max_connections = 1
destinations = [%q]
`, nstest.ServerV4.String()))
	c := s.Client
	want(t, "to the limited address", tally(t, c, 3, nstest.ClientV4(1, 1), nstest.ServerV4, 80), map[nstest.Outcome]int{accepted: 1, refused: 2})
	want(t, "to the other address", tally(t, c, 3, nstest.ClientV4(1, 2), nstest.ServerV4Alt, 80), map[nstest.Outcome]int{accepted: 3})
	want(t, "over IPv6", tally(t, c, 3, nstest.ClientV6(1, 1), nstest.ServerV6, 80), map[nstest.Outcome]int{accepted: 3})
}

// TestForwardHook: hook = "forward" limits connections routed through the
// host to the hosts behind it.
func TestForwardHook(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{Router: true})
	s.Server.ServeTCP(t, 80)
	s.apply(t, s.Router, `
[[limit]]
name = "behind"
hook = "forward"
ports = [80]
max_connections = 2
`)
	c := s.Client
	want(t, "v4 through the router", tally(t, c, 4, nstest.ClientV4(1, 1), nstest.ServerV4, 80), map[nstest.Outcome]int{accepted: 2, refused: 2})
	want(t, "v6 through the router", tally(t, c, 4, nstest.ClientV6(1, 1), nstest.ServerV6, 80), map[nstest.Outcome]int{accepted: 2, refused: 2})
	if got := s.Server.MustExec(t, "nft", "list", "tables"); strings.Contains(got, "nftlimit") {
		t.Errorf("the server has a table it should not: %s", got)
	}
}

// TestFullSetGuard: the kernel lets new sources through unlimited when a
// set is full; when_full = "deny" gives them the action instead.
func TestFullSetGuard(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{})
	s.Server.ServeTCP(t, 80)
	s.Server.ServeTCP(t, 81)
	s.apply(t, s.Server, `
[[limit]]
name = "deny"
ports = [80]
max_connections = 5
max_sources = 2

[[limit]]
name = "allow"
ports = [81]
max_connections = 5
max_sources = 2
when_full = "allow"
`)
	c := s.Client
	for i := 1; i <= 2; i++ {
		want(t, "tracked source", tally(t, c, 1, nstest.ClientV4(1, i), nstest.ServerV4, 80), map[nstest.Outcome]int{accepted: 1})
		want(t, "tracked source", tally(t, c, 1, nstest.ClientV4(1, i), nstest.ServerV4, 81), map[nstest.Outcome]int{accepted: 1})
	}
	want(t, "third source, when_full deny", tally(t, c, 2, nstest.ClientV4(1, 3), nstest.ServerV4, 80), map[nstest.Outcome]int{refused: 2})
	want(t, "third source, when_full allow", tally(t, c, 7, nstest.ClientV4(1, 3), nstest.ServerV4, 81), map[nstest.Outcome]int{accepted: 7})
	want(t, "tracked source still limited", tally(t, c, 5, nstest.ClientV4(1, 1), nstest.ServerV4, 80), map[nstest.Outcome]int{accepted: 4, refused: 1})
}
