package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nftlimitd/nftlimitd/internal/config"
	"github.com/nftlimitd/nftlimitd/internal/status"
	"github.com/nftlimitd/nftlimitd/pkg/netlinkx"
	"github.com/nftlimitd/nftlimitd/pkg/ruleset"
)

func statusCmd(e *Env, args []string) int {
	var path string
	fs := flags(e, "status", &path)
	asJSON := fs.Bool("json", false, "print JSON (its shape is documented in the README)")
	if err := fs.Parse(args); err != nil {
		return ExitConfig
	}
	cfg, ok := load(e, path)
	if !ok {
		fmt.Fprintln(e.Stderr, "nftlimitd status: fix the configuration first: it names the limits and how they group sources (the kernel keeps enforcing the last good one)")
		return ExitConfig
	}
	c, code := dial(e)
	if c == nil {
		return code
	}
	defer c.Close()
	st, err := status.Read(c, cfg, true)
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

func printStatus(w io.Writer, st *status.Status) {
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
		fmt.Fprintf(e.Stderr, "nftlimitd %s: fix the configuration first: it names the limits and how they group sources\n", name)
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
		g := status.Group(l, addr)
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
	g := status.Group(l, addr)
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
