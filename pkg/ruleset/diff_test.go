package ruleset_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/nftlimitd/nftlimitd/internal/config"
	"github.com/nftlimitd/nftlimitd/pkg/ruleset"
)

func parse(t *testing.T, text string) *ruleset.Table {
	t.Helper()
	cfg, err := config.Parse([]config.File{{Name: "test.conf", Data: []byte(text)}})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	tbl, err := ruleset.Desired(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tbl
}

// asRead returns t as netlinkx.Read sees it in the kernel: no elements, and
// rules known only by their comments.
func asRead(t *ruleset.Table) *ruleset.Table {
	out := &ruleset.Table{Name: t.Name, Counters: slices.Clone(t.Counters)}
	for _, s := range t.Sets {
		s.Addrs, s.Ports, s.Names, s.Limit = nil, nil, nil, ""
		out.Sets = append(out.Sets, s)
	}
	for _, c := range t.Chains {
		rc := ruleset.Chain{Name: c.Name, Hook: c.Hook, Priority: c.Priority}
		for _, r := range c.Rules {
			rc.Rules = append(rc.Rules, ruleset.Rule{Comment: r.Comment})
		}
		out.Chains = append(out.Chains, rc)
	}
	return out
}

const base = `
[[limit]]
name = "ssh"
ports = [22]
max_connections = 3

[[limit]]
name = "http"
ports = [80]
max_connections = 20
exempt = ["198.51.100.7"]
`

func TestDiff(t *testing.T) {
	for _, tc := range []struct {
		name string
		from string // "" = no table
		to   string
		// changes lists the plan's changes, one a line.
		changes []string
		flush   []string
		delSets []string
		refill  []string
	}{
		{
			name: "no table yet", to: "[[limit]]\nname = \"ssh\"\nports = [22]\nmax_connections = 3\n",
			changes: []string{"+ table inet nftlimit", "+ map input_tcp", "+ set ssh_conn4", "+ set ssh_conn6",
				"+ counter ssh_hits", "+ chain input", "+ chain lim_ssh", "+ chain act_ssh"},
		},
		{name: "nothing changed", from: base, to: base},
		{
			name: "max_sources grows: sets are declared again, in place",
			from: base, to: strings.Replace(base, "max_connections = 3", "max_connections = 3\nmax_sources = 100", 1),
			changes: []string{"~ set ssh_conn4: size 65536 -> 100", "~ set ssh_conn6: size 65536 -> 100"},
		},
		{
			name: "max_connections changes: rules only, sets kept",
			from: base, to: strings.Replace(base, "max_connections = 3", "max_connections = 5", 1),
			changes: []string{"~ chain lim_ssh: rules changed"},
			flush:   []string{"lim_ssh"},
		},
		{
			name: "exempt list changes: that set is refilled in place, its chain rebuilt",
			from: base, to: strings.Replace(base, `"198.51.100.7"`, `"198.51.100.7", "198.51.100.9"`, 1),
			changes: []string{"~ set http_exempt4: elements changed", "~ chain lim_http: rules changed"},
			flush:   []string{"lim_http"},
			delSets: []string{},
			refill:  []string{"http_exempt4"},
		},
		{
			name: "a limit goes away",
			from: base, to: "[[limit]]\nname = \"ssh\"\nports = [22]\nmax_connections = 3\n",
			changes: []string{"~ map input_tcp: elements changed", "- set http_exempt4", "- set http_conn4", "- set http_conn6",
				"- counter http_hits", "- chain lim_http", "- chain act_http", "~ chain input: rules changed"},
			flush:   []string{"lim_http", "act_http", "input"},
			delSets: []string{"http_exempt4", "http_conn4", "http_conn6"},
			refill:  []string{"input_tcp"},
		},
		{
			name: "priority changes: the base chain is replaced",
			from: base, to: "[table]\npriority = 5\n" + base,
			changes: []string{"~ chain input: hook input priority -10 -> hook input priority 5"},
			flush:   []string{"input"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := parse(t, tc.to)
			var have *ruleset.Table
			if tc.from != "" {
				have = asRead(parse(t, tc.from))
			}
			p := ruleset.Diff(want, have)
			var got []string
			for _, c := range p.Changes {
				got = append(got, c.String())
			}
			if !slices.Equal(got, tc.changes) {
				t.Errorf("changes:\n got %q\nwant %q", got, tc.changes)
			}
			if tc.flush != nil && !slices.Equal(p.FlushChains, tc.flush) {
				t.Errorf("flushed chains: got %q, want %q", p.FlushChains, tc.flush)
			}
			if tc.delSets != nil && !slices.Equal(p.DelSets, tc.delSets) && (len(p.DelSets) > 0 || len(tc.delSets) > 0) {
				t.Errorf("deleted sets: got %q, want %q", p.DelSets, tc.delSets)
			}
			var refilled []string
			for _, s := range p.RefillSets {
				refilled = append(refilled, s.Name)
			}
			if !slices.Equal(refilled, tc.refill) {
				t.Errorf("refilled sets: got %q, want %q", refilled, tc.refill)
			}
			// A set that is still wanted, with the same type and flags, is
			// never deleted: packets are looked up in it.
			for _, s := range p.DelSets {
				if want.Set(s) != nil {
					t.Errorf("plan deletes %s, a set that is still wanted", s)
				}
			}
			// Applying the plan converges: diff of want against itself is empty.
			if again := ruleset.Diff(want, asRead(want)); !again.Empty() {
				t.Errorf("diff of a table against itself: %s", again)
			}
		})
	}
}
