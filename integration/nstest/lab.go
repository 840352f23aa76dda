package nstest

import (
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Options choose a Lab's topology.
type Options struct {
	// Router puts a router namespace between client and server:
	// client -- router -- server. The router forwards IPv4 and IPv6, so its
	// forward hook sees all traffic.
	Router bool
	// SecondLink adds link B, a second path between client and server (via
	// the router if Router is set) with its own server addresses
	// (ServerV4LinkB, ServerV6LinkB), for interface scoping.
	SecondLink bool
}

// Lab is a set of namespaces wired together as Options describe.
type Lab struct {
	// Client holds every client source address (ClientV4, ClientV6).
	Client *Host
	// Server holds the server addresses (ServerV4 and friends).
	Server *Host
	// Router is nil unless Options.Router is set.
	Router *Host
	// Options the lab was built with.
	Options Options
}

// Policy routing for replies from link B addresses.
const (
	tableLinkB    = 200
	ruleLinkBPrio = 100
)

// NewLab builds a lab (see the package documentation for the address plan)
// and removes it at t.Cleanup. It calls Require first.
func NewLab(t testing.TB, opts Options) *Lab {
	t.Helper()
	Require(t)
	sweepOnce.Do(func() { sweepStale(t) })

	id := nsCounter.Add(1)
	lab := &Lab{Options: opts}
	lab.Client = newHost(t, id, "client")
	lab.Server = newHost(t, id, "server")
	if opts.Router {
		lab.Router = newHost(t, id, "router")
		lab.Router.mustSysctl(t, "net/ipv4/ip_forward", "1")
		lab.Router.mustSysctl(t, "net/ipv6/conf/all/forwarding", "1")
	}

	// Wire the segments. The client's peer is the router if there is one,
	// else the server.
	c, s, r := lab.Client, lab.Server, lab.Router
	clientPeer := s
	if r != nil {
		clientPeer = r
	}
	connect(t, c, "lnka", clientPeer, "lnka", segClientA)
	serverSegA, serverSegB := segClientA, segClientB
	if r != nil {
		connect(t, r, "srva", s, "lnka", segServerA)
		serverSegA, serverSegB = segServerA, segServerB
	}
	if opts.SecondLink {
		connect(t, c, "lnkb", clientPeer, "lnkb", segClientB)
		if r != nil {
			connect(t, r, "srvb", s, "lnkb", segServerB)
		}
	}

	// Addresses: client sources on the client's loopback, server addresses on
	// the server's links.
	for g := 1; g <= Groups; g++ {
		for i := 1; i <= PerGroup; i++ {
			c.mustAddAddr(t, "lo", netip.PrefixFrom(ClientV4(g, i), 32))
			c.mustAddAddr(t, "lo", netip.PrefixFrom(ClientV6(g, i), 128))
		}
	}
	for _, a := range []netip.Addr{ServerV4, ServerV4Alt} {
		s.mustAddAddr(t, "lnka", netip.PrefixFrom(a, ServerNetV4.Bits()))
	}
	for _, a := range []netip.Addr{ServerV6, ServerV6Alt} {
		s.mustAddAddr(t, "lnka", netip.PrefixFrom(a, ServerNetV6.Bits()))
	}
	if opts.SecondLink {
		s.mustAddAddr(t, "lnkb", netip.PrefixFrom(ServerV4LinkB, ServerNetV4LinkB.Bits()))
		s.mustAddAddr(t, "lnkb", netip.PrefixFrom(ServerV6LinkB, ServerNetV6LinkB.Bits()))
	}

	// Routes towards the server: link A and link B server subnets.
	c.mustRoutes(t, 0, serverNetsA(), segClientA, serverEnd)
	if opts.SecondLink {
		c.mustRoutes(t, 0, serverNetsB(), segClientB, serverEnd)
	}
	if r != nil {
		r.mustRoutes(t, 0, serverNetsA(), segServerA, serverEnd)
		if opts.SecondLink {
			r.mustRoutes(t, 0, serverNetsB(), segServerB, serverEnd)
		}
	}

	// Routes back towards the client; replies from link B addresses go back
	// over link B (policy routing), everything else over link A.
	clientSide := []*Host{s}
	if r != nil {
		clientSide = append(clientSide, r)
	}
	for _, h := range clientSide {
		segA, segB := segClientA, segClientB
		if h == s {
			segA, segB = serverSegA, serverSegB
		}
		h.mustRoutes(t, 0, clientNets(), segA, clientEnd)
		if opts.SecondLink {
			h.mustRoutes(t, tableLinkB, clientNets(), segB, clientEnd)
			for _, src := range serverNetsB() {
				h.mustAddRule(t, src, tableLinkB)
			}
		}
	}
	return lab
}

// serverNetsA returns the server's link A subnets.
func serverNetsA() []netip.Prefix { return []netip.Prefix{ServerNetV4, ServerNetV6} }

// serverNetsB returns the server's link B subnets.
func serverNetsB() []netip.Prefix { return []netip.Prefix{ServerNetV4LinkB, ServerNetV6LinkB} }

// clientNets returns every client group prefix.
func clientNets() []netip.Prefix {
	var nets []netip.Prefix
	for g := 1; g <= Groups; g++ {
		nets = append(nets, ClientNetV4(g), ClientNetV6(g))
	}
	return nets
}

// connect creates a veth pair aName (in a) <-> bName (in b) as transit
// segment seg, brings both ends up and gives them their transit addresses: a
// is the end towards the client, b the end towards the server.
func connect(t testing.TB, a *Host, aName string, b *Host, bName string, seg int) {
	t.Helper()
	attrs := netlink.NewLinkAttrs()
	attrs.Name = aName
	veth := netlink.NewVeth(attrs)
	veth.PeerName = bName
	veth.PeerNamespace = netlink.NsFd(b.ns)
	if err := a.nl.LinkAdd(veth); err != nil {
		t.Fatalf("create veth %s/%s <-> %s/%s: %v", a.Name, aName, b.Name, bName, err)
	}
	for _, end := range []struct {
		h    *Host
		name string
		num  int
	}{{a, aName, clientEnd}, {b, bName, serverEnd}} {
		end.h.mustSysctl(t, "net/ipv6/conf/"+end.name+"/accept_dad", "0")
		end.h.mustLinkUp(t, end.name)
		end.h.mustAddAddr(t, end.name, transitV4(seg, end.num))
		end.h.mustAddAddr(t, end.name, transitV6(seg, end.num))
	}
	switch seg {
	case segClientA, segClientB:
		a.links = append(a.links, aName)
		b.links = append(b.links, bName)
	default:
		a.serverLinks = append(a.serverLinks, aName)
		b.links = append(b.links, bName)
	}
}

func (h *Host) mustLink(t testing.TB, name string) netlink.Link {
	t.Helper()
	link, err := h.nl.LinkByName(name)
	if err != nil {
		t.Fatalf("%s: find link %s: %v", h.Name, name, err)
	}
	return link
}

func (h *Host) mustLinkUp(t testing.TB, name string) {
	t.Helper()
	if err := h.nl.LinkSetUp(h.mustLink(t, name)); err != nil {
		t.Fatalf("%s: set %s up: %v", h.Name, name, err)
	}
}

// mustAddAddr adds addr (with its prefix length) to link name, without
// duplicate address detection.
func (h *Host) mustAddAddr(t testing.TB, name string, addr netip.Prefix) {
	t.Helper()
	a := &netlink.Addr{IPNet: ipNet(addr)}
	if addr.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	if err := h.nl.AddrAdd(h.mustLink(t, name), a); err != nil {
		t.Fatalf("%s: add address %s to %s: %v", h.Name, addr, name, err)
	}
}

// mustRoutes adds routes to each of dsts in table (0: main) via the transit
// address of end gwEnd of segment seg.
func (h *Host) mustRoutes(t testing.TB, table int, dsts []netip.Prefix, seg, gwEnd int) {
	t.Helper()
	for _, dst := range dsts {
		gw := transitV4(seg, gwEnd).Addr()
		if dst.Addr().Is6() {
			gw = transitV6(seg, gwEnd).Addr()
		}
		route := &netlink.Route{Dst: ipNet(dst), Gw: gw.AsSlice(), Table: table}
		if err := h.nl.RouteAdd(route); err != nil {
			t.Fatalf("%s: add route %s via %s table %d: %v", h.Name, dst, gw, table, err)
		}
	}
}

// mustAddRule adds the policy rule "from src lookup table".
func (h *Host) mustAddRule(t testing.TB, src netip.Prefix, table int) {
	t.Helper()
	rule := netlink.NewRule()
	rule.Src = ipNet(src)
	rule.Table = table
	rule.Priority = ruleLinkBPrio
	rule.Family = unix.AF_INET
	if src.Addr().Is6() {
		rule.Family = unix.AF_INET6
	}
	if err := h.nl.RuleAdd(rule); err != nil {
		t.Fatalf("%s: add rule from %s lookup %d: %v", h.Name, src, table, err)
	}
}

// ipNet converts a prefix (keeping its address bits) to a *net.IPNet.
func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
