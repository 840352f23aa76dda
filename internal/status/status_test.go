package status

import (
	"net/netip"
	"testing"

	"github.com/nftlimitd/nftlimitd/internal/config"
)

func TestGroup(t *testing.T) {
	t.Parallel()
	l := &config.Limit{IPv4Prefix: 24, IPv6Prefix: 56}
	for addr, want := range map[string]string{
		"198.51.100.7":          "198.51.100.0/24",
		"::ffff:198.51.100.7":   "198.51.100.0/24",
		"2001:db8:1:2ff::9":     "2001:db8:1:200::/56",
		"2001:db8:1:2::1":       "2001:db8:1::/56",
		"203.0.113.255":         "203.0.113.0/24",
		"fe80::1":               "fe80::/56",
		"2001:db8:ffff:ffff::1": "2001:db8:ffff:ff00::/56",
	} {
		if got := Group(l, netip.MustParseAddr(addr)).String(); got != want {
			t.Errorf("Group(%s) = %s, want %s", addr, got, want)
		}
	}
}
