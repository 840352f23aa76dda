// Package nstest builds throwaway network namespaces for nftlimitd's
// real-kernel tests and sends real TCP and UDP traffic between them.
//
// A Lab is a client and a server namespace joined by a veth pair (link A),
// optionally with a router namespace between them (Options.Router) and a
// second, parallel path (Options.SecondLink, link B). Namespaces are named
// "nlt-<pid>-<n>-<role>" and are visible to `ip netns exec`, so tests can run
// nft, conntrack or nftlimitd inside them (Host.Exec, Host.Start). Everything
// is removed with t.Cleanup; namespaces left behind by a test binary that
// died are removed by the next NewLab.
//
// No OS thread that Go may reuse ever changes namespace: every socket and
// netlink handle is created on a locked goroutine that joins the namespace
// and exits without unlocking, so the runtime discards its thread. The main
// thread is the exception the runtime makes (it parks it instead, still in
// the namespace), so importing this package locks the main goroutine to it
// for good. CheckThreads verifies all this from TestMain. The host's own
// namespace is never configured.
//
// # Address plan
//
// Only documentation (RFC 5737, RFC 3849) and benchmark (RFC 2544) ranges:
//
//	server, link A     192.0.2.1/25, 192.0.2.2/25       2001:db8::1/64, 2001:db8::2/64
//	server, link B     192.0.2.129/25                   2001:db8:0:b::1/64
//	client group 1     198.51.100.1..16                 2001:db8:1:1::1..16
//	client group 2     203.0.113.1..16                  2001:db8:1:2::1..16
//	transit segment n  198.18.n.0/24                    2001:db8:ff0n::/64
//
// Client source addresses are host addresses (/32, /128) on the client's
// loopback, so any of them can be the source of a connection over either
// link. Server addresses sit on the server's link A or link B interface.
//
// Each veth pair is a transit segment: the end towards the client gets host
// part 1 (198.18.n.1, 2001:db8:ff0n::1), the end towards the server host
// part 2. Segments: 1 client–link A (to the router, or to the server without
// one), 2 client–link B, 3 router–server link A, 4 router–server link B.
// Routes point at these transit addresses, and source-based policy routing
// (rules "from 192.0.2.128/25" and "from 2001:db8:0:b::/64" to a table of
// their own) sends replies from link B addresses back over link B, so traffic
// is symmetric on both links in both topologies.
//
// Interface names: client and server use "lnka" and "lnkb" (Host.Link); the
// router uses "lnka" and "lnkb" towards the client (Host.Link) and "srva" and
// "srvb" towards the server (Host.ServerLink).
//
// The router forwards IPv4 and IPv6. IPv6 duplicate address detection is off
// everywhere (accept_dad=0 and IFA_F_NODAD), so addresses work at once;
// reverse path filtering is off; ICMP errors are not rate limited
// (icmp_ratemask cleared for IPv4 and IPv6), so every reject is answered.
//
// # Outcomes
//
// DialTCP reports an ICMP error (Refused, Unreachable) within milliseconds,
// as a client on a real network sees it. Over veth the kernel alone would
// not: the error comes back while connect(2) still holds the socket lock, is
// kept only as a soft error, and the connect fails only with the SYN
// retransmitted a second later (every time over IPv6 here). DialTCP polls
// SO_ERROR while connecting to pick the soft error up. An expected time-out
// (a drop) can therefore use a short timeout such as 300 ms.
package nstest
