package ruleset

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/nftlimitd/nftlimitd/internal/config"
)

// Stmt is one statement of a rule. The set of statements is closed: these
// are all nftlimitd ever programs, and pkg/netlinkx translates each one into
// the expressions nft itself would generate for it.
type Stmt interface {
	// String renders the statement as `nft list` prints it.
	String() string
	// refs lists the objects (sets, chains, counters) the statement uses.
	refs() []string
}

// CTStateNew matches the first packet of a connection: `ct state new`.
type CTStateNew struct{}

// DportVmap dispatches on the destination port through a verdict map:
// `tcp dport vmap @m`. It implies the layer-4 protocol.
type DportVmap struct {
	Proto config.Protocol
	Map   string
}

// IifnameInSet matches the input interface against a set:
// `iifname [!=] @s`.
type IifnameInSet struct {
	Set    string
	Negate bool
}

// NFProto matches the packet's family: `meta nfproto ipv4`.
type NFProto struct {
	Family Family
}

// L4Proto matches the layer-4 protocol: `meta l4proto tcp`.
type L4Proto struct {
	Proto config.Protocol
}

// Addr selects the source or destination address.
type Addr int

// Address fields.
const (
	SAddr Addr = iota
	DAddr
)

// AddrInSet matches the packet's source or destination address, masked to
// Prefix bits, against a set: `ip saddr & 255.255.255.0 [!=] @s`.
type AddrInSet struct {
	Family Family
	Field  Addr
	// Prefix is the mask length; the full length (32 or 128) means none.
	Prefix int
	Set    string
	Negate bool
}

// ConnLimit adds the packet's source group to a set with a per-element
// connection count and matches when the group holds more than Over:
// `add @s { ip saddr & mask ct count over N }`.
type ConnLimit struct {
	Family Family
	Prefix int
	Set    string
	Over   uint32
}

// RateLimit updates the source group's token bucket in a set with timeouts
// and matches when the bucket is empty:
// `update @s { ip saddr timeout T limit rate over R/unit burst B packets }`.
type RateLimit struct {
	Family  Family
	Prefix  int
	Set     string
	Timeout time.Duration
	Rate    uint64
	Unit    time.Duration
	Burst   uint32
}

// SetAdd adds the packet's source group to a set with timeouts:
// `add @s { ip saddr & mask timeout T }`; with Update, an element that is
// already there gets its timeout restarted: `update @s { ... }`.
type SetAdd struct {
	Family  Family
	Prefix  int
	Set     string
	Timeout time.Duration
	Update  bool
}

func (s SetAdd) String() string {
	op := "add"
	if s.Update {
		op = "update"
	}
	return fmt.Sprintf("%s @%s { %s timeout %s }", op, s.Set, key(s.Family, "saddr", s.Prefix), nftDuration(s.Timeout))
}
func (s SetAdd) refs() []string { return []string{s.Set} }

// CounterRef counts the packet in a named counter: `counter name "c"`.
type CounterRef struct {
	Name string
}

// LogLimited logs at most Rate lines per Unit (Burst at once) with a prefix:
// `limit rate 1/second burst 5 packets log prefix "p"`.
type LogLimited struct {
	Rate   uint64
	Unit   time.Duration
	Burst  uint32
	Prefix string
}

// Reject answers the packet as With says and drops it.
type Reject struct {
	With config.RejectWith
}

// VerdictKind is the kind of a Verdict.
type VerdictKind string

// Verdict kinds.
const (
	Drop   VerdictKind = "drop"
	Return VerdictKind = "return"
	Jump   VerdictKind = "jump"
	Goto   VerdictKind = "goto"
)

// Verdict ends the rule: drop, return, or jump/goto a chain.
type Verdict struct {
	Kind  VerdictKind
	Chain string
}

func (CTStateNew) String() string { return "ct state new" }
func (CTStateNew) refs() []string { return nil }

func (s DportVmap) String() string { return fmt.Sprintf("%s dport vmap @%s", s.Proto, s.Map) }
func (s DportVmap) refs() []string { return []string{s.Map} }

func (s IifnameInSet) String() string { return "iifname " + neg(s.Negate) + "@" + s.Set }
func (s IifnameInSet) refs() []string { return []string{s.Set} }

func (s NFProto) String() string { return "meta nfproto " + familyName(s.Family) }
func (NFProto) refs() []string   { return nil }

func (s L4Proto) String() string { return "meta l4proto " + string(s.Proto) }
func (L4Proto) refs() []string   { return nil }

func (s AddrInSet) String() string {
	field := "saddr"
	if s.Field == DAddr {
		field = "daddr"
	}
	op := neg(s.Negate)
	if op == "" && s.Prefix < bits(s.Family) {
		// nft spells out the implicit == after a mask.
		op = "== "
	}
	return key(s.Family, field, s.Prefix) + " " + op + "@" + s.Set
}
func (s AddrInSet) refs() []string { return []string{s.Set} }

func (s ConnLimit) String() string {
	return fmt.Sprintf("add @%s { %s ct count over %d }", s.Set, key(s.Family, "saddr", s.Prefix), s.Over)
}
func (s ConnLimit) refs() []string { return []string{s.Set} }

func (s RateLimit) String() string {
	return fmt.Sprintf("update @%s { %s timeout %s limit rate over %d/%s%s }",
		s.Set, key(s.Family, "saddr", s.Prefix), nftDuration(s.Timeout), s.Rate, unitName(s.Unit), burst(s.Burst))
}
func (s RateLimit) refs() []string { return []string{s.Set} }

func (s CounterRef) String() string { return "counter name " + quote(s.Name) }
func (s CounterRef) refs() []string { return []string{s.Name} }

func (s LogLimited) String() string {
	return fmt.Sprintf("limit rate %d/%s%s log prefix %s", s.Rate, unitName(s.Unit), burst(s.Burst), quote(s.Prefix))
}
func (LogLimited) refs() []string { return nil }

func (s Reject) String() string {
	switch s.With {
	case config.TCPReset:
		// nft lists the dependency it adds for a TCP reset.
		return "meta l4proto tcp reject with tcp reset"
	case config.ICMPAdminProhibited:
		return "reject with icmpx admin-prohibited"
	default:
		// icmpx port-unreachable is the default and nft prints it bare.
		return "reject"
	}
}
func (Reject) refs() []string { return nil }

func (s Verdict) String() string {
	if s.Kind == Jump || s.Kind == Goto {
		return string(s.Kind) + " " + s.Chain
	}
	return string(s.Kind)
}
func (s Verdict) refs() []string {
	if s.Chain != "" {
		return []string{s.Chain}
	}
	return nil
}

// burst prints a packet burst as nft does: not at all when it is nft's
// default of 5.
func burst(b uint32) string {
	if b == 5 || b == 0 {
		return ""
	}
	return fmt.Sprintf(" burst %d packets", b)
}

func neg(n bool) string {
	if n {
		return "!= "
	}
	return ""
}

func familyName(f Family) string {
	if f == IPv6 {
		return "ipv6"
	}
	return "ipv4"
}

// key renders an address selector, masked when prefix is shorter than the
// address: `ip saddr & 255.255.255.0`.
func key(f Family, field string, prefix int) string {
	proto, bits := "ip", 32
	if f == IPv6 {
		proto, bits = "ip6", 128
	}
	s := proto + " " + field
	if prefix < bits {
		s += " & " + Mask(f, prefix).String()
	}
	return s
}

// Mask returns the network mask of prefix bits in family f.
func Mask(f Family, prefix int) netip.Addr {
	if f == IPv6 {
		var b [16]byte
		for i := 0; i < prefix; i++ {
			b[i/8] |= 0x80 >> (i % 8)
		}
		return netip.AddrFrom16(b)
	}
	var b [4]byte
	for i := 0; i < prefix; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom4(b)
}

// unitName names a standard rate unit as nft does.
func unitName(u time.Duration) string {
	switch u {
	case time.Second:
		return "second"
	case time.Minute:
		return "minute"
	case time.Hour:
		return "hour"
	case 24 * time.Hour:
		return "day"
	case 7 * 24 * time.Hour:
		return "week"
	}
	panic(fmt.Sprintf("ruleset: non-standard rate unit %v", u))
}

// nftDuration prints a duration as nft does: 1d2h3m4s, omitting zero parts.
func nftDuration(d time.Duration) string {
	ms := d.Milliseconds()
	var s string
	for _, u := range []struct {
		n    int64
		name string
	}{{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}, {1, "ms"}} {
		if ms >= u.n {
			s += fmt.Sprintf("%d%s", ms/u.n, u.name)
			ms %= u.n
		}
	}
	if s == "" {
		return "0s"
	}
	return s
}
