package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nftlimitd/nftlimitd/integration/nstest"
)

// fullConfig uses every feature of the core, for the table-level tests.
const fullConfig = `
[table]
priority = -5

[defaults]
exempt = ["192.0.2.200"]

[[limit]]
name = "ssh"
ports = [22]
max_connections = 3

[[limit]]
name = "http"
ports = [80, 443, "8000-8080"]
max_connections = 20
ipv4_prefix = 24
exempt = ["198.51.100.7", "2001:db8:1::/48"]
reject_with = "tcp-reset"
log = true
interfaces = ["lo", "eth9"]
destinations = ["192.0.2.1", "2001:db8::/64"]

[[limit]]
name = "https-extra"
ports = [443, "60000-65535"]
max_connections = 50
action = "drop"
when_full = "allow"
max_sources = 1000

[[limit]]
name = "dns"
protocol = "udp"
hook = "forward"
ports = [53]
max_connections = 10
action = "log"
`

// TestRenderMatchesKernel: `render` is accepted by `nft -c`, and after
// `apply`, `nft list table` prints exactly what `render` printed, but for
// set elements and counter values.
func TestRenderMatchesKernel(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{})
	for name, conf := range map[string]string{
		"full":    fullConfig,
		"minimal": "[[limit]]\nname = \"ssh\"\nports = [22]\nmax_connections = 3\n",
		"raw-priority": "[table]\nname = \"guard\"\npriority = -300\n[[limit]]\nname = \"a\"\nports = [1]\nmax_connections = 1\n" +
			"[[limit]]\nname = \"b\"\nports = [\"1-65535\"]\nmax_connections = 2\nipv6_prefix = 128\n",
	} {
		t.Run(name, func(t *testing.T) {
			p := s.writeConfig(t, name+".conf", conf)
			rendered, errOut, code := s.run(t, s.Server, "render", "-c", p)
			if code != 0 {
				t.Fatalf("render: exit %d: %s", code, errOut)
			}
			file := filepath.Join(s.dir, name+".nft")
			if err := os.WriteFile(file, []byte(rendered), 0o644); err != nil {
				t.Fatal(err)
			}
			s.Server.MustExec(t, "nft", "-c", "-f", file)

			out, errOut, code := s.run(t, s.Server, "apply", "-c", p)
			if code != 0 {
				t.Fatalf("apply: exit %d: %s%s", code, out, errOut)
			}
			table := "nftlimit"
			if name == "raw-priority" {
				table = "guard"
			}
			listed := listTable(t, s.Server, table)
			if normalize(listed) != normalize(rendered) {
				t.Errorf("nft list differs from render\n--- render\n%s\n--- nft list\n%s", rendered, listed)
			}
			s.Server.MustExec(t, s.bin, "remove", "-c", p)
		})
	}
}

// TestApplyIsIdempotent: a second apply changes nothing (not even the
// ruleset generation), and diff agrees.
func TestApplyIsIdempotent(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{})
	p := s.writeConfig(t, "nftlimit.conf", fullConfig)
	s.Server.MustExec(t, s.bin, "apply", "-c", p)
	before := listTable(t, s.Server, "nftlimit")
	gen := s.Server.MustExec(t, "nft", "-a", "list", "ruleset")
	out := s.Server.MustExec(t, s.bin, "apply", "-c", p)
	if !strings.Contains(out, "up to date") {
		t.Errorf("second apply changed something:\n%s", out)
	}
	if _, _, code := s.run(t, s.Server, "diff", "-c", p); code != 0 {
		t.Errorf("diff after apply: exit %d, want 0", code)
	}
	if after := listTable(t, s.Server, "nftlimit"); after != before {
		t.Errorf("table changed by a no-op apply\n--- before\n%s\n--- after\n%s", before, after)
	}
	if got := s.Server.MustExec(t, "nft", "-a", "list", "ruleset"); got != gen {
		t.Error("rule handles changed by a no-op apply")
	}
}

// TestApplyKeepsState: changing the configuration replaces rules but keeps
// the sets, so connections held before the change still count.
func TestApplyKeepsState(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{})
	s.Server.ServeTCP(t, 22)
	s.Server.ServeTCP(t, 80)
	s.apply(t, s.Server, "[[limit]]\nname = \"ssh\"\nports = [22]\nmax_connections = 3\n")
	src := nstest.ClientV4(1, 1)
	held := s.Client.DialMany(t, 3, src, nstest.ServerV4, 22, dialTimeout)
	if n := nstest.Count(held, accepted); n != 3 {
		t.Fatalf("accepted %d of 3", n)
	}
	// A new limit, a new exemption for someone else and a different action:
	// the ssh chain's rules change, its sets stay.
	out := s.apply(t, s.Server, `
[[limit]]
name = "ssh"
ports = [22]
max_connections = 3
action = "drop"
exempt = ["203.0.113.9"]

[[limit]]
name = "http"
ports = [80]
max_connections = 1
`)
	if strings.Contains(out, "ssh_conn4") {
		t.Errorf("apply touched the ssh_conn4 set:\n%s", out)
	}
	if r := s.Client.DialTCP(t, src, nstest.ServerV4, 22, dialTimeout); r.Outcome != timedOut {
		t.Errorf("4th connection after the change: %v, want timed out (dropped): the held 3 were forgotten", r.Outcome)
	}
	diff, _, code := s.run(t, s.Server, "diff", "-c", filepath.Join(s.dir, "nftlimit.conf"))
	if code != 0 {
		t.Errorf("diff after apply: exit %d\n%s", code, diff)
	}
}

// TestDiffReportsChanges: diff lists what apply would change and exits 3,
// without changing anything.
func TestDiffReportsChanges(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{})
	p := s.writeConfig(t, "a.conf", "[[limit]]\nname = \"ssh\"\nports = [22]\nmax_connections = 3\n")
	out, _, code := s.run(t, s.Server, "diff", "-c", p)
	if code != 3 || !strings.Contains(out, "+ table inet nftlimit") {
		t.Errorf("diff before apply: exit %d, want 3\n%s", code, out)
	}
	if tables := s.Server.MustExec(t, "nft", "list", "tables"); strings.Contains(tables, "nftlimit") {
		t.Fatal("diff created the table")
	}
	s.Server.MustExec(t, s.bin, "apply", "-c", p)
	p2 := s.writeConfig(t, "b.conf", "[[limit]]\nname = \"ssh\"\nports = [22]\nmax_connections = 3\nmax_sources = 10\n")
	out, _, code = s.run(t, s.Server, "diff", "-c", p2)
	if code != 3 || !strings.Contains(out, "~ set ssh_conn4: size 65536 -> 10") {
		t.Errorf("diff after a size change: exit %d\n%s", code, out)
	}
}

// TestForeignTablesUntouched: other tables, of every family, are
// byte-identical after apply, a change, and remove.
func TestForeignTablesUntouched(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{})
	s.Server.Nft(t, `
table inet filter {
	set allowed { type ipv4_addr; flags interval; elements = { 10.0.0.0/8 }; }
	chain input { type filter hook input priority 0; policy accept; ip saddr @allowed counter accept; }
}
table ip nat {
	chain postrouting { type nat hook postrouting priority 100; masquerade; }
}
table inet nftlimit_other {
	chain c { tcp dport 22 counter; }
}
`)
	before := s.Server.MustExec(t, "nft", "list", "ruleset")
	p := s.writeConfig(t, "a.conf", fullConfig)
	s.Server.MustExec(t, s.bin, "apply", "-c", p)
	p2 := s.writeConfig(t, "b.conf", "[[limit]]\nname = \"ssh\"\nports = [22]\nmax_connections = 1\n")
	s.Server.MustExec(t, s.bin, "apply", "-c", p2)
	s.Server.MustExec(t, s.bin, "remove", "-c", p2)
	if after := s.Server.MustExec(t, "nft", "list", "ruleset"); after != before {
		t.Errorf("foreign tables changed\n--- before\n%s\n--- after\n%s", before, after)
	}
}

// TestRemove: remove deletes the table (and stops enforcement); a second
// remove says there is nothing to remove.
func TestRemove(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{})
	s.Server.ServeTCP(t, 22)
	p := s.writeConfig(t, "nftlimit.conf", "[[limit]]\nname = \"ssh\"\nports = [22]\nmax_connections = 1\n")
	s.Server.MustExec(t, s.bin, "apply", "-c", p)
	out := s.Server.MustExec(t, s.bin, "remove", "-c", p)
	if !strings.Contains(out, "deleted table inet nftlimit") {
		t.Errorf("remove: %s", out)
	}
	if tables := s.Server.MustExec(t, "nft", "list", "tables"); strings.Contains(tables, "nftlimit") {
		t.Errorf("table still there: %s", tables)
	}
	want(t, "after remove", tally(t, s.Client, 3, nstest.ClientV4(1, 1), nstest.ServerV4, 22), map[nstest.Outcome]int{accepted: 3})
	out = s.Server.MustExec(t, s.bin, "remove", "--table", "nftlimit")
	if !strings.Contains(out, "does not exist") {
		t.Errorf("second remove: %s", out)
	}
}

// TestBadConfigChangesNothing: check and apply report FILE:LINE:COL and exit
// 1; the kernel keeps what it enforced.
func TestBadConfigChangesNothing(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{})
	good := s.writeConfig(t, "good.conf", "[[limit]]\nname = \"ssh\"\nports = [22]\nmax_connections = 3\n")
	s.Server.MustExec(t, s.bin, "apply", "-c", good)
	before := listTable(t, s.Server, "nftlimit")
	bad := s.writeConfig(t, "bad.conf", "[[limit]]\nname = \"ssh\"\nports = [22, 70000]\nmax_connections = 3\n")
	for _, cmd := range []string{"check", "apply", "render", "diff"} {
		out, errOut, code := s.run(t, s.Server, cmd, "-c", bad)
		if code != 1 {
			t.Errorf("%s: exit %d, want 1\n%s%s", cmd, code, out, errOut)
		}
		if !strings.Contains(errOut, bad+":3:") {
			t.Errorf("%s: error does not name %s:3:COL:\n%s", cmd, bad, errOut)
		}
	}
	if after := listTable(t, s.Server, "nftlimit"); after != before {
		t.Errorf("a bad config changed the kernel\n--- before\n%s\n--- after\n%s", before, after)
	}
	out, _, code := s.run(t, s.Server, "check", "-c", good)
	if code != 0 || !strings.Contains(out, "configuration OK") {
		t.Errorf("check of a good file: exit %d: %s", code, out)
	}
}

// TestVersionProbesKernel: version lists the kernel features, all present.
func TestVersionProbesKernel(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{})
	out := s.Server.MustExec(t, s.bin, "version")
	for _, f := range []string{"connection limits", "rate limits", "reject", "verdict maps"} {
		if !strings.Contains(out, f) {
			t.Errorf("version does not report %q:\n%s", f, out)
		}
	}
	if strings.Contains(out, "MISSING") {
		t.Errorf("version reports a missing feature:\n%s", out)
	}
	if tables := s.Server.MustExec(t, "nft", "list", "tables"); tables != "" {
		t.Errorf("the probe left tables behind: %q", tables)
	}
}

// TestGoldenFilesMatchKernel: the golden renders of pkg/ruleset are what
// the kernel lists after applying their configurations.
func TestGoldenFilesMatchKernel(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{})
	confs, err := filepath.Glob("../pkg/ruleset/testdata/*.conf")
	if err != nil || len(confs) == 0 {
		t.Fatalf("no golden configs: %v", err)
	}
	for _, c := range confs {
		golden, err := os.ReadFile(strings.TrimSuffix(c, ".conf") + ".nft")
		if err != nil {
			t.Fatal(err)
		}
		abs, _ := filepath.Abs(c)
		s.Server.MustExec(t, s.bin, "apply", "-c", abs)
		name := strings.Fields(string(golden))[2]
		if listed := listTable(t, s.Server, name); normalize(listed) != normalize(string(golden)) {
			t.Errorf("%s: kernel listing differs from the golden file\n--- golden\n%s\n--- nft list\n%s", c, golden, listed)
		}
		s.Server.MustExec(t, s.bin, "remove", "-c", abs)
	}
}

// TestProbeCommand: `nftlimitd probe` from the client shows the limit: of 5
// parallel connections from one address, 3 are accepted and 2 refused.
func TestProbeCommand(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{})
	s.Server.ServeTCP(t, 22)
	s.apply(t, s.Server, "[[limit]]\nname = \"ssh\"\nports = [22]\nmax_connections = 3\n")
	out := s.Client.MustExec(t, s.bin, "probe", "192.0.2.1:22", "-n", "5", "--hold", "0s", "--source", nstest.ClientV4(1, 1).String())
	if !strings.Contains(out, "5 connections in") || !strings.Contains(out, ": 3 accepted, 2 refused, 0 unreachable, 0 timed out, 0 other errors") {
		t.Errorf("probe: %s", out)
	}
	if _, errOut, code := s.run(t, s.Client, "probe", "nohost"); code != 1 || !strings.Contains(errOut, "missing port") {
		t.Errorf("probe without a port: exit %d: %s", code, errOut)
	}
}
