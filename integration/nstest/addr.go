package nstest

import (
	"fmt"
	"net/netip"
)

// Client source groups. Group g (1 or 2) holds PerGroup addresses per family;
// see ClientV4 and ClientV6.
const (
	// Groups is the number of client source groups (numbered 1..Groups).
	Groups = 2
	// PerGroup is the number of addresses per group and family (numbered 1..PerGroup).
	PerGroup = 16
)

// Server addresses. Link A addresses live on the server's Link(0), link B
// addresses on its Link(1) (Options.SecondLink).
var (
	// ServerV4 is the server's first IPv4 address on link A (192.0.2.1, in 192.0.2.0/25).
	ServerV4 = netip.MustParseAddr("192.0.2.1")
	// ServerV4Alt is the server's second IPv4 address on link A (192.0.2.2), for destination scoping.
	ServerV4Alt = netip.MustParseAddr("192.0.2.2")
	// ServerV6 is the server's first IPv6 address on link A (2001:db8::1, in 2001:db8::/64).
	ServerV6 = netip.MustParseAddr("2001:db8::1")
	// ServerV6Alt is the server's second IPv6 address on link A (2001:db8::2).
	ServerV6Alt = netip.MustParseAddr("2001:db8::2")
	// ServerV4LinkB is the server's IPv4 address on link B (192.0.2.129, in 192.0.2.128/25).
	ServerV4LinkB = netip.MustParseAddr("192.0.2.129")
	// ServerV6LinkB is the server's IPv6 address on link B (2001:db8:0:b::1, in 2001:db8:0:b::/64).
	ServerV6LinkB = netip.MustParseAddr("2001:db8:0:b::1")

	// ServerNetV4 is the server's IPv4 subnet on link A.
	ServerNetV4 = netip.MustParsePrefix("192.0.2.0/25")
	// ServerNetV6 is the server's IPv6 subnet on link A.
	ServerNetV6 = netip.MustParsePrefix("2001:db8::/64")
	// ServerNetV4LinkB is the server's IPv4 subnet on link B.
	ServerNetV4LinkB = netip.MustParsePrefix("192.0.2.128/25")
	// ServerNetV6LinkB is the server's IPv6 subnet on link B.
	ServerNetV6LinkB = netip.MustParsePrefix("2001:db8:0:b::/64")
)

// clientNetsV4 are the client groups' IPv4 prefixes, group 1 first.
var clientNetsV4 = [Groups]netip.Prefix{
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
}

// clientNetsV6 are the client groups' IPv6 prefixes, group 1 first.
var clientNetsV6 = [Groups]netip.Prefix{
	netip.MustParsePrefix("2001:db8:1:1::/64"),
	netip.MustParsePrefix("2001:db8:1:2::/64"),
}

// ClientNetV4 returns the IPv4 prefix of client group g (1: 198.51.100.0/24,
// 2: 203.0.113.0/24). It panics if g is out of range.
func ClientNetV4(g int) netip.Prefix {
	checkGroup(g, 1)
	return clientNetsV4[g-1]
}

// ClientNetV6 returns the IPv6 prefix of client group g (1: 2001:db8:1:1::/64,
// 2: 2001:db8:1:2::/64). It panics if g is out of range.
func ClientNetV6(g int) netip.Prefix {
	checkGroup(g, 1)
	return clientNetsV6[g-1]
}

// ClientV4 returns the i-th IPv4 source address (1..PerGroup) of client group
// g (1..Groups): ClientV4(1, 5) is 198.51.100.5, ClientV4(2, 5) is 203.0.113.5.
// It panics if g or i is out of range.
func ClientV4(g, i int) netip.Addr {
	checkGroup(g, i)
	a := clientNetsV4[g-1].Addr().As4()
	a[3] = byte(i)
	return netip.AddrFrom4(a)
}

// ClientV6 returns the i-th IPv6 source address (1..PerGroup) of client group
// g (1..Groups): ClientV6(1, 5) is 2001:db8:1:1::5, ClientV6(2, 5) is
// 2001:db8:1:2::5. It panics if g or i is out of range.
func ClientV6(g, i int) netip.Addr {
	checkGroup(g, i)
	a := clientNetsV6[g-1].Addr().As16()
	a[15] = byte(i)
	return netip.AddrFrom16(a)
}

func checkGroup(g, i int) {
	if g < 1 || g > Groups || i < 1 || i > PerGroup {
		panic(fmt.Sprintf("nstest: client address (group %d, index %d) out of range (group 1..%d, index 1..%d)", g, i, Groups, PerGroup))
	}
}

// Transit addresses. Every veth pair ("segment") n has 198.18.n.0/24 and
// 2001:db8:ff0n::/64; the end towards the client has host part 1, the end
// towards the server host part 2. Routes use these as next hops.
const (
	segClientA = 1 // client <-> (router or server), link A
	segClientB = 2 // client <-> (router or server), link B
	segServerA = 3 // router <-> server, link A
	segServerB = 4 // router <-> server, link B
)

// Ends of a segment.
const (
	clientEnd = 1
	serverEnd = 2
)

// transitV4 returns the transit IPv4 address of one end of segment n, with its /24.
func transitV4(n, end int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(n), byte(end)}), 24)
}

// transitV6 returns the transit IPv6 address of one end of segment n, with its /64.
func transitV6(n, end int) netip.Prefix {
	a := [16]byte{0x20, 0x01, 0x0d, 0xb8, 0xff, byte(n)}
	a[15] = byte(end)
	return netip.PrefixFrom(netip.AddrFrom16(a), 64)
}
