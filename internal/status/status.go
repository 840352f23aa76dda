// Package status reads what nftlimitd's limits are doing from the kernel:
// how many source groups each tracks, its bans, its counters, and the
// heaviest sources by open connections. `nftlimitd status` prints it and the
// daemon's metrics endpoint exports it.
package status

import (
	"net/netip"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/nftlimitd/nftlimitd/internal/config"
	"github.com/nftlimitd/nftlimitd/pkg/netlinkx"
	"github.com/nftlimitd/nftlimitd/pkg/ruleset"
)

// topN is how many of the heaviest sources are shown per limit.
const topN = 5

// Status is what `nftlimitd status --json` prints. Its shape is stable:
// fields may be added, never renamed or removed.
type Status struct {
	// Table is the name of the inet table.
	Table string `json:"table"`
	// Present is false when the table does not exist in the kernel.
	Present bool          `json:"present"`
	Limits  []LimitStatus `json:"limits"`
}

// LimitStatus is the state of one limit.
type LimitStatus struct {
	Name     string   `json:"name"`
	Protocol string   `json:"protocol"`
	Hook     string   `json:"hook"`
	Ports    []string `json:"ports"`
	Action   string   `json:"action"`
	// MaxConnections is 0 for a limit without a connection limit.
	MaxConnections int `json:"max_connections"`
	// Rate is the token bucket as nft states it ("6/minute burst 10"), or
	// empty.
	Rate string `json:"rate"`
	// Sets lists the limit's dynamic sets: how many source groups each
	// tracks, and how full it is.
	Sets []SetStatus `json:"sets"`
	// Hits counts the new connections the action was applied to.
	Hits Counter `json:"hits"`
	// BannedDrops counts the packets dropped because their source was
	// banned (zero for limits without bans).
	BannedDrops Counter `json:"banned_drops"`
	// Bans lists the banned source groups, soonest to expire first.
	Bans []Ban `json:"bans"`
	// TopSources lists the source groups with the most open connections on
	// the limit's ports, most first (from conntrack).
	TopSources []Source `json:"top_sources"`
}

// SetStatus is the fill of one dynamic set.
type SetStatus struct {
	Name     string `json:"name"`
	Elements int    `json:"elements"`
	Size     uint32 `json:"size"`
}

// Counter is a packet and byte count.
type Counter struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Ban is one banned source group.
type Ban struct {
	// Source is the source group, as a prefix of the limit's grouping.
	Source string `json:"source"`
	// ExpiresIn is the time left, in seconds.
	ExpiresIn float64 `json:"expires_in_seconds"`
}

// Source is a source group and its open connections.
type Source struct {
	Source          string `json:"source"`
	OpenConnections int    `json:"open_connections"`
}

// Read reads the kernel's view of every limit of cfg. It dumps only
// the limits' dynamic sets, which are bounded by max_sources, and never an
// exempt set. With top, it also dumps conntrack for the heaviest sources.
func Read(c *netlinkx.Conn, cfg *config.Config, top bool) (*Status, error) {
	st := &Status{Table: cfg.Table.Name, Limits: []LimitStatus{}}
	have, err := c.Read(cfg.Table.Name)
	if err != nil {
		return nil, err
	}
	if have == nil {
		return st, nil
	}
	st.Present = true
	counters, err := c.Counters(cfg.Table.Name)
	if err != nil {
		return nil, err
	}
	// One conntrack dump for all limits.
	type groupKey struct {
		limit int
		src   netip.Prefix
	}
	open := map[groupKey]int{}
	if top {
		err = c.Connections(func(cn netlinkx.Connection) {
			if !cn.Open {
				return
			}
			for i := range cfg.Limits {
				l := &cfg.Limits[i]
				if protoNum(l.Protocol) != cn.Proto || !inPorts(l.Ports, cn.DPort) {
					continue
				}
				open[groupKey{i, Group(l, cn.Src)}]++
			}
		})
	}
	if err != nil {
		return nil, err
	}

	for i := range cfg.Limits {
		l := &cfg.Limits[i]
		ls := LimitStatus{
			Name: l.Name, Protocol: string(l.Protocol), Hook: string(l.Hook), Action: string(l.Action),
			MaxConnections: l.MaxConnections, Sets: []SetStatus{}, Bans: []Ban{}, TopSources: []Source{},
		}
		for _, r := range l.Ports {
			ls.Ports = append(ls.Ports, r.String())
		}
		if l.Rate != nil {
			ls.Rate = l.Rate.String()
		}
		hits := counters[ruleset.HitsCounter(l.Name)]
		ls.Hits = Counter{hits.Packets, hits.Bytes}
		banned := counters[ruleset.BannedCounter(l.Name)]
		ls.BannedDrops = Counter{banned.Packets, banned.Bytes}
		for _, kind := range []string{"conn", "rate", "ban"} {
			for _, f := range []ruleset.Family{ruleset.IPv4, ruleset.IPv6} {
				name := ruleset.SetName(l.Name, kind, f)
				hs := have.Set(name)
				if hs == nil {
					continue
				}
				n, elems, err := c.Elements(cfg.Table.Name, name, kind != "ban")
				if err != nil {
					return nil, err
				}
				ls.Sets = append(ls.Sets, SetStatus{Name: name, Elements: n, Size: hs.Size})
				for _, el := range elems {
					ls.Bans = append(ls.Bans, Ban{Source: Group(l, el.Addr).String(), ExpiresIn: el.Expires.Seconds()})
				}
			}
		}
		sort.Slice(ls.Bans, func(a, b int) bool { return ls.Bans[a].ExpiresIn < ls.Bans[b].ExpiresIn })
		for k, n := range open {
			if k.limit == i {
				ls.TopSources = append(ls.TopSources, Source{Source: k.src.String(), OpenConnections: n})
			}
		}
		sort.Slice(ls.TopSources, func(a, b int) bool {
			if ls.TopSources[a].OpenConnections != ls.TopSources[b].OpenConnections {
				return ls.TopSources[a].OpenConnections > ls.TopSources[b].OpenConnections
			}
			return ls.TopSources[a].Source < ls.TopSources[b].Source
		})
		if len(ls.TopSources) > topN {
			ls.TopSources = ls.TopSources[:topN]
		}
		st.Limits = append(st.Limits, ls)
	}
	return st, nil
}

// Group is the source group of addr under limit l: addr masked to the
// limit's prefix for its family.
func Group(l *config.Limit, addr netip.Addr) netip.Prefix {
	addr = addr.Unmap()
	bits := l.IPv4Prefix
	if addr.Is6() {
		bits = l.IPv6Prefix
	}
	p, _ := addr.Prefix(bits)
	return p
}

func protoNum(p config.Protocol) uint8 {
	if p == config.UDP {
		return unix.IPPROTO_UDP
	}
	return unix.IPPROTO_TCP
}

func inPorts(rs []config.PortRange, port uint16) bool {
	for _, r := range rs {
		if r.From <= port && port <= r.To {
			return true
		}
	}
	return false
}
