package ruleset

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/nftlimitd/nftlimitd/internal/config"
)

// Names of the shared objects and the per-limit naming scheme.
const (
	// DispatchOwner owns the base chains' rules and the dispatch maps.
	DispatchOwner = "dispatch"

	limitChainPrefix     = "lim_"
	actionChainPrefix    = "act_"
	violationChainPrefix = "viol_"
	banChainPrefix       = "ban_"
	multiChainPrefix     = "multi_"
	multiBanChainPrefix  = "multiban_"
)

// Log lines of the action chains are limited to logRate per second, with a
// burst of logBurst, per limit: a flood cannot flood the log.
const (
	logRate  = 1
	logBurst = 5
)

// LimitChain is the name of the chain that evaluates limit name.
func LimitChain(name string) string { return limitChainPrefix + name }

// ActionChain is the name of the chain that counts and acts for limit name.
func ActionChain(name string) string { return actionChainPrefix + name }

// BanChain is the name of the chain that drops the banned sources of limit
// name.
func BanChain(name string) string { return banChainPrefix + name }

// ViolationChain is the name of the chain that bans a source that went over
// limit name's rate.
func ViolationChain(name string) string { return violationChainPrefix + name }

// BannedCounter is the name of the counter of packets dropped because their
// source was banned by limit name.
func BannedCounter(name string) string { return name + "_banned" }

// BanMap is the name of the verdict map that sends every packet (not only
// new connections) on the ports of limits with bans to their ban chains.
func BanMap(h config.Hook, p config.Protocol) string {
	return DispatchMap(h, p) + "_ban"
}

// HitsCounter is the name of the counter of packets limit name acted on.
func HitsCounter(name string) string { return name + "_hits" }

// SetName is the name of a limit's set of the given kind ("conn", "exempt",
// "dest" ...) for family f.
func SetName(limit, kind string, f Family) string {
	return fmt.Sprintf("%s_%s%d", limit, kind, f)
}

// DispatchMap is the name of the verdict map of a hook and protocol.
func DispatchMap(h config.Hook, p config.Protocol) string {
	return string(h) + "_" + string(p)
}

// Desired builds the table that enforces cfg.
func Desired(cfg *config.Config) (*Table, error) {
	t := &Table{Name: cfg.Table.Name}
	type hp struct {
		hook  config.Hook
		proto config.Protocol
	}
	groups := map[hp][]*config.Limit{}
	var order []hp
	for i := range cfg.Limits {
		l := &cfg.Limits[i]
		k := hp{l.Hook, l.Protocol}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], l)
	}
	// Base chains and maps in a fixed order: input before forward, tcp before udp.
	sort.SliceStable(order, func(i, j int) bool {
		if order[i].hook != order[j].hook {
			return order[i].hook == config.Input
		}
		return order[i].proto == config.TCP && order[j].proto != config.TCP
	})

	var maps []Set
	var multis []Chain
	usedMulti := map[string]bool{}
	base := map[config.Hook]*Chain{}
	var baseOrder []config.Hook
	for _, k := range order {
		c, ok := base[k.hook]
		if !ok {
			c = &Chain{Name: string(k.hook), Hook: k.hook, Priority: cfg.Table.Priority}
			base[k.hook] = c
			baseOrder = append(baseOrder, k.hook)
		}
		// Banned sources first, on every packet: a ban also ends the
		// connections they hold on the limit's ports.
		var banned []*config.Limit
		for _, l := range groups[k] {
			if l.Ban > 0 {
				banned = append(banned, l)
			}
		}
		if len(banned) > 0 {
			m, chains, err := dispatch(BanMap(k.hook, k.proto), banned, BanChain, multiBanChainPrefix, usedMulti)
			if err != nil {
				return nil, err
			}
			maps = append(maps, m)
			multis = append(multis, chains...)
			c.Rules = append(c.Rules, newRule(DispatchOwner, DportVmap{Proto: k.proto, Map: m.Name}))
		}
		m, chains, err := dispatch(DispatchMap(k.hook, k.proto), groups[k], LimitChain, multiChainPrefix, usedMulti)
		if err != nil {
			return nil, err
		}
		maps = append(maps, m)
		multis = append(multis, chains...)
		c.Rules = append(c.Rules, newRule(DispatchOwner, CTStateNew{}, DportVmap{Proto: k.proto, Map: m.Name}))
	}
	for _, h := range baseOrder {
		t.Chains = append(t.Chains, *base[h])
	}
	t.Chains = append(t.Chains, multis...)
	t.Sets = append(t.Sets, maps...)

	for i := range cfg.Limits {
		l := &cfg.Limits[i]
		sets, chains := limitObjects(l)
		t.Counters = append(t.Counters, Counter{Name: HitsCounter(l.Name), Limit: l.Name})
		if l.Ban > 0 {
			t.Counters = append(t.Counters, Counter{Name: BannedCounter(l.Name), Limit: l.Name})
		}
		t.Sets = append(t.Sets, sets...)
		t.Chains = append(t.Chains, chains...)
	}
	finishComments(t)
	return t, nil
}

// dispatch builds a verdict map called name: each port range jumps to the
// chain (as named by chainOf) of the one limit that covers it, or to a chain
// that jumps to each of the limits that share it, in configuration order.
func dispatch(name string, limits []*config.Limit, chainOf func(string) string, multiPrefix string, usedMulti map[string]bool) (Set, []Chain, error) {
	// Cut the port space at every range boundary.
	cuts := map[int]bool{}
	for _, l := range limits {
		for _, r := range l.Ports {
			cuts[int(r.From)] = true
			cuts[int(r.To)+1] = true
		}
	}
	points := make([]int, 0, len(cuts))
	for c := range cuts {
		points = append(points, c)
	}
	sort.Ints(points)

	m := Set{
		Name:     name,
		Type:     TypePort,
		Map:      true,
		Interval: true,
		Comment:  CommentPrefix + DispatchOwner,
	}
	var chains []Chain
	multiByKey := map[string]string{}
	for i := 0; i+1 < len(points); i++ {
		from, to := points[i], points[i+1]-1
		var names []string
		for _, l := range limits {
			if covers(l.Ports, from) {
				names = append(names, l.Name)
			}
		}
		if len(names) == 0 {
			continue
		}
		target := chainOf(names[0])
		if len(names) > 1 {
			k := strings.Join(names, "\x00")
			target = multiByKey[k]
			if target == "" {
				target = multiPrefix + strings.Join(names, "_")
				for n := 2; usedMulti[target]; n++ {
					target = fmt.Sprintf("%s%s_%d", multiPrefix, strings.Join(names, "_"), n)
				}
				usedMulti[target] = true
				multiByKey[k] = target
				c := Chain{Name: target}
				for _, n := range names {
					c.Rules = append(c.Rules, newRule(DispatchOwner, Verdict{Kind: Jump, Chain: chainOf(n)}))
				}
				chains = append(chains, c)
			}
		}
		r := config.PortRange{From: uint16(from), To: uint16(to)}
		if n := len(m.Ports); n > 0 && m.Ports[n-1].Chain == target && int(m.Ports[n-1].Ports.To)+1 == from {
			m.Ports[n-1].Ports.To = r.To
			continue
		}
		m.Ports = append(m.Ports, PortMapping{Ports: r, Chain: target})
	}
	if len(m.Ports) == 0 {
		return Set{}, nil, fmt.Errorf("%s: no ports to dispatch", name)
	}
	return m, chains, nil
}

func covers(rs []config.PortRange, port int) bool {
	for _, r := range rs {
		if int(r.From) <= port && port <= int(r.To) {
			return true
		}
	}
	return false
}

// limitObjects builds the sets and the two chains of one limit.
func limitObjects(l *config.Limit) ([]Set, []Chain) {
	var sets []Set
	owner := l.Name
	comment := CommentPrefix + l.Name
	act := ActionChain(l.Name)
	lim := Chain{Name: LimitChain(l.Name), Limit: l.Name}
	add := func(stmts ...Stmt) { lim.Rules = append(lim.Rules, newRule(owner, stmts...)) }

	// Scope: interfaces, then destinations.
	if len(l.Interfaces) > 0 {
		name := l.Name + "_ifaces"
		names := append([]string(nil), l.Interfaces...)
		sort.Strings(names)
		sets = append(sets, Set{Name: name, Type: TypeIfname, Names: names, Comment: comment, Limit: l.Name})
		add(IifnameInSet{Set: name, Negate: true}, Verdict{Kind: Return})
	}
	dst4, dst6 := split(l.Destinations)
	if len(dst4)+len(dst6) > 0 {
		for _, fam := range []struct {
			f      Family
			ranges []AddrRange
		}{{IPv4, dst4}, {IPv6, dst6}} {
			if len(fam.ranges) == 0 {
				// Only the other family is limited.
				add(NFProto{Family: fam.f}, Verdict{Kind: Return})
				continue
			}
			name := SetName(l.Name, "dest", fam.f)
			sets = append(sets, addrSet(name, fam.f, fam.ranges, comment, l.Name))
			add(AddrInSet{Family: fam.f, Field: DAddr, Prefix: bits(fam.f), Set: name, Negate: true}, Verdict{Kind: Return})
		}
	}

	// Exemptions.
	ex4, ex6 := split(l.Exempt)
	for _, fam := range []struct {
		f      Family
		ranges []AddrRange
	}{{IPv4, ex4}, {IPv6, ex6}} {
		if len(fam.ranges) == 0 {
			continue
		}
		name := SetName(l.Name, "exempt", fam.f)
		sets = append(sets, addrSet(name, fam.f, fam.ranges, comment, l.Name))
		add(AddrInSet{Family: fam.f, Field: SAddr, Prefix: bits(fam.f), Set: name}, Verdict{Kind: Return})
	}

	// The ban chain applies where the limit applies: same scope, same
	// exemptions.
	prelude := append([]Rule(nil), lim.Rules...)

	// Limits, per family.
	toAct := Verdict{Kind: Goto, Chain: act}
	for _, f := range []Family{IPv4, IPv6} {
		prefix := l.IPv4Prefix
		if f == IPv6 {
			prefix = l.IPv6Prefix
		}
		if l.MaxConnections > 0 {
			name := SetName(l.Name, "conn", f)
			sets = append(sets, Set{
				Name: name, Type: addrType(f), Dynamic: true,
				Size: uint32(l.MaxSources), Comment: comment, Limit: l.Name,
			})
			add(ConnLimit{Family: f, Prefix: prefix, Set: name, Over: uint32(l.MaxConnections)}, toAct)
			if l.WhenFull == config.FullDeny {
				// A full set silently stops adding: a source group that is
				// not in it was not counted, so it gets the action.
				add(AddrInSet{Family: f, Field: SAddr, Prefix: prefix, Set: name, Negate: true}, toAct)
			}
		}
		if l.Rate != nil {
			name := SetName(l.Name, "rate", f)
			sets = append(sets, Set{
				Name: name, Type: addrType(f), Dynamic: true, Timeout: true,
				Size: uint32(l.MaxSources), Comment: comment, Limit: l.Name,
			})
			over := toAct
			if l.Ban > 0 {
				over = Verdict{Kind: Goto, Chain: ViolationChain(l.Name)}
			}
			add(RateLimit{
				Family: f, Prefix: prefix, Set: name, Timeout: RateTimeout(l.Rate),
				Rate: l.Rate.Count, Unit: l.Rate.Unit, Burst: l.Rate.Burst,
			}, over)
			if l.WhenFull == config.FullDeny {
				add(AddrInSet{Family: f, Field: SAddr, Prefix: prefix, Set: name, Negate: true}, toAct)
			}
		}
	}
	var extra []Chain
	if l.Ban > 0 {
		banSets, banChains := banObjects(l, comment, toAct, prelude)
		sets = append(sets, banSets...)
		extra = banChains
	}

	// The action chain: count, maybe log, then act.
	a := Chain{Name: act, Limit: l.Name}
	addAct := func(stmts ...Stmt) { a.Rules = append(a.Rules, newRule(owner, stmts...)) }
	addAct(CounterRef{Name: HitsCounter(l.Name)})
	if l.Log {
		addAct(LogLimited{Rate: logRate, Unit: time.Second, Burst: logBurst, Prefix: "nftlimit " + l.Name + ": "})
	}
	switch l.Action {
	case config.Reject:
		addAct(Reject{With: l.RejectWith})
	case config.Drop:
		addAct(Verdict{Kind: Drop})
	}
	return sets, append([]Chain{lim, a}, extra...)
}

// banObjects builds what bans a source that goes over a limit's rate: the
// ban sets, the violation chain that adds to them (with escalating
// durations for repeat offenders) and the ban chain that drops banned
// sources' packets on the limit's ports.
//
// The ban chain starts with the limit's scope and exemption rules: a ban
// applies where the limit applies, and never to an exempt source.
//
// Escalation keeps one set per offence level: a source in NAME_seenK_F has
// gone over the rate K times within the ban window. A violation moves it up
// one level and bans it for that level's duration. A ban is not extended by
// the packets it blocks: it is a fixed sentence, and repeat offences are what
// escalation is for.
func banObjects(l *config.Limit, comment string, toAct Verdict, prelude []Rule) ([]Set, []Chain) {
	levels := BanLevels(l)
	window := BanWindow(l)
	var sets []Set
	viol := Chain{Name: ViolationChain(l.Name), Limit: l.Name}
	ban := Chain{Name: BanChain(l.Name), Limit: l.Name, Rules: prelude}
	dyn := func(name string, f Family) Set {
		return Set{Name: name, Type: addrType(f), Dynamic: true, Timeout: true,
			Size: uint32(l.MaxSources), Comment: comment, Limit: l.Name}
	}
	for _, f := range []Family{IPv4, IPv6} {
		prefix := l.IPv4Prefix
		if f == IPv6 {
			prefix = l.IPv6Prefix
		}
		banSet := SetName(l.Name, "ban", f)
		sets = append(sets, dyn(banSet, f))
		seen := func(k int) string { return fmt.Sprintf("%s_seen%d_%d", l.Name, k, f) }
		for k := 1; k < len(levels); k++ {
			sets = append(sets, dyn(seen(k), f))
		}
		// Highest level first: a source seen k times gets level k's ban.
		for k := len(levels) - 1; k >= 1; k-- {
			stmts := []Stmt{
				AddrInSet{Family: f, Field: SAddr, Prefix: prefix, Set: seen(k)},
				SetAdd{Family: f, Prefix: prefix, Set: banSet, Timeout: levels[k]},
			}
			if k+1 < len(levels) {
				stmts = append(stmts, SetAdd{Family: f, Prefix: prefix, Set: seen(k + 1), Timeout: window})
			}
			stmts = append(stmts, SetAdd{Family: f, Prefix: prefix, Set: seen(k), Timeout: window, Update: true}, toAct)
			viol.Rules = append(viol.Rules, newRule(l.Name, stmts...))
		}
		stmts := []Stmt{SetAdd{Family: f, Prefix: prefix, Set: banSet, Timeout: levels[0]}}
		if len(levels) > 1 {
			stmts = append(stmts, SetAdd{Family: f, Prefix: prefix, Set: seen(1), Timeout: window})
		}
		viol.Rules = append(viol.Rules, newRule(l.Name, append(stmts, toAct)...))

		ban.Rules = append(ban.Rules, newRule(l.Name,
			AddrInSet{Family: f, Field: SAddr, Prefix: prefix, Set: banSet},
			CounterRef{Name: BannedCounter(l.Name)},
			Verdict{Kind: Drop}))
	}
	return sets, []Chain{viol, ban}
}

// BanLevels lists a limit's ban durations: the first offence gets the
// first, a repeat offender the next, up to the last.
func BanLevels(l *config.Limit) []time.Duration {
	if len(l.BanEscalate) > 0 {
		return l.BanEscalate
	}
	return []time.Duration{l.Ban}
}

// BanWindow is how long offences are remembered for escalation.
func BanWindow(l *config.Limit) time.Duration {
	if l.BanWindow > 0 {
		return l.BanWindow
	}
	return 24 * time.Hour
}

// RateTimeout is how long an idle source group's token bucket is kept: the
// time the bucket takes to refill completely, rounded up to a second, so that
// a source never comes back with a full bucket early.
func RateTimeout(r *config.Rate) time.Duration {
	refill := time.Duration(uint64(r.Unit) / r.Count * uint64(r.Burst))
	return refill.Truncate(time.Second) + time.Second
}

func addrType(f Family) SetType {
	if f == IPv6 {
		return TypeIPv6
	}
	return TypeIPv4
}

func bits(f Family) int {
	if f == IPv6 {
		return 128
	}
	return 32
}

func addrSet(name string, f Family, ranges []AddrRange, comment, limit string) Set {
	return Set{Name: name, Type: addrType(f), Interval: true, Addrs: ranges, Comment: comment, Limit: limit}
}

// split turns prefixes into merged, sorted address ranges per family:
// overlapping and adjacent prefixes become one range, as an interval set
// requires.
func split(ps []netip.Prefix) (v4, v6 []AddrRange) {
	for _, p := range ps {
		r := AddrRange{From: p.Masked().Addr(), To: lastAddr(p)}
		if p.Addr().Is4() {
			v4 = append(v4, r)
		} else {
			v6 = append(v6, r)
		}
	}
	return mergeRanges(v4), mergeRanges(v6)
}

func mergeRanges(rs []AddrRange) []AddrRange {
	if len(rs) == 0 {
		return nil
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].From.Less(rs[j].From) })
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		// next is invalid when last already ends at the family's last address.
		next := last.To.Next()
		if !next.IsValid() || r.From.Compare(next) <= 0 {
			if last.To.Less(r.To) {
				last.To = r.To
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

// lastAddr is the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr()
	b := a.AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	out, _ := netip.AddrFromSlice(b)
	return out
}

// fingerprint hashes a static set's definition and elements.
func fingerprint(s *Set) string {
	var b strings.Builder
	writeSet(&b, s, "")
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:6])
}
