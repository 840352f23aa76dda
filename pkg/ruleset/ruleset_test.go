package ruleset_test

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nftlimitd/nftlimitd/internal/config"
	"github.com/nftlimitd/nftlimitd/pkg/ruleset"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func desired(t *testing.T, path string) *ruleset.Table {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	tbl, err := ruleset.Desired(cfg)
	if err != nil {
		t.Fatalf("desired %s: %v", path, err)
	}
	return tbl
}

// TestGolden renders every testdata/*.conf and compares it with the .nft
// file beside it (go test -update rewrites them). The integration tests
// prove the same text is accepted by nft and matches the kernel's listing.
func TestGolden(t *testing.T) {
	confs, err := filepath.Glob("testdata/*.conf")
	if err != nil || len(confs) == 0 {
		t.Fatalf("no golden configs: %v", err)
	}
	for _, c := range confs {
		t.Run(filepath.Base(c), func(t *testing.T) {
			got := ruleset.Render(desired(t, c))
			golden := strings.TrimSuffix(c, ".conf") + ".nft"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("render of %s (-want +got):\n%s", c, diff)
			}
		})
	}
}

// TestDesiredIsDeterministic: the same configuration always gives the same
// table, so that a reload that changes nothing sends nothing.
func TestDesiredIsDeterministic(t *testing.T) {
	a := ruleset.Render(desired(t, "testdata/full.conf"))
	for i := 0; i < 20; i++ {
		if b := ruleset.Render(desired(t, "testdata/full.conf")); a != b {
			t.Fatal("two renders of the same configuration differ")
		}
	}
}

// TestDispatchSharesPorts: a port covered by two limits jumps to a chain
// that runs both, in configuration order; ranges are cut where coverage
// changes and merged where it does not.
func TestDispatchSharesPorts(t *testing.T) {
	tbl := desired(t, "testdata/full.conf")
	m := tbl.Set("input_tcp")
	if m == nil {
		t.Fatal("no input_tcp map")
	}
	got := ruleset.Elements(m)
	want := []string{
		"80 : jump lim_http",
		"443 : jump multi_http_https-extra",
		"8000-8080 : jump lim_http",
		"60000-65535 : jump lim_https-extra",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("input_tcp elements (-want +got):\n%s", diff)
	}
	multi := tbl.Chain("multi_http_https-extra")
	if multi == nil || len(multi.Rules) != 2 || !strings.HasPrefix(multi.Rules[0].Text(), "jump lim_http ") {
		t.Errorf("multi chain: %+v", multi)
	}
}

// TestExemptRangesMerged: overlapping and nested exempt prefixes become
// disjoint intervals, as an interval set requires.
func TestExemptRangesMerged(t *testing.T) {
	tbl := desired(t, "testdata/full.conf")
	s := tbl.Set("https-extra_exempt4")
	if s == nil {
		t.Fatal("no https-extra_exempt4 set (inherited from [defaults])")
	}
	want := []string{"10.0.0.0/8", "192.0.2.200"}
	if diff := cmp.Diff(want, ruleset.Elements(s)); diff != "" {
		t.Errorf("merged exempt ranges (-want +got):\n%s", diff)
	}
	h := tbl.Set("http_exempt4")
	if diff := cmp.Diff([]string{"198.51.100.7-198.51.100.8"}, ruleset.Elements(h)); diff != "" {
		t.Errorf("adjacent addresses (-want +got):\n%s", diff)
	}
}

func TestPriorityString(t *testing.T) {
	for p, want := range map[int]string{
		0: "filter", -10: "filter - 10", 10: "filter + 10", 11: "11", -300: "raw",
		-290: "raw + 10", -160: "mangle - 10", 60: "security + 10", -100: "-100", -311: "-311",
	} {
		if got := ruleset.PriorityString(p); got != want {
			t.Errorf("PriorityString(%d) = %q, want %q", p, got, want)
		}
	}
}

func TestAddrRangeString(t *testing.T) {
	for _, tc := range []struct{ from, to, want string }{
		{"10.0.0.1", "10.0.0.1", "10.0.0.1"},
		{"10.0.0.0", "10.255.255.255", "10.0.0.0/8"},
		{"10.0.0.1", "10.0.0.2", "10.0.0.1-10.0.0.2"},
		{"2001:db8::", "2001:db8::ffff:ffff:ffff:ffff", "2001:db8::/64"},
		{"0.0.0.0", "255.255.255.255", "0.0.0.0/0"},
	} {
		r := ruleset.AddrRange{From: netip.MustParseAddr(tc.from), To: netip.MustParseAddr(tc.to)}
		if got := r.String(); got != tc.want {
			t.Errorf("%s-%s: got %q, want %q", tc.from, tc.to, got, tc.want)
		}
	}
}
