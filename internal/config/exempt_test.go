package config

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestSortPrefixes checks the integer sort against netip's own order.
func TestSortPrefixes(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	var ps []netip.Prefix
	for range 5000 {
		var p netip.Prefix
		switch r.IntN(4) {
		case 0:
			p = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(r.IntN(4)), 0, byte(r.IntN(3)), byte(r.IntN(3))}), r.IntN(33))
		case 1:
			var b [16]byte
			b[0], b[15] = byte(r.IntN(3)), byte(r.IntN(3))
			p = netip.PrefixFrom(netip.AddrFrom16(b), r.IntN(129))
		case 2:
			// IPv4-mapped IPv6 stays IPv6.
			p = netip.PrefixFrom(netip.AddrFrom16(netip.AddrFrom4([4]byte{10, 0, 0, byte(r.IntN(3))}).As16()), 96+r.IntN(33))
		default:
			p = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(r.IntN(256)), byte(r.IntN(256)), 1, 2}), 32)
		}
		ps = append(ps, p.Masked())
	}
	want := slices.Clone(ps)
	slices.SortFunc(want, netip.Prefix.Compare)
	want = slices.Compact(want)
	got := sortPrefixes(slices.Clone(ps))
	if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
		t.Errorf("sortPrefixes (-want +got):\n%s", diff)
	}
	// Already sorted: kept, duplicates removed.
	again := sortPrefixes(append(slices.Clone(got), got[len(got)-1]))
	if diff := cmp.Diff(got, again, cmpOpts...); diff != "" {
		t.Errorf("sortPrefixes of sorted (-want +got):\n%s", diff)
	}
}

func TestMergePrefixes(t *testing.T) {
	t.Parallel()
	a := prefixes("10.0.0.0/8", "192.0.2.1/32", "2001:db8::/32")
	b := prefixes("10.0.0.0/8", "10.0.0.0/16", "::1/128")
	want := prefixes("10.0.0.0/8", "10.0.0.0/16", "192.0.2.1/32", "::1/128", "2001:db8::/32")
	if diff := cmp.Diff(want, mergePrefixes(a, b), cmpOpts...); diff != "" {
		t.Errorf("merge (-want +got):\n%s", diff)
	}
	if got := mergePrefixes(nil, nil); got != nil {
		t.Errorf("merge of nothing = %v, want nil", got)
	}
	// A list merged with nothing is shared, but clipped.
	got := mergePrefixes(nil, a)
	if &got[0] != &a[0] || cap(got) != len(got) {
		t.Errorf("merge with nothing copied the list or did not clip it")
	}
}

func TestReadExemptFile(t *testing.T) {
	t.Parallel()
	in := "# header\r\n192.0.2.1\r\n\t 198.51.100.0/24 # inline comment\n\n  # indented comment\n2001:db8::/32\n192.0.2.1/32\n10.0.0.0/8" // no final newline
	var errs ErrorList
	got := readExemptFile("x.txt", strings.NewReader(in), &errs)
	if len(errs) > 0 {
		t.Fatalf("errors: %v", errs)
	}
	want := prefixes("10.0.0.0/8", "192.0.2.1/32", "198.51.100.0/24", "2001:db8::/32")
	if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
