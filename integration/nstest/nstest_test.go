package nstest

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Timeouts: expected time-outs are short, expected answers get plenty.
const (
	answerTimeout  = 3 * time.Second
	dropTimeout    = 300 * time.Millisecond
	verdictTimeout = 500 * time.Millisecond // a RST or ICMP error; the SYN retransmit would be at 1 s
	testTimeout    = 60 * time.Second
)

// TestMain checks, after all tests, that no thread of the process was left in
// another network namespace (STYLE habit 10).
func TestMain(m *testing.M) {
	code := m.Run()
	if err := CheckThreads(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
		code = 1
	}
	os.Exit(code)
}

func TestAddresses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		got  netip.Addr
		want string
	}{
		{ClientV4(1, 1), "198.51.100.1"},
		{ClientV4(1, 16), "198.51.100.16"},
		{ClientV4(2, 5), "203.0.113.5"},
		{ClientV6(1, 1), "2001:db8:1:1::1"},
		{ClientV6(2, 16), "2001:db8:1:2::10"},
		{transitV4(3, clientEnd).Addr(), "198.18.3.1"},
		{transitV6(4, serverEnd).Addr(), "2001:db8:ff04::2"},
	}
	for _, tt := range tests {
		if tt.got.String() != tt.want {
			t.Errorf("got %v, want %s", tt.got, tt.want)
		}
	}
	for g := 1; g <= Groups; g++ {
		for i := 1; i <= PerGroup; i++ {
			if !ClientNetV4(g).Contains(ClientV4(g, i)) || !ClientNetV6(g).Contains(ClientV6(g, i)) {
				t.Errorf("client address (%d, %d) outside its group's prefix", g, i)
			}
		}
	}
	defer func() {
		if recover() == nil {
			t.Errorf("ClientV4(3, 1) did not panic")
		}
	}()
	ClientV4(3, 1)
}

func TestOutcomeString(t *testing.T) {
	t.Parallel()
	for o, want := range map[Outcome]string{Failed: "failed", Accepted: "accepted", Refused: "refused", Unreachable: "unreachable", TimedOut: "timed out", 9: "Outcome(9)"} {
		if got := o.String(); got != want {
			t.Errorf("Outcome(%d).String() = %q, want %q", int(o), got, want)
		}
	}
}

func TestModuleRoot(t *testing.T) {
	t.Parallel()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "integration", "nstest")); err != nil {
		t.Errorf("module root %s does not hold integration/nstest: %v", root, err)
	}
}

// serverAddrs returns the server addresses of one family for the lab's links.
func serverAddrs(v6, secondLink bool) []netip.Addr {
	addrs := []netip.Addr{ServerV4, ServerV4Alt}
	if v6 {
		addrs = []netip.Addr{ServerV6, ServerV6Alt}
	}
	if secondLink {
		addrs = append(addrs, map[bool]netip.Addr{false: ServerV4LinkB, true: ServerV6LinkB}[v6])
	}
	return addrs
}

// TestReachability dials TCP and UDP from every client address to every
// server address. Nft rules in the server (and the router) drop anything
// that uses the wrong link in either direction, so success also proves that
// link B traffic and its replies really take link B.
func TestReachability(t *testing.T) {
	t.Parallel()
	for _, opts := range []Options{{SecondLink: true}, {Router: true, SecondLink: true}, {Router: true}} {
		t.Run(fmt.Sprintf("router=%v,secondlink=%v", opts.Router, opts.SecondLink), func(t *testing.T) {
			t.Parallel()
			Watchdog(t, testTimeout)
			lab := NewLab(t, opts)
			s := lab.Server
			if opts.SecondLink {
				s.Nft(t, fmt.Sprintf(`table inet pin {
	chain in {
		type filter hook input priority 0;
		ip daddr %[1]s iifname != %[3]q drop
		ip6 daddr %[2]s iifname != %[3]q drop
		ip daddr %[4]s iifname != %[6]q drop
		ip6 daddr %[5]s iifname != %[6]q drop
	}
	chain out {
		type filter hook output priority 0;
		ip saddr %[1]s oifname != %[3]q drop
		ip6 saddr %[2]s oifname != %[3]q drop
		ip saddr %[4]s oifname != %[6]q drop
		ip6 saddr %[5]s oifname != %[6]q drop
	}
}`, ServerNetV4, ServerNetV6, s.Link(0), ServerNetV4LinkB, ServerNetV6LinkB, s.Link(1)))
			}
			if r := lab.Router; r != nil {
				var rules []string
				for i, nets := range [][]netip.Prefix{{ServerNetV4, ServerNetV6}, {ServerNetV4LinkB, ServerNetV6LinkB}} {
					if i == 1 && !opts.SecondLink {
						break
					}
					for _, n := range nets {
						fam := map[bool]string{false: "ip", true: "ip6"}[n.Addr().Is6()]
						rules = append(rules,
							fmt.Sprintf("%s daddr %s iifname != %q drop", fam, n, r.Link(i)),
							fmt.Sprintf("%s daddr %s oifname != %q drop", fam, n, r.ServerLink(i)),
							fmt.Sprintf("%s saddr %s iifname != %q drop", fam, n, r.ServerLink(i)),
							fmt.Sprintf("%s saddr %s oifname != %q drop", fam, n, r.Link(i)),
						)
					}
				}
				rules = append(rules, "counter")
				r.Nft(t, "table inet pin {\n\tchain forward {\n\t\ttype filter hook forward priority 0;\n\t\t"+strings.Join(rules, "\n\t\t")+"\n\t}\n}\n")
			}
			srv := s.ServeTCP(t, 5001)
			s.ServeUDP(t, 5002)

			// Reported once per destination and protocol, so a broken link
			// fails in seconds.
			const timeout = time.Second
			accepted := 0
			for _, v6 := range []bool{false, true} {
				for _, dst := range serverAddrs(v6, opts.SecondLink) {
					tcpOK, udpOK := true, true
					for g := 1; g <= Groups; g++ {
						for i := 1; i <= PerGroup; i++ {
							src := ClientV4(g, i)
							if v6 {
								src = ClientV6(g, i)
							}
							if tcpOK {
								if r := lab.Client.DialTCP(t, src, dst, 5001, timeout); r.Outcome != Accepted {
									t.Errorf("TCP %v -> %v: %v, want accepted", src, dst, r)
									tcpOK = false
								} else {
									accepted++
									_ = r.Conn.Close()
								}
							}
							if udpOK {
								if r := lab.Client.DialUDP(t, src, dst, 5002, timeout); r.Outcome != Accepted {
									t.Errorf("UDP %v -> %v: %v, want accepted", src, dst, r)
									udpOK = false
								} else {
									_ = r.Conn.Close()
								}
							}
						}
					}
				}
			}
			srv.WaitAccepted(t, accepted, answerTimeout)
			if lab.Router != nil {
				out := lab.Router.MustExec(t, "nft", "list", "chain", "inet", "pin", "forward")
				if strings.Contains(out, "counter packets 0 ") {
					t.Errorf("router forwarded nothing:\n%s", out)
				}
			}
		})
	}
}

// TestOutcomes checks that rules in the server's input hook and in the
// router's forward hook produce the outcomes DialTCP and DialUDP report.
func TestOutcomes(t *testing.T) {
	t.Parallel()
	const (
		portReject  = 5001 // TCP reset / ICMP port unreachable
		portDrop    = 5002
		portAdmin   = 5003 // ICMP admin prohibited
		portClosed  = 5004 // no rule, nobody listening
		portControl = 5005 // no rule, listening
	)
	for _, place := range []string{"server", "router"} {
		t.Run(place, func(t *testing.T) {
			t.Parallel()
			Watchdog(t, testTimeout)
			lab := NewLab(t, Options{Router: place == "router"})
			filter, hook := lab.Server, "input"
			if place == "router" {
				filter, hook = lab.Router, "forward"
			}
			filter.Nft(t, fmt.Sprintf(`table inet t {
	chain c {
		type filter hook %s priority 0;
		tcp dport %d reject with tcp reset
		udp dport %[2]d reject with icmpx port-unreachable
		th dport %d drop
		th dport %d reject with icmpx admin-prohibited
	}
}`, hook, portReject, portDrop, portAdmin))
			for _, port := range []int{portReject, portDrop, portAdmin, portControl} {
				lab.Server.ServeTCP(t, port)
				lab.Server.ServeUDP(t, port)
			}
			tests := []struct {
				port int
				want Outcome
			}{
				{portReject, Refused},
				{portDrop, TimedOut},
				{portAdmin, Unreachable},
				{portClosed, Refused},
				{portControl, Accepted},
			}
			for _, fam := range []struct{ src, dst netip.Addr }{{ClientV4(1, 1), ServerV4}, {ClientV6(2, 3), ServerV6Alt}} {
				for _, tt := range tests {
					// A verdict must come quickly: an ICMP error too, also
					// over IPv6 (see connectWatch).
					timeout := verdictTimeout
					switch tt.want {
					case Accepted:
						timeout = answerTimeout
					case TimedOut:
						timeout = dropTimeout
					}
					if got := lab.Client.DialTCP(t, fam.src, fam.dst, tt.port, timeout); got.Outcome != tt.want {
						t.Errorf("TCP %v -> [%v]:%d: %v, want %v", fam.src, fam.dst, tt.port, got, tt.want)
					}
					if got := lab.Client.DialUDP(t, fam.src, fam.dst, tt.port, timeout); got.Outcome != tt.want {
						t.Errorf("UDP %v -> [%v]:%d: %v, want %v", fam.src, fam.dst, tt.port, got, tt.want)
					}
				}
			}
		})
	}
}

// TestDialMany fires simultaneous connects at a connection limit: exactly
// the limit gets through.
func TestDialMany(t *testing.T) {
	t.Parallel()
	Watchdog(t, testTimeout)
	lab := NewLab(t, Options{})
	lab.Server.Nft(t, `table inet t {
	set s4 { type ipv4_addr; flags dynamic; }
	chain c {
		type filter hook input priority 0;
		tcp dport 5001 ct state new add @s4 { ip saddr ct count over 5 } reject with tcp reset
	}
}`)
	srv := lab.Server.ServeTCP(t, 5001)
	rs := lab.Client.DialMany(t, 20, ClientV4(1, 7), ServerV4, 5001, answerTimeout)
	if got, want := Count(rs, Accepted), 5; got != want {
		t.Errorf("accepted %d of 20 at a limit of 5, want %d: %v", got, want, rs)
	}
	if got, want := Count(rs, Refused), 15; got != want {
		t.Errorf("refused %d of 20 at a limit of 5, want %d: %v", got, want, rs)
	}
	srv.WaitAccepted(t, 5, answerTimeout)

	// Without a limit, all of them.
	rs = lab.Client.DialMany(t, 50, ClientV6(1, 7), ServerV6, 5001, answerTimeout)
	if got := Count(rs, Accepted); got != 50 {
		t.Errorf("accepted %d of 50 IPv6 connects without a limit, want 50: %v", got, rs)
	}
	srv.WaitAccepted(t, 55, answerTimeout)
	if got := srv.Open(); got != 55 {
		t.Errorf("server holds %d connections open, want 55", got)
	}
}

// TestFailedOutcome: a source address the client does not have is Failed,
// not mistaken for a network verdict.
func TestFailedOutcome(t *testing.T) {
	t.Parallel()
	lab := NewLab(t, Options{})
	lab.Server.ServeTCP(t, 5001)
	r := lab.Client.DialTCP(t, netip.MustParseAddr("198.51.100.200"), ServerV4, 5001, answerTimeout)
	if r.Outcome != Failed || r.Err == nil || r.Conn != nil {
		t.Errorf("dial from a foreign address: %v, want failed (EADDRNOTAVAIL)", r)
	}
}

// TestExecAndCleanup runs commands in a lab's namespaces and checks that
// nothing (namespaces, processes) is left once the lab's test is over.
func TestExecAndCleanup(t *testing.T) {
	t.Parallel()
	var names []string
	var proc *Process
	t.Run("lab", func(t *testing.T) {
		Watchdog(t, testTimeout)
		lab := NewLab(t, Options{Router: true, SecondLink: true})
		for _, h := range []*Host{lab.Client, lab.Router, lab.Server} {
			names = append(names, h.Name)
			if !strings.HasPrefix(h.Name, fmt.Sprintf("nlt-%d-", os.Getpid())) {
				t.Errorf("namespace name %q does not start with nlt-<pid>-", h.Name)
			}
		}
		out := lab.Server.MustExec(t, "ip", "-br", "addr", "show", "dev", lab.Server.Link(1))
		if !strings.Contains(out, ServerV4LinkB.String()) || !strings.Contains(out, ServerV6LinkB.String()) {
			t.Errorf("server link B addresses missing from `ip addr`: %s", out)
		}
		for _, h := range []*Host{lab.Client, lab.Router, lab.Server} {
			if out := h.MustExec(t, "ip", "-6", "addr", "show"); strings.Contains(out, "tentative") {
				t.Errorf("%s has tentative IPv6 addresses (DAD not off):\n%s", h.Name, out)
			}
		}
		if _, stderr, code := lab.Client.Exec(t, "ip", "link", "show", "dev", "nonexistent0"); code == 0 || stderr == "" {
			t.Errorf("ip link show of a missing device: exit code %d, stderr %q; want failure", code, stderr)
		}
		if out := lab.Router.MustExec(t, "nft", "list", "ruleset"); strings.TrimSpace(out) != "" {
			t.Errorf("new namespace has a ruleset:\n%s", out)
		}
		proc = lab.Server.Start(t, "sleep", "600")
		lab.Server.ServeTCP(t, 5001)
		if r := lab.Client.DialTCP(t, ClientV4(1, 1), ServerV4, 5001, answerTimeout); r.Outcome != Accepted {
			t.Errorf("dial: %v", r)
		}
	})
	select {
	case <-proc.Done():
	default:
		t.Errorf("process %s still running after cleanup", proc.Cmd)
	}
	b, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, b)
	}
	out := string(b)
	for _, name := range names {
		if strings.Contains(out, name) {
			t.Errorf("namespace %s left behind: ip netns list:\n%s", name, out)
		}
	}
}
