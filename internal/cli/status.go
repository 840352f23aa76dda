package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nftlimitd/nftlimitd/internal/config"
	"github.com/nftlimitd/nftlimitd/pkg/netlinkx"
	"github.com/nftlimitd/nftlimitd/pkg/ruleset"
)

// topN is how many of the heaviest sources status shows per limit.
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

func status(e *Env, args []string) int {
	var path string
	fs := flags(e, "status", &path)
	asJSON := fs.Bool("json", false, "print JSON (its shape is documented in the README)")
	if err := fs.Parse(args); err != nil {
		return ExitConfig
	}
	cfg, ok := load(e, path)
	if !ok {
		return ExitConfig
	}
	c, code := dial(e)
	if c == nil {
		return code
	}
	defer c.Close()
	st, err := readStatus(c, cfg)
	if err != nil {
		return fail(e, err, ExitKernel)
	}
	if *asJSON {
		enc := json.NewEncoder(e.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			fmt.Fprintf(e.Stderr, "nftlimitd: %v\n", err)
			return ExitKernel
		}
		return ExitOK
	}
	printStatus(e.Stdout, st)
	return ExitOK
}

// readStatus reads the kernel's view of every limit of cfg. It dumps only
// the limits' dynamic sets, which are bounded by max_sources, and never an
// exempt set.
func readStatus(c *netlinkx.Conn, cfg *config.Config) (*Status, error) {
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
	err = c.Connections(func(cn netlinkx.Connection) {
		if !cn.Open {
			return
		}
		for i := range cfg.Limits {
			l := &cfg.Limits[i]
			if protoNum(l.Protocol) != cn.Proto || !inPorts(l.Ports, cn.DPort) {
				continue
			}
			open[groupKey{i, group(l, cn.Src)}]++
		}
	})
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
			ls.Rate = rateString(l.Rate)
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
					ls.Bans = append(ls.Bans, Ban{Source: group(l, el.Addr).String(), ExpiresIn: el.Expires.Seconds()})
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

func printStatus(w io.Writer, st *Status) {
	if !st.Present {
		fmt.Fprintf(w, "table inet %s does not exist: nothing is enforced (run `nftlimitd apply`)\n", st.Table)
		return
	}
	fmt.Fprintf(w, "table inet %s\n\n", st.Table)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "LIMIT\tPORTS\tLIMITS\tACTION\tTRACKED\tFULLEST SET\tHITS\tBANNED")
	for _, l := range st.Limits {
		var limits []string
		if l.MaxConnections > 0 {
			limits = append(limits, fmt.Sprintf("%d conns", l.MaxConnections))
		}
		if l.Rate != "" {
			limits = append(limits, l.Rate)
		}
		tracked, fullest := 0, 0.0
		for _, s := range l.Sets {
			if !strings.Contains(s.Name, "_ban") {
				tracked += s.Elements
			}
			if s.Size > 0 {
				fullest = max(fullest, 100*float64(s.Elements)/float64(s.Size))
			}
		}
		fmt.Fprintf(tw, "%s\t%s %s\t%s\t%s\t%d\t%.1f%%\t%d\t%d\n", l.Name, l.Protocol, strings.Join(l.Ports, ","),
			strings.Join(limits, ", "), l.Action, tracked, fullest, l.Hits.Packets, len(l.Bans))
	}
	tw.Flush()
	for _, l := range st.Limits {
		if len(l.Bans) == 0 {
			continue
		}
		fmt.Fprintf(w, "\nbanned by %s (%d packets dropped while banned):\n", l.Name, l.BannedDrops.Packets)
		for _, b := range l.Bans {
			fmt.Fprintf(w, "  %-24s %s left\n", b.Source, (time.Duration(b.ExpiresIn) * time.Second).Round(time.Second))
		}
	}
	header := false
	for _, l := range st.Limits {
		for _, s := range l.TopSources {
			if !header {
				fmt.Fprintf(w, "\nheaviest sources by open connections:\n")
				header = true
			}
			fmt.Fprintf(w, "  %-12s %-24s %d\n", l.Name, s.Source, s.OpenConnections)
		}
	}
}

// group is the source group of addr under limit l: addr masked to the
// limit's prefix for its family.
func group(l *config.Limit, addr netip.Addr) netip.Prefix {
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

func rateString(r *config.Rate) string {
	unit := map[time.Duration]string{time.Second: "second", time.Minute: "minute", time.Hour: "hour",
		24 * time.Hour: "day", 7 * 24 * time.Hour: "week"}[r.Unit]
	return fmt.Sprintf("%d/%s burst %d", r.Count, unit, r.Burst)
}

// banFlags parses the flags and the ADDR argument of ban and unban.
func banFlags(e *Env, name string, args []string, withDuration bool) (cfg *config.Config, addr netip.Addr, limit string, d time.Duration, code int) {
	var path string
	fs := flags(e, name, &path)
	fs.StringVar(&limit, "limit", "", "the limit (default for unban: every limit with bans)")
	if withDuration {
		fs.DurationVar(&d, "for", 0, "how long the ban lasts (e.g. 10m)")
	}
	// Accept ADDR before or after the flags.
	var pos []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return nil, addr, "", 0, ExitConfig
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != 1 {
		fmt.Fprintf(e.Stderr, "usage: nftlimitd %s ADDR [--limit NAME]%s\n", name, map[bool]string{true: " --for DURATION"}[withDuration])
		return nil, addr, "", 0, ExitConfig
	}
	addr, err := netip.ParseAddr(pos[0])
	if err != nil {
		if p, perr := netip.ParsePrefix(pos[0]); perr == nil {
			addr = p.Addr()
		} else {
			fmt.Fprintf(e.Stderr, "nftlimitd %s: %q is not an address\n", name, pos[0])
			return nil, addr, "", 0, ExitConfig
		}
	}
	if withDuration && d <= 0 {
		fmt.Fprintf(e.Stderr, "nftlimitd %s: --for DURATION is required (e.g. --for 10m)\n", name)
		return nil, addr, "", 0, ExitConfig
	}
	if withDuration && limit == "" {
		fmt.Fprintf(e.Stderr, "nftlimitd %s: --limit NAME is required\n", name)
		return nil, addr, "", 0, ExitConfig
	}
	cfg, ok := load(e, path)
	if !ok {
		return nil, addr, "", 0, ExitConfig
	}
	if limit != "" {
		l, found := findLimit(cfg, limit)
		if !found {
			fmt.Fprintf(e.Stderr, "nftlimitd %s: no limit named %q\n", name, limit)
			return nil, addr, "", 0, ExitConfig
		}
		if l.Ban == 0 {
			fmt.Fprintf(e.Stderr, "nftlimitd %s: limit %q has no ban (set ban = \"DURATION\")\n", name, limit)
			return nil, addr, "", 0, ExitConfig
		}
	}
	return cfg, addr.Unmap(), limit, d, ExitOK
}

func findLimit(cfg *config.Config, name string) (*config.Limit, bool) {
	for i := range cfg.Limits {
		if cfg.Limits[i].Name == name {
			return &cfg.Limits[i], true
		}
	}
	return nil, false
}

func banSet(l *config.Limit, addr netip.Addr) string {
	f := ruleset.IPv4
	if addr.Is6() {
		f = ruleset.IPv6
	}
	return ruleset.SetName(l.Name, "ban", f)
}

func unban(e *Env, args []string) int {
	cfg, addr, limit, _, code := banFlags(e, "unban", args, false)
	if cfg == nil {
		return code
	}
	c, code := dial(e)
	if c == nil {
		return code
	}
	defer c.Close()
	lifted := 0
	for i := range cfg.Limits {
		l := &cfg.Limits[i]
		if l.Ban == 0 || (limit != "" && l.Name != limit) {
			continue
		}
		g := group(l, addr)
		err := c.DeleteElement(cfg.Table.Name, banSet(l, addr), g.Addr())
		switch {
		case errors.Is(err, netlinkx.ErrNotInSet):
			continue
		case err != nil:
			return fail(e, err, ExitKernel)
		}
		lifted++
		fmt.Fprintf(e.Stdout, "lifted the ban on %s by %s\n", g, l.Name)
	}
	if lifted == 0 {
		fmt.Fprintf(e.Stderr, "nftlimitd unban: %s is not banned\n", addr)
		return ExitConfig
	}
	return ExitOK
}

func ban(e *Env, args []string) int {
	cfg, addr, limit, d, code := banFlags(e, "ban", args, true)
	if cfg == nil {
		return code
	}
	l, _ := findLimit(cfg, limit)
	c, code := dial(e)
	if c == nil {
		return code
	}
	defer c.Close()
	g := group(l, addr)
	set := banSet(l, addr)
	// Replace any ban in force, so that --for is what counts.
	if err := c.DeleteElement(cfg.Table.Name, set, g.Addr()); err != nil && !errors.Is(err, netlinkx.ErrNotInSet) {
		return fail(e, err, ExitKernel)
	}
	if err := c.AddElement(cfg.Table.Name, set, g.Addr(), d); err != nil {
		return fail(e, err, ExitKernel)
	}
	fmt.Fprintf(e.Stdout, "banned %s from %s for %s\n", g, l.Name, d)
	return ExitOK
}
