package config

import (
	"errors"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// fakeFiles serves exempt files from memory.
type fakeFiles map[string]string

func (f fakeFiles) open(path string) (io.ReadCloser, error) {
	s, ok := f[path]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: path, Err: fs.ErrNotExist}
	}
	return io.NopCloser(strings.NewReader(s)), nil
}

// testParse parses a main file and snippets, with exempt files from memory.
func testParse(t *testing.T, main string, snippets []File, exempt fakeFiles, rates bool) (*Config, error) {
	t.Helper()
	files := append([]File{{Name: "nftlimit.conf", Data: []byte(main)}}, snippets...)
	return parse(files, options{open: exempt.open, rates: rates})
}

var cmpOpts = []cmp.Option{
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
}

// limit returns a limit with the built-in defaults, changed by fns.
func limit(name string, ports []PortRange, fns ...func(*Limit)) Limit {
	l := Limit{
		Name:           name,
		Protocol:       TCP,
		Hook:           Input,
		Ports:          ports,
		MaxConnections: 3,
		IPv4Prefix:     32,
		IPv6Prefix:     64,
		Action:         Reject,
		RejectWith:     TCPReset,
		MaxSources:     65536,
		WhenFull:       FullDeny,
	}
	for _, fn := range fns {
		fn(&l)
	}
	return l
}

func ports(rs ...uint16) []PortRange {
	var out []PortRange
	for i := 0; i < len(rs); i += 2 {
		out = append(out, PortRange{From: rs[i], To: rs[i+1]})
	}
	return out
}

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

var defaultTable = Table{Name: "nftlimit", Priority: -10, KeepOnExit: true}

func TestParseGood(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		main     string
		snippets []File
		exempt   fakeFiles
		table    *Table   // nil: the default
		metrics  *Metrics // nil: none
		limits   []Limit
		files    []string // nil: just the main file
	}{
		{
			name: "minimal",
			main: `
[[limit]]
name = "ssh"
ports = [22]
max_connections = 3
`,
			limits: []Limit{limit("ssh", ports(22, 22))},
		},
		{
			name: "udp answers with icmp-port-unreachable",
			main: `
[[limit]]
name = "dns"
protocol = "udp"
ports = [53]
max_connections = 3
`,
			limits: []Limit{limit("dns", ports(53, 53), func(l *Limit) {
				l.Protocol, l.RejectWith = UDP, ICMPPortUnreachable
			})},
		},
		{
			name: "drop and log have no reject_with",
			main: `
[[limit]]
name = "a"
ports = [1]
max_connections = 3
action = "drop"

[[limit]]
name = "b"
ports = [2]
max_connections = 3
action = "log"
log = true
`,
			limits: []Limit{
				limit("a", ports(1, 1), func(l *Limit) { l.Action, l.RejectWith = Drop, "" }),
				limit("b", ports(2, 2), func(l *Limit) { l.Action, l.RejectWith, l.Log = Log, "", true }),
			},
		},
		{
			name: "every key written out",
			main: `
[table]
name = "Fw_1-x"
priority = 0
keep_on_exit = false

[metrics]
listen = "127.0.0.1:9733"

[[limit]]
name = "web-2_x"
protocol = "tcp"
hook = "forward"
ports = [443]
max_connections = 2147483647
ipv4_prefix = 0
ipv6_prefix = 128
exempt = ["192.0.2.1"]
interfaces = ["eth1", "br-lan", "eth1"]
destinations = ["2001:db8::/64", "198.51.100.0/24", "198.51.100.0/24"]
action = "reject"
reject_with = "icmp-admin-prohibited"
log = true
max_sources = 16777216
when_full = "allow"
`,
			table:   &Table{Name: "Fw_1-x", Priority: 0, KeepOnExit: false},
			metrics: &Metrics{Listen: "127.0.0.1:9733"},
			limits: []Limit{limit("web-2_x", ports(443, 443), func(l *Limit) {
				l.Hook = Forward
				l.MaxConnections = 1<<31 - 1
				l.IPv4Prefix, l.IPv6Prefix = 0, 128
				l.Exempt = prefixes("192.0.2.1/32")
				l.Interfaces = []string{"br-lan", "eth1"}
				l.Destinations = prefixes("198.51.100.0/24", "2001:db8::/64")
				l.RejectWith = ICMPAdminProhibited
				l.Log = true
				l.MaxSources = 1 << 24
				l.WhenFull = FullAllow
			})},
		},
		{
			name: "defaults are inherited and overridden",
			main: `
[defaults]
action = "drop"
ipv4_prefix = 24
ipv6_prefix = 48
exempt = ["10.0.0.0/8"]
log = true
max_sources = 1000
when_full = "allow"
protocol = "udp"
hook = "forward"
interfaces = ["eth0"]

[[limit]]
name = "inherits"
ports = [1]
max_connections = 3

[[limit]]
name = "overrides"
ports = [2]
max_connections = 3
action = "reject"
ipv4_prefix = 32
ipv6_prefix = 64
exempt = ["192.0.2.1"]
log = false
max_sources = 10
when_full = "deny"
protocol = "tcp"
hook = "input"
interfaces = []
`,
			limits: []Limit{
				limit("inherits", ports(1, 1), func(l *Limit) {
					l.Action, l.RejectWith = Drop, ""
					l.IPv4Prefix, l.IPv6Prefix = 24, 48
					l.Exempt = prefixes("10.0.0.0/8")
					l.Log = true
					l.MaxSources = 1000
					l.WhenFull = FullAllow
					l.Protocol, l.Hook = UDP, Forward
					l.Interfaces = []string{"eth0"}
				}),
				limit("overrides", ports(2, 2), func(l *Limit) {
					l.Exempt = prefixes("192.0.2.1/32")
					l.MaxSources = 10
				}),
			},
		},
		{
			name: "reject_with from defaults",
			main: `
[defaults]
reject_with = "icmp-admin-prohibited"

[[limit]]
name = "tcp"
ports = [1]
max_connections = 3

[[limit]]
name = "udp"
protocol = "udp"
ports = [1]
max_connections = 3

[[limit]]
name = "drop"
ports = [1]
max_connections = 3
action = "drop"
`,
			limits: []Limit{
				limit("tcp", ports(1, 1), func(l *Limit) { l.RejectWith = ICMPAdminProhibited }),
				limit("udp", ports(1, 1), func(l *Limit) { l.Protocol, l.RejectWith = UDP, ICMPAdminProhibited }),
				limit("drop", ports(1, 1), func(l *Limit) { l.Action, l.RejectWith = Drop, "" }),
			},
		},
		{
			name: "ports are sorted and merged",
			main: `
[[limit]]
name = "p"
ports = [443, 80, "8000-8080", "8080-8090", 81, "22", 8091, 1, 65535, "1-1", 0x1bb, 1_000]
max_connections = 3
`,
			limits: []Limit{limit("p", ports(1, 1, 22, 22, 80, 81, 443, 443, 1000, 1000, 8000, 8091, 65535, 65535))},
		},
		{
			name: "exempt is masked, sorted and de-duplicated, with the file",
			main: `
[[limit]]
name = "e"
ports = [80]
max_connections = 3
exempt = ["2001:db8::/32", "10.0.0.1", "10.0.0.0/8", "::1", "10.0.0.1/32", "192.0.2.0/24", "10.0.0.0/16"]
exempt_file = "cdn.txt"
`,
			exempt: fakeFiles{"cdn.txt": `# CDN ranges
203.0.113.0/24
  10.0.0.0/8   # also inline

2001:db8:ffff::1
`},
			limits: []Limit{limit("e", ports(80, 80), func(l *Limit) {
				l.Exempt = prefixes(
					"10.0.0.0/8", "10.0.0.0/16", "10.0.0.1/32", "192.0.2.0/24", "203.0.113.0/24",
					"::1/128", "2001:db8::/32", "2001:db8:ffff::1/128",
				)
			})},
			files: []string{"nftlimit.conf", "cdn.txt"},
		},
		{
			name: "a limit's exempt replaces the defaults', and so does its exempt_file",
			main: `
[defaults]
exempt = ["192.0.2.1"]
exempt_file = "default.txt"

[[limit]]
name = "both"
ports = [1]
max_connections = 3

[[limit]]
name = "own-exempt"
ports = [1]
max_connections = 3
exempt = ["192.0.2.2"]

[[limit]]
name = "own-file"
ports = [1]
max_connections = 3
exempt_file = "own.txt"

[[limit]]
name = "none"
ports = [1]
max_connections = 3
exempt = []
exempt_file = "empty.txt"
`,
			exempt: fakeFiles{"default.txt": "198.51.100.1\n", "own.txt": "198.51.100.2\n", "empty.txt": "# nothing\n"},
			limits: []Limit{
				limit("both", ports(1, 1), func(l *Limit) { l.Exempt = prefixes("192.0.2.1/32", "198.51.100.1/32") }),
				limit("own-exempt", ports(1, 1), func(l *Limit) { l.Exempt = prefixes("192.0.2.2/32", "198.51.100.1/32") }),
				limit("own-file", ports(1, 1), func(l *Limit) { l.Exempt = prefixes("192.0.2.1/32", "198.51.100.2/32") }),
				limit("none", ports(1, 1)),
			},
			files: []string{"nftlimit.conf", "default.txt", "own.txt", "empty.txt"},
		},
		{
			name: "snippets inherit the main file's defaults",
			main: `
[defaults]
action = "drop"

[[limit]]
name = "main"
ports = [1]
max_connections = 3
`,
			snippets: []File{
				{Name: "nftlimit.d/a.conf", Data: []byte(`
[[limit]]
name = "a"
ports = [2]
max_connections = 4
exempt_file = "list.txt"
`)},
				{Name: "nftlimit.d/b.conf", Data: []byte("# empty\n")},
			},
			exempt: fakeFiles{"nftlimit.d/list.txt": "192.0.2.0/24\n"},
			limits: []Limit{
				limit("main", ports(1, 1), func(l *Limit) { l.Action, l.RejectWith = Drop, "" }),
				limit("a", ports(2, 2), func(l *Limit) {
					l.Action, l.RejectWith = Drop, ""
					l.MaxConnections = 4
					l.Exempt = prefixes("192.0.2.0/24")
				}),
			},
			files: []string{"nftlimit.conf", "nftlimit.d/a.conf", "nftlimit.d/b.conf", "nftlimit.d/list.txt"},
		},
		{
			name: "TOML forms: dotted, quoted and inline",
			main: `
table.name = "dotted"
metrics = { listen = ":9733" }

[[limit]]
"name" = 'lit'
ports = [
  22,  # ssh
  "2222-2223",
]
max_connections = 3
`,
			table:   &Table{Name: "dotted", Priority: -10, KeepOnExit: true},
			metrics: &Metrics{Listen: ":9733"},
			limits:  []Limit{limit("lit", ports(22, 22, 2222, 2223))},
		},
		{
			name: "empty file",
			main: "",
		},
		{
			name:   "byte order mark and CRLF",
			main:   "\uFEFF[[limit]]\r\nname = \"ssh\"\r\nports = [22]\r\nmax_connections = 3\r\n",
			limits: []Limit{limit("ssh", ports(22, 22))},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := testParse(t, tt.main, tt.snippets, tt.exempt, false)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if len(cfg.Warnings) > 0 {
				t.Errorf("warnings: %v", cfg.Warnings)
			}
			table := defaultTable
			if tt.table != nil {
				table = *tt.table
			}
			if diff := cmp.Diff(table, cfg.Table); diff != "" {
				t.Errorf("table (-want +got):\n%s", diff)
			}
			var metrics Metrics
			if tt.metrics != nil {
				metrics = *tt.metrics
			}
			if diff := cmp.Diff(metrics, cfg.Metrics); diff != "" {
				t.Errorf("metrics (-want +got):\n%s", diff)
			}
			opts := append(cmpOpts, cmpopts.IgnoreFields(Limit{}, "Pos"))
			if diff := cmp.Diff(tt.limits, cfg.Limits, opts...); diff != "" {
				t.Errorf("limits (-want +got):\n%s", diff)
			}
			files := tt.files
			if files == nil {
				files = []string{"nftlimit.conf"}
				for _, s := range tt.snippets {
					files = append(files, s.Name)
				}
			}
			if diff := cmp.Diff(files, cfg.Files); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLimitPos(t *testing.T) {
	t.Parallel()
	cfg, err := testParse(t, `# comment
[[limit]]
name = "a"
ports = [1]
max_connections = 3

  [[ limit ]]  # indented
name = "b"
ports = [1]
max_connections = 3
`, []File{{Name: "s.conf", Data: []byte("\n\n[[limit]]\nname = \"c\"\nports = [1]\nmax_connections = 3\n")}}, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	want := []Position{{"nftlimit.conf", 2, 1}, {"nftlimit.conf", 7, 3}, {"s.conf", 3, 1}}
	var got []Position
	for _, l := range cfg.Limits {
		got = append(got, l.Pos)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("positions (-want +got):\n%s", diff)
	}
	if l, ok := cfg.Limit("b"); !ok || l.Name != "b" {
		t.Errorf(`Limit("b") = %v, %v`, l, ok)
	}
	if _, ok := cfg.Limit("nope"); ok {
		t.Error(`Limit("nope") found a limit`)
	}
}

func TestParseBad(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		main     string
		snippets []File
		exempt   fakeFiles
		want     []string
	}{
		{
			name: "syntax error",
			main: "[[limit]]\nname = \"ssh\nports = [22]\n",
			want: []string{"nftlimit.conf:2:12: basic strings cannot have new lines"},
		},
		{
			name: "unquoted string",
			main: "[[limit]]\nban = 10m\n",
			want: []string{"nftlimit.conf:2:9: strings must be quoted"},
		},
		{
			name: "unknown keys and tables",
			main: `foo = 1
[table]
nmae = "x"
[tabel]
[[limits]]
[defaults]
ports = [1]
[[limit]]
name = "x"
ports = [1]
max_conection = 3
`,
			want: []string{
				`nftlimit.conf:1:1: unknown key "foo" at top level`,
				`nftlimit.conf:3:1: unknown key "nmae" in [table] (did you mean "name"?)`,
				`nftlimit.conf:4:1: unknown table [tabel] (did you mean "table"?)`,
				`nftlimit.conf:5:1: unknown table [[limits]] (did you mean "limit"?)`,
				`nftlimit.conf:7:1: defaults: ports can only be set in a [[limit]]`,
				`nftlimit.conf:8:1: limit "x": set max_connections, rate or both`,
				`nftlimit.conf:11:1: unknown key "max_conection" in [[limit]] (did you mean "max_connections"?)`,
			},
		},
		{
			name: "sub-tables are unknown keys",
			main: `[[limit]]
name = "x"
ports = [1]
max_connections = 1
exempt.file = "x"
[limit.extra]
[metrics.x]
`,
			want: []string{
				`nftlimit.conf:5:1: limit "x": exempt: want an array, got table`,
				`nftlimit.conf:6:1: unknown key "extra" in [[limit]]`,
				`nftlimit.conf:7:1: unknown key "x" in [metrics]`,
			},
		},
		{
			name: "wrong types",
			main: `[table]
name = 1
keep_on_exit = "yes"
priority = 1.5
[metrics]
listen = 9733
[[limit]]
name = "x"
ports = "22"
max_connections = "3"
log = 1
exempt = "10.0.0.1"
interfaces = ["eth0", 1]
protocol = 2021-01-01
`,
			want: []string{
				`nftlimit.conf:2:8: table: name: want a string, got integer`,
				`nftlimit.conf:3:16: table: keep_on_exit: want a boolean, got string`,
				`nftlimit.conf:4:12: table: priority: want an integer, got float`,
				`nftlimit.conf:6:10: metrics: listen: want a string, got integer`,
				`nftlimit.conf:9:9: limit "x": ports: want an array, got string`,
				`nftlimit.conf:10:19: limit "x": max_connections: want an integer, got string`,
				`nftlimit.conf:11:7: limit "x": log: want a boolean, got integer`,
				`nftlimit.conf:12:10: limit "x": exempt: want an array, got string`,
				`nftlimit.conf:13:23: limit "x": interfaces: want a string, got integer`,
				`nftlimit.conf:14:12: limit "x": protocol: want a string, got date or time`,
			},
		},
		{
			name: "sections of the wrong shape",
			main: `table = "x"
metrics = {listen = ":1", listen = ":2"}
[[defaults]]
[limit]
`,
			snippets: []File{{Name: "s.conf", Data: []byte(`limit = [{name = "x"}]`)}},
			want: []string{
				`nftlimit.conf:1:9: table: want a table, got string`,
				`nftlimit.conf:2:27: duplicate key "listen" in [metrics]: first defined at nftlimit.conf:2:12`,
				`nftlimit.conf:3:1: [[defaults]] must be written [defaults]: there is only one`,
				`nftlimit.conf:4:1: [limit] must be written [[limit]]: each limit is one table of an array`,
				`s.conf:1:9: limit: want [[limit]] tables, got array`,
			},
		},
		{
			name: "ports",
			main: `[[limit]]
name = "ssh"
max_connections = 3
ports = [0, 70000, "90-80", "0-10", "http", -1, true, "22-"]
[[limit]]
name = "empty"
max_connections = 3
ports = []
[[limit]]
name = "none"
max_connections = 3
`,
			want: []string{
				`nftlimit.conf:4:10: limit "ssh": ports: port 0 is out of range 1-65535`,
				`nftlimit.conf:4:13: limit "ssh": ports: port 70000 is out of range 1-65535`,
				`nftlimit.conf:4:20: limit "ssh": ports: range "90-80" is backwards: 90 is greater than 80`,
				`nftlimit.conf:4:29: limit "ssh": ports: range "0-10": port 0 is out of range 1-65535`,
				`nftlimit.conf:4:37: limit "ssh": ports: "http" is not a port or a "from-to" range`,
				`nftlimit.conf:4:45: limit "ssh": ports: port -1 is out of range 1-65535`,
				`nftlimit.conf:4:49: limit "ssh": ports: want a port number or a "from-to" range string, got boolean`,
				`nftlimit.conf:4:55: limit "ssh": ports: "22-" is not a port or a "from-to" range`,
				`nftlimit.conf:8:9: limit "empty": ports: must list at least one port`,
				`nftlimit.conf:9:1: limit "none": ports is required`,
			},
		},
		{
			name: "addresses",
			main: `[[limit]]
name = "x"
ports = [1]
max_connections = 3
exempt = ["10.0.0.300", "10.0.0.1/8", "2001:db8::1/32", "fe80::1%eth0", "10.0.0.0/33", ""]
destinations = ["example.com"]
`,
			want: []string{
				`nftlimit.conf:5:11: limit "x": exempt: "10.0.0.300" is not an IP address or CIDR: IPv4 field has value >255`,
				`nftlimit.conf:5:25: limit "x": exempt: "10.0.0.1/8" has host bits set: did you mean "10.0.0.0/8"?`,
				`nftlimit.conf:5:39: limit "x": exempt: "2001:db8::1/32" has host bits set: did you mean "2001:db8::/32"?`,
				`nftlimit.conf:5:57: limit "x": exempt: "fe80::1%eth0": addresses with a zone are not allowed`,
				`nftlimit.conf:5:73: limit "x": exempt: "10.0.0.0/33" is not an IP address or CIDR: prefix length out of range`,
				`nftlimit.conf:5:88: limit "x": exempt: "" is not an IP address or CIDR: unable to parse IP`,
				`nftlimit.conf:6:17: limit "x": destinations: "example.com" is not an IP address or CIDR: unexpected character (at "example.com")`,
			},
		},
		{
			name: "names",
			main: `[[limit]]
name = "SSH"
ports = [1]
max_connections = 3
[[limit]]
name = "1ssh"
ports = [1]
max_connections = 3
[[limit]]
name = "-ssh"
ports = [1]
max_connections = 3
[[limit]]
name = "abcdefghijklmnopqrstuvwxy"
ports = [1]
max_connections = 3
[[limit]]
name = ""
ports = [1]
max_connections = 3
[[limit]]
ports = [1]
max_connections = 3
[[limit]]
name = "ok"
ports = [1]
max_connections = 3
[[limit]]
ports = [1]
max_connections = 3
name = "ok"
`,
			want: []string{
				`nftlimit.conf:2:8: limit "SSH": name: "SSH" must be 1 to 24 characters of a-z, 0-9, '_' and '-', starting with a letter`,
				`nftlimit.conf:6:8: limit "1ssh": name: "1ssh" must start with a letter a-z: nft cannot parse set names that start with a digit or '-'`,
				`nftlimit.conf:10:8: limit "-ssh": name: "-ssh" must start with a letter a-z: nft cannot parse set names that start with a digit or '-'`,
				`nftlimit.conf:14:8: limit "abcdefghijklmnopqrstuvwxy": name: "abcdefghijklmnopqrstuvwxy" must be 1 to 24 characters of a-z, 0-9, '_' and '-', starting with a letter`,
				`nftlimit.conf:18:8: limit "": name: "" must be 1 to 24 characters of a-z, 0-9, '_' and '-', starting with a letter`,
				`nftlimit.conf:21:1: [[limit]]: name is required`,
				`nftlimit.conf:31:8: limit "ok": name: "ok" is already the name of the limit at nftlimit.conf:24:1`,
			},
		},
		{
			name: "duplicate name in a snippet",
			main: `[[limit]]
name = "ssh"
ports = [22]
max_connections = 3
`,
			snippets: []File{{Name: "nftlimit.d/10-ssh.conf", Data: []byte(`
[[limit]]
name = "ssh"
ports = [2222]
max_connections = 3
`)}},
			want: []string{
				`nftlimit.d/10-ssh.conf:3:8: limit "ssh": name: "ssh" is already the name of the limit at nftlimit.conf:1:1`,
			},
		},
		{
			name: "neither max_connections nor rate",
			main: `
[[limit]]
name = "ssh"
ports = [22]
`,
			want: []string{`nftlimit.conf:2:1: limit "ssh": set max_connections, rate or both`},
		},
		{
			name: "numbers out of range",
			main: `[table]
priority = -1001
[defaults]
ipv4_prefix = 33
ipv6_prefix = -1
max_sources = 16777217
[[limit]]
name = "x"
ports = [1]
max_connections = 0
[[limit]]
name = "y"
ports = [1]
max_connections = 2147483648
max_sources = 0
[[limit]]
name = "z"
ports = [1]
max_connections = 9223372036854775808
`,
			want: []string{
				`nftlimit.conf:2:12: table: priority: -1001 is out of range -1000..1000`,
				`nftlimit.conf:4:15: defaults: ipv4_prefix: 33 is out of range 0-32`,
				`nftlimit.conf:5:15: defaults: ipv6_prefix: -1 is out of range 0-128`,
				`nftlimit.conf:6:15: defaults: max_sources: 16777217 is out of range 1-16777216`,
				`nftlimit.conf:10:19: limit "x": max_connections: 0 is out of range 1-2147483647`,
				`nftlimit.conf:14:19: limit "y": max_connections: 2147483648 is out of range 1-2147483647`,
				`nftlimit.conf:15:15: limit "y": max_sources: 0 is out of range 1-16777216`,
				`nftlimit.conf:19:19: max_connections: integer 9223372036854775808 is out of range`,
			},
		},
		{
			name: "words that are not one of the choices",
			main: `[table]
name = "1table"
[metrics]
listen = "localhost"
[defaults]
action = "deny"
[[limit]]
name = "x"
ports = [1]
max_connections = 3
protocol = "sctp"
hook = "output"
when_full = "block"
reject_with = "icmp-host-unreachable"
interfaces = ["", "eth/0", "a-very-long-interface", "eth 0"]
`,
			want: []string{
				`nftlimit.conf:2:8: table: name: "1table" must be 1 to 32 characters of a-z, A-Z, 0-9, '_' and '-', starting with a letter`,
				`nftlimit.conf:4:10: metrics: listen: "localhost" is not host:port: missing port in address`,
				`nftlimit.conf:6:10: defaults: action: "deny" is not one of reject, drop, log`,
				`nftlimit.conf:11:12: limit "x": protocol: "sctp" is not one of tcp, udp`,
				`nftlimit.conf:12:8: limit "x": hook: "output" is not one of input, forward`,
				`nftlimit.conf:13:13: limit "x": when_full: "block" is not one of deny, allow`,
				`nftlimit.conf:14:15: limit "x": reject_with: "icmp-host-unreachable" is not one of tcp-reset, icmp-port-unreachable, icmp-admin-prohibited`,
				`nftlimit.conf:15:15: limit "x": interfaces: "" is not an interface name: it is empty`,
				`nftlimit.conf:15:19: limit "x": interfaces: "eth/0" is not an interface name: it contains '/'`,
				`nftlimit.conf:15:28: limit "x": interfaces: "a-very-long-interface" is not an interface name: it is longer than 15 bytes`,
				`nftlimit.conf:15:53: limit "x": interfaces: "eth 0" is not an interface name: it contains ' '`,
			},
		},
		{
			name: "metrics port",
			main: `[metrics]
listen = "127.0.0.1:http"
`,
			want: []string{`nftlimit.conf:2:10: metrics: listen: port "http" must be a number from 1 to 65535`},
		},
		{
			name: "reject_with",
			main: `[[limit]]
name = "dns"
protocol = "udp"
ports = [53]
max_connections = 3
reject_with = "tcp-reset"
[[limit]]
name = "web"
ports = [80]
max_connections = 3
action = "drop"
reject_with = "tcp-reset"
`,
			want: []string{
				`nftlimit.conf:6:15: limit "dns": reject_with: "tcp-reset" cannot answer udp: use "icmp-port-unreachable" or "icmp-admin-prohibited"`,
				`nftlimit.conf:12:15: limit "web": reject_with: only applies to action "reject", not "drop"`,
			},
		},
		{
			name: "tcp-reset from defaults on udp",
			main: `[defaults]
reject_with = "tcp-reset"
[[limit]]
name = "dns"
protocol = "udp"
ports = [53]
max_connections = 3
`,
			want: []string{
				`nftlimit.conf:3:1: limit "dns": reject_with "tcp-reset" from [defaults] at nftlimit.conf:2:15 cannot answer udp: set reject_with in this limit`,
			},
		},
		{
			name: "bad exempt_file lines",
			main: `[[limit]]
name = "x"
ports = [1]
max_connections = 3
exempt_file = "lists/cdn.txt"
`,
			exempt: fakeFiles{"lists/cdn.txt": "# ok\n192.0.2.0/24\n\n  10.1.2.3/8  # typo\n\t300.1.1.1\n192.0.2.1 192.0.2.2\n"},
			want: []string{
				`lists/cdn.txt:4:3: "10.1.2.3/8" has host bits set: did you mean "10.0.0.0/8"?`,
				`lists/cdn.txt:5:2: "300.1.1.1" is not an IP address or CIDR: IPv4 field has value >255`,
				`lists/cdn.txt:6:1: want one address or CIDR a line, got "192.0.2.1 192.0.2.2"`,
			},
		},
		{
			name: "missing exempt_file",
			main: `[defaults]
exempt_file = "missing.txt"
[[limit]]
name = "x"
ports = [1]
max_connections = 3
[[limit]]
name = "y"
ports = [1]
max_connections = 3
exempt_file = "/etc/gone.txt"
`,
			want: []string{
				`nftlimit.conf:2:15: defaults: exempt_file: open missing.txt: file does not exist`,
				`nftlimit.conf:11:15: limit "y": exempt_file: open /etc/gone.txt: file does not exist`,
			},
		},
		{
			name: "snippets may hold only limits",
			main: "",
			snippets: []File{{Name: "nftlimit.d/bad.conf", Data: []byte(`[table]
name = "other"
[defaults]
[metrics]
listen = ":1"
`)}},
			want: []string{
				`nftlimit.d/bad.conf:1:1: [table] is only allowed in the main file: a snippet may contain only [[limit]] tables`,
				`nftlimit.d/bad.conf:3:1: [defaults] is only allowed in the main file: a snippet may contain only [[limit]] tables`,
				`nftlimit.d/bad.conf:4:1: [metrics] is only allowed in the main file: a snippet may contain only [[limit]] tables`,
			},
		},
		{
			name: "duplicate keys and tables",
			main: `[table]
name = "a"
name = "b"
[table]
[[limit]]
name = "x"
ports = [1]
max_connections = 3
ports.x = 1
[defaults.a]
[defaults]
[defaults]
`,
			want: []string{
				`nftlimit.conf:3:1: duplicate key "name" in [table]: first defined at nftlimit.conf:2:1`,
				`nftlimit.conf:4:1: table [table] is already defined at nftlimit.conf:1:1`,
				`nftlimit.conf:9:1: [[limit]]: cannot add to key "ports" with a dotted key: it is defined as a value at nftlimit.conf:7:1`,
				`nftlimit.conf:10:1: unknown key "a" in [defaults]`,
				`nftlimit.conf:12:1: table [defaults] is already defined at nftlimit.conf:11:1`,
			},
		},
		{
			name: "rate, burst and ban are not enforced yet",
			main: `[[limit]]
name = "r"
ports = [80]
rate = "10/100s"
burst = 20
ban = "10m"
`,
			want: []string{
				`nftlimit.conf:4:8: limit "r": rate: rate limits are not supported by this version yet`,
				`nftlimit.conf:5:9: limit "r": burst: rate limits are not supported by this version yet`,
				`nftlimit.conf:6:7: limit "r": ban: bans are not supported by this version yet`,
			},
		},
		{
			name: "bad rate, burst and ban",
			main: `[[limit]]
name = "a"
ports = [80]
max_connections = 3
burst = 5
ban = "1m"
[[limit]]
name = "b"
ports = [80]
rate = "10"
[[limit]]
name = "c"
ports = [80]
rate = "0/1s"
burst = 0
ban = "forever"
[[limit]]
name = "d"
ports = [80]
rate = "1/fortnight"
ban = "-1s"
[[limit]]
name = "e"
ports = [80]
rate = "1/0s"
[[limit]]
name = "f"
ports = [80]
rate = "1/1000000h"
`,
			want: []string{
				`nftlimit.conf:5:9: limit "a": burst: only applies with a rate`,
				`nftlimit.conf:6:7: limit "a": ban: only applies with a rate`,
				`nftlimit.conf:10:8: limit "b": rate: "10": "10" is not N/DURATION (like "10/100s") or N/UNIT (second, minute, hour, day or week)`,
				`nftlimit.conf:14:8: limit "c": rate: "0/1s": "0/1s": the count "0" is not a whole number from 1 to 4294967295`,
				`nftlimit.conf:15:9: limit "c": burst: 0 is out of range 1-4294967295`,
				`nftlimit.conf:16:7: limit "c": ban: "forever" is not a duration like 90s, 10m or 1h30m`,
				`nftlimit.conf:20:8: limit "d": rate: "1/fortnight": "1/fortnight": "fortnight" is neither a duration (like 100s or 1m30s) nor second, minute, hour, day or week`,
				`nftlimit.conf:21:7: limit "d": ban: "-1s" must be longer than 0`,
				`nftlimit.conf:25:8: limit "e": rate: "1/0s": "1/0s": the window must be longer than 0`,
				`nftlimit.conf:29:8: limit "f": rate: "1/1000000h": the rate is lower than 1/week`,
			},
		},
		{
			name: "errors of every file are reported together",
			main: `[table]
priority = 5000
[[limit]]
name = "a"
ports = [0]
max_connections = 3
exempt_file = "list.txt"
`,
			snippets: []File{
				{Name: "nftlimit.d/a.conf", Data: []byte("[[limit]]\nname = \"b\"\nports = [1]\nmax_connections = 3\nprotocol = \"icmp\"\n")},
				{Name: "nftlimit.d/b.conf", Data: []byte("[[limit]\n")},
				{Name: "nftlimit.d/c.conf", Data: []byte("[[limit]]\nname = \"a\"\nports = [1]\nmax_connections = 3\n")},
			},
			exempt: fakeFiles{"list.txt": "bogus\n"},
			want: []string{
				`nftlimit.conf:2:12: table: priority: 5000 is out of range -1000..1000`,
				`nftlimit.conf:5:10: limit "a": ports: port 0 is out of range 1-65535`,
				`nftlimit.d/a.conf:5:12: limit "b": protocol: "icmp" is not one of tcp, udp`,
				`nftlimit.d/b.conf:1:8: expected ']]' to close array table name`,
				`nftlimit.d/c.conf:2:8: limit "a": name: "a" is already the name of the limit at nftlimit.conf:3:1`,
				`list.txt:1:1: "bogus" is not an IP address or CIDR: unable to parse IP`,
			},
		},
		{
			name: "positions count characters, not bytes",
			main: "# héhé\n[[limit]]\nname = \"é\"  # ünïcode\nports = [\"ä\"]\nmax_connections = 3\n",
			want: []string{
				`nftlimit.conf:3:8: limit "é": name: "é" must be 1 to 24 characters of a-z, 0-9, '_' and '-', starting with a letter`,
				`nftlimit.conf:4:10: limit "é": ports: "ä" is not a port or a "from-to" range`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := testParse(t, tt.main, tt.snippets, tt.exempt, false)
			if cfg != nil {
				t.Errorf("got a config with errors: %+v", cfg)
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error %v (%T) is not an ErrorList", err, err)
			}
			var got []string
			for _, e := range list {
				got = append(got, e.Error())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
			if err.Error() != strings.Join(got, "\n") {
				t.Errorf("Error() = %q, want the lines joined", err.Error())
			}
		})
	}
}

func TestTooManyExemptFileErrors(t *testing.T) {
	t.Parallel()
	var errs ErrorList
	readExemptFile("big.txt", strings.NewReader(strings.Repeat("x\n", 100)), &errs)
	if len(errs) != maxFileErrors+1 {
		t.Fatalf("got %d errors, want %d", len(errs), maxFileErrors+1)
	}
	want := "big.txt:21:1: too many errors in this exempt file, stopped after 20"
	if got := errs[len(errs)-1].Error(); got != want {
		t.Errorf("last error = %q, want %q", got, want)
	}
}

// TestParseReference parses the example configuration shipped with
// nftlimitd, so that it can never drift from the code.
func TestParseReference(t *testing.T) {
	t.Parallel()
	cfg, err := Load("../../nftlimit.conf")
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if len(cfg.Warnings) > 0 {
		t.Errorf("warnings: %v", cfg.Warnings)
	}
	want := []Limit{
		limit("ssh", ports(22, 22)),
		limit("http", ports(80, 80, 443, 443, 8000, 8080), func(l *Limit) {
			l.MaxConnections = 20
			l.IPv4Prefix = 24
			l.Exempt = prefixes("198.51.100.7/32", "2001:db8:1::/48")
		}),
		limit("http-rate", ports(80, 80), func(l *Limit) {
			l.MaxConnections = 0
			l.Interfaces = []string{"eth0"}
			l.Rate = &Rate{Count: 6, Unit: time.Minute, Burst: 10}
			l.Action, l.RejectWith = Drop, ""
			l.Ban = 10 * time.Minute
			l.BanEscalate = []time.Duration{10 * time.Minute}
			l.BanWindow = 24 * time.Hour
			l.Exempt = prefixes("198.51.100.7/32")
		}),
	}
	opts := append(cmpOpts, cmpopts.IgnoreFields(Limit{}, "Pos"))
	if diff := cmp.Diff(want, cfg.Limits, opts...); diff != "" {
		t.Errorf("limits (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(defaultTable, cfg.Table); diff != "" {
		t.Errorf("table (-want +got):\n%s", diff)
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, data string) {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("nftlimit.conf", "[defaults]\nexempt_file = \"trusted.txt\"\n[[limit]]\nname = \"main\"\nports = [1]\nmax_connections = 1\n")
	write("trusted.txt", "192.0.2.1\n")
	write("nftlimit.d/20-b.conf", "[[limit]]\nname = \"b\"\nports = [2]\nmax_connections = 2\n")
	write("nftlimit.d/10-a.conf", "[[limit]]\nname = \"a\"\nports = [3]\nmax_connections = 3\nexempt_file = \"a.txt\"\n")
	write("nftlimit.d/a.txt", "192.0.2.2\n")
	write("nftlimit.d/README", "not a snippet")
	write("nftlimit.d/old.conf.bak", "not a snippet")
	if err := os.Mkdir(filepath.Join(dir, "nftlimit.d", "dir.conf"), 0o755); err != nil {
		t.Fatal(err)
	}

	main := filepath.Join(dir, "nftlimit.conf")
	cfg, err := Load(main)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	var names []string
	for _, l := range cfg.Limits {
		names = append(names, l.Name)
	}
	if diff := cmp.Diff([]string{"main", "a", "b"}, names); diff != "" {
		t.Errorf("limits (-want +got):\n%s", diff)
	}
	wantFiles := []string{
		main,
		filepath.Join(dir, "nftlimit.d", "10-a.conf"),
		filepath.Join(dir, "nftlimit.d", "20-b.conf"),
		filepath.Join(dir, "trusted.txt"),
		filepath.Join(dir, "nftlimit.d", "a.txt"),
	}
	if diff := cmp.Diff(wantFiles, cfg.Files); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	a, _ := cfg.Limit("a")
	// a's exempt_file replaces the one of [defaults].
	if diff := cmp.Diff(prefixes("192.0.2.2/32"), a.Exempt, cmpOpts...); diff != "" {
		t.Errorf("exempt of a (-want +got):\n%s", diff)
	}

	// A missing snippet directory is fine.
	write("alone/nftlimit.conf", "")
	if _, err := Load(filepath.Join(dir, "alone", "nftlimit.conf")); err != nil {
		t.Errorf("load without nftlimit.d: %v", err)
	}

	// A missing main file is an I/O error, not a list of problems.
	_, err = Load(filepath.Join(dir, "missing.conf"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("load of a missing file: got %v, want a not-exist error", err)
	}

	// An exempt file must be a regular file.
	write("dev/nftlimit.conf", "[[limit]]\nname = \"x\"\nports = [1]\nmax_connections = 1\nexempt_file = \"/dev/null\"\n")
	_, err = Load(filepath.Join(dir, "dev", "nftlimit.conf"))
	if want := ":5:15: limit \"x\": exempt_file: /dev/null is not a regular file"; err == nil || !strings.HasSuffix(err.Error(), want) {
		t.Errorf("exempt_file = /dev/null: got %v, want ...%s", err, want)
	}
}
