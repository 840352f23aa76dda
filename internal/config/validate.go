package config

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// This file is stage two: raw structs are checked and turned into the typed
// Config, with the defaults applied.

// Built-in defaults (SPEC.md, "The config file").
const (
	defaultTableName  = "nftlimit"
	defaultPriority   = -10
	defaultIPv4Prefix = 32
	defaultIPv6Prefix = 64
	defaultMaxSources = 65536
)

// Bounds.
const (
	maxPriority       = 1000
	maxMaxSources     = 1 << 24
	maxLimitName      = 24
	maxTableName      = 32
	maxInterfaceName  = 15 // IFNAMSIZ - 1
	maxMaxConnections = math.MaxInt32
)

// validator checks raw files and builds the Config.
type validator struct {
	opts  options
	errs  ErrorList
	warns ErrorList
	// files lists every file read, in order.
	files []string
	// exempt caches exempt files by path: [defaults] may name one file
	// for every limit.
	exempt map[string]*exemptList
	// names maps each limit name to the limit that has it.
	names map[string]Position
}

type exemptList struct {
	prefixes []netip.Prefix
	err      error // the file could not be opened
}

func (v *validator) errorf(pos Position, format string, args ...any) {
	v.errs = append(v.errs, &Error{Pos: pos, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) warnf(pos Position, format string, args ...any) {
	v.warns = append(v.warns, &Error{Pos: pos, Msg: fmt.Sprintf(format, args...)})
}

// inherited is what a limit starts from: the built-in defaults overlaid with
// [defaults].
type inherited struct {
	Limit
	// rejectWith is reject_with from [defaults], if set.
	rejectWith *str
	exempt     []netip.Prefix
	exemptFile []netip.Prefix
}

func builtinDefaults() inherited {
	return inherited{Limit: Limit{
		Protocol:   TCP,
		Hook:       Input,
		Action:     Reject,
		IPv4Prefix: defaultIPv4Prefix,
		IPv6Prefix: defaultIPv6Prefix,
		MaxSources: defaultMaxSources,
		WhenFull:   FullDeny,
	}}
}

func (v *validator) table(r *rawTable) Table {
	t := Table{Name: defaultTableName, Priority: defaultPriority, KeepOnExit: true}
	if r == nil {
		return t
	}
	if r.name != nil {
		if validTableName(r.name.v) {
			t.Name = r.name.v
		} else {
			v.errorf(r.name.pos, "table: name: %q must be 1 to %d characters of a-z, A-Z, 0-9, '_' and '-', starting with a letter", r.name.v, maxTableName)
		}
	}
	if p, ok := v.intIn("table", "priority", r.priority, -maxPriority, maxPriority); ok {
		t.Priority = p
	}
	if r.keepOnExit != nil {
		t.KeepOnExit = r.keepOnExit.v
	}
	return t
}

func validTableName(s string) bool {
	if len(s) == 0 || len(s) > maxTableName || !isLetter(s[0]) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isLetter(c) && !isDigit(c) && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isLower(c byte) bool  { return c >= 'a' && c <= 'z' }
func isDigit(c byte) bool  { return c >= '0' && c <= '9' }

func (v *validator) metrics(r *rawMetrics) Metrics {
	if r == nil || r.listen == nil || r.listen.v == "" {
		return Metrics{}
	}
	s := r.listen
	_, port, err := net.SplitHostPort(s.v)
	if err != nil {
		msg := err.Error()
		var aerr *net.AddrError
		if errors.As(err, &aerr) {
			msg = aerr.Err
		}
		v.errorf(s.pos, "metrics: listen: %q is not host:port: %s", s.v, msg)
		return Metrics{}
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		v.errorf(s.pos, "metrics: listen: port %q must be a number from 1 to 65535", port)
		return Metrics{}
	}
	return Metrics{Listen: s.v}
}

// common applies the keys [defaults] and [[limit]] share onto b. Values that
// are not valid are reported and leave b as it was.
func (v *validator) common(ctx string, r *rawCommon, b *inherited, src *source) {
	if s, ok := oneOf(v, ctx, "action", r.action, Reject, Drop, Log); ok {
		b.Action = s
	}
	if _, ok := oneOf(v, ctx, "reject_with", r.rejectWith, TCPReset, ICMPPortUnreachable, ICMPAdminProhibited); ok {
		b.rejectWith = r.rejectWith
	}
	if s, ok := oneOf(v, ctx, "when_full", r.whenFull, FullDeny, FullAllow); ok {
		b.WhenFull = s
	}
	if s, ok := oneOf(v, ctx, "protocol", r.protocol, TCP, UDP); ok {
		b.Protocol = s
	}
	if s, ok := oneOf(v, ctx, "hook", r.hook, Input, Forward); ok {
		b.Hook = s
	}
	if n, ok := v.intIn(ctx, "ipv4_prefix", r.ipv4Prefix, 0, 32); ok {
		b.IPv4Prefix = n
	}
	if n, ok := v.intIn(ctx, "ipv6_prefix", r.ipv6Prefix, 0, 128); ok {
		b.IPv6Prefix = n
	}
	if n, ok := v.intIn(ctx, "max_sources", r.maxSources, 1, maxMaxSources); ok {
		b.MaxSources = n
	}
	if r.log != nil {
		b.Log = r.log.v
	}
	if r.exempt != nil {
		b.exempt = v.prefixes(ctx, "exempt", r.exempt)
	}
	if r.exemptFile != nil {
		b.exemptFile = v.exemptFile(ctx, r.exemptFile, src)
	}
	if r.interfaces != nil {
		b.Interfaces = v.interfaces(ctx, r.interfaces)
	}
}

// oneOf checks that s, if set, is one of the allowed values.
func oneOf[T ~string](v *validator, ctx, key string, s *str, allowed ...T) (T, bool) {
	if s == nil {
		return "", false
	}
	for _, a := range allowed {
		if s.v == string(a) {
			return a, true
		}
	}
	names := make([]string, len(allowed))
	for i, a := range allowed {
		names[i] = string(a)
	}
	v.errorf(s.pos, "%s: %s: %q is not one of %s", ctx, key, s.v, strings.Join(names, ", "))
	return "", false
}

// intIn checks that n, if set, is within lo..hi.
func (v *validator) intIn(ctx, key string, n *num, lo, hi int64) (int, bool) {
	if n == nil {
		return 0, false
	}
	if n.v < lo || n.v > hi {
		v.errorf(n.pos, "%s: %s: %d is out of range %s", ctx, key, n.v, rangeText(lo, hi))
		return 0, false
	}
	return int(n.v), true
}

func rangeText(lo, hi int64) string {
	if lo < 0 {
		return fmt.Sprintf("%d..%d", lo, hi)
	}
	return fmt.Sprintf("%d-%d", lo, hi)
}

// prefixes parses a list of addresses and CIDRs: sorted, de-duplicated.
func (v *validator) prefixes(ctx, key string, l *list) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(l.items))
	for _, it := range l.items {
		p, err := parsePrefix(it.str)
		if err != nil {
			v.errorf(it.pos, "%s: %s: %v", ctx, key, err)
			continue
		}
		out = append(out, p)
	}
	return sortPrefixes(out)
}

// exemptFile reads the file s names, relative to the directory of the file
// src that names it. Each file is read once.
func (v *validator) exemptFile(ctx string, s *str, src *source) []netip.Prefix {
	if s.v == "" {
		v.errorf(s.pos, "%s: exempt_file: must not be empty", ctx)
		return nil
	}
	path := s.v
	if !filepath.IsAbs(path) {
		path = filepath.Join(filepath.Dir(src.name), path)
	}
	e, ok := v.exempt[path]
	if !ok {
		e = &exemptList{}
		v.exempt[path] = e
		rc, err := v.opts.open(path)
		if err != nil {
			e.err = err
		} else {
			v.files = append(v.files, path)
			e.prefixes = readExemptFile(path, rc, &v.errs)
			rc.Close()
		}
	}
	if e.err != nil {
		v.errorf(s.pos, "%s: exempt_file: %v", ctx, e.err)
	}
	return e.prefixes
}

// interfaces checks interface names: sorted, de-duplicated.
func (v *validator) interfaces(ctx string, l *list) []string {
	out := make([]string, 0, len(l.items))
	for _, it := range l.items {
		if msg := checkInterface(it.str); msg != "" {
			v.errorf(it.pos, "%s: interfaces: %q %s", ctx, it.str, msg)
			continue
		}
		out = append(out, it.str)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// checkInterface says what is wrong with an interface name, or "".
func checkInterface(s string) string {
	switch {
	case s == "":
		return "is not an interface name: it is empty"
	case len(s) > maxInterfaceName:
		return fmt.Sprintf("is not an interface name: it is longer than %d bytes", maxInterfaceName)
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '/', '"', '\'', 0, ' ', '\t', '\n', '\v', '\f', '\r':
			return fmt.Sprintf("is not an interface name: it contains %q", c)
		}
	}
	return ""
}

// limit checks one [[limit]] and applies what it inherits.
func (v *validator) limit(r *rawLimit, b inherited, src *source) Limit {
	ctx := r.ctx
	v.common(ctx, &r.rawCommon, &b, src)
	l := b.Limit
	l.Pos = r.pos

	// Name.
	switch {
	case r.name == nil:
		if !r.has["name"] {
			v.errorf(r.pos, "%s: name is required", ctx)
		}
	case limitNameProblem(r.name.v) != "":
		v.errorf(r.name.pos, "%s: name: %s", ctx, limitNameProblem(r.name.v))
	default:
		l.Name = r.name.v
		if first, ok := v.names[l.Name]; ok {
			v.errorf(r.name.pos, "%s: name: %q is already the name of the limit at %s", ctx, l.Name, first)
		} else {
			v.names[l.Name] = r.pos
		}
	}

	// What is limited.
	switch {
	case r.ports != nil:
		l.Ports = v.ports(ctx, r.ports)
	case !r.has["ports"]:
		v.errorf(r.pos, "%s: ports is required", ctx)
	}
	if n, ok := v.intIn(ctx, "max_connections", r.maxConnections, 1, maxMaxConnections); ok {
		l.MaxConnections = n
	}
	if !r.has["max_connections"] && !r.has["rate"] {
		v.errorf(r.pos, "%s: set max_connections, rate or both", ctx)
	}
	l.Rate, l.Ban = v.rate(r)
	l.BanEscalate, l.BanWindow = v.escalate(r, l.Ban)
	if len(l.BanEscalate) > 0 {
		l.Ban = l.BanEscalate[0]
	}
	if r.destinations != nil {
		l.Destinations = v.prefixes(ctx, "destinations", r.destinations)
	}

	// How a rejected connection is answered.
	switch {
	case l.Action != Reject:
		if r.rejectWith != nil && b.rejectWith == r.rejectWith {
			v.errorf(r.rejectWith.pos, "%s: reject_with: only applies to action %q, not %q", ctx, Reject, l.Action)
		}
	case b.rejectWith == nil:
		l.RejectWith = TCPReset
		if l.Protocol == UDP {
			l.RejectWith = ICMPPortUnreachable
		}
	case RejectWith(b.rejectWith.v) == TCPReset && l.Protocol == UDP:
		if b.rejectWith == r.rejectWith {
			v.errorf(b.rejectWith.pos, "%s: reject_with: %q cannot answer udp: use %q or %q", ctx, TCPReset, ICMPPortUnreachable, ICMPAdminProhibited)
		} else {
			v.errorf(r.pos, "%s: reject_with %q from [defaults] at %s cannot answer udp: set reject_with in this limit", ctx, TCPReset, b.rejectWith.pos)
		}
	default:
		l.RejectWith = RejectWith(b.rejectWith.v)
	}

	l.Exempt = mergePrefixes(b.exempt, b.exemptFile)
	l.Interfaces = nilIfEmpty(slices.Clone(l.Interfaces))
	l.Destinations = nilIfEmpty(l.Destinations)
	return l
}

// nilIfEmpty returns nil for an empty slice, so that "not set" and "set to
// []" look the same.
func nilIfEmpty[S ~[]E, E any](s S) S {
	if len(s) == 0 {
		return nil
	}
	return s
}

// limitNameProblem says what is wrong with a limit name, or "".
func limitNameProblem(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isLower(c) && !isDigit(c) && c != '_' && c != '-' {
			return fmt.Sprintf("%q must be 1 to %d characters of a-z, 0-9, '_' and '-', starting with a letter", s, maxLimitName)
		}
	}
	switch {
	case s == "" || len(s) > maxLimitName:
		return fmt.Sprintf("%q must be 1 to %d characters of a-z, 0-9, '_' and '-', starting with a letter", s, maxLimitName)
	case !isLower(s[0]):
		return fmt.Sprintf("%q must start with a letter a-z: nft cannot parse set names that start with a digit or '-'", s)
	}
	return ""
}

// ports checks ports and ranges, and returns them sorted and merged.
func (v *validator) ports(ctx string, l *list) []PortRange {
	if len(l.items) == 0 {
		v.errorf(l.pos, "%s: ports: must list at least one port", ctx)
		return nil
	}
	var out []PortRange
	for _, it := range l.items {
		var r PortRange
		var msg string
		if it.kind == kindInteger {
			r, msg = portRange(it.int, it.int)
		} else {
			r, msg = parsePortRange(it.str)
		}
		if msg != "" {
			v.errorf(it.pos, "%s: ports: %s", ctx, msg)
			continue
		}
		out = append(out, r)
	}
	return mergePorts(out)
}

func portRange(from, to int64) (PortRange, string) {
	for _, p := range []int64{from, to} {
		if p < 1 || p > 65535 {
			return PortRange{}, fmt.Sprintf("port %d is out of range 1-65535", p)
		}
	}
	return PortRange{From: uint16(from), To: uint16(to)}, ""
}

// parsePortRange parses "22" or "8000-8080".
func parsePortRange(s string) (PortRange, string) {
	fromText, toText, isRange := strings.Cut(s, "-")
	if !isRange {
		toText = fromText
	}
	from, err1 := strconv.ParseInt(strings.TrimSpace(fromText), 10, 32)
	to, err2 := strconv.ParseInt(strings.TrimSpace(toText), 10, 32)
	if err1 != nil || err2 != nil {
		return PortRange{}, fmt.Sprintf(`%q is not a port or a "from-to" range`, s)
	}
	r, msg := portRange(from, to)
	if msg != "" {
		return PortRange{}, fmt.Sprintf("range %q: %s", s, msg)
	}
	if from > to {
		return PortRange{}, fmt.Sprintf("range %q is backwards: %d is greater than %d", s, from, to)
	}
	return r, ""
}

// mergePorts sorts ranges and merges those that overlap or touch.
func mergePorts(rs []PortRange) []PortRange {
	if len(rs) == 0 {
		return nil
	}
	slices.SortFunc(rs, func(a, b PortRange) int {
		return cmp.Or(cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To))
	})
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if int(r.From) <= int(last.To)+1 {
			last.To = max(last.To, r.To)
			continue
		}
		out = append(out, r)
	}
	return out
}

// rate checks rate, burst and ban.
func (v *validator) rate(r *rawLimit) (*Rate, time.Duration) {
	ctx := r.ctx
	var rate *Rate
	var exact bool
	if r.rate != nil {
		n, window, err := parseRate(r.rate.v)
		if err == nil {
			var rt Rate
			rt, exact, err = convertRate(n, window)
			rate = &rt
		}
		if err != nil {
			v.errorf(r.rate.pos, "%s: rate: %q: %v", ctx, r.rate.v, err)
			rate = nil
		}
	}
	burstOK := false
	if r.burst != nil {
		switch {
		case r.rate == nil:
			v.errorf(r.burst.pos, "%s: burst: only applies with a rate", ctx)
		case r.burst.v < 1 || r.burst.v > math.MaxUint32:
			v.errorf(r.burst.pos, "%s: burst: %d is out of range 1-%d", ctx, r.burst.v, uint32(math.MaxUint32))
		default:
			burstOK = true
			if rate != nil {
				rate.Burst = uint32(r.burst.v)
			}
		}
	}
	if rate != nil && !exact {
		v.warnf(r.rate.pos, "%s: rate: %q is not a whole number per second, minute, hour, day or week: using %s, rounded down", ctx, r.rate.v, rate)
	}
	var ban time.Duration
	banOK := false
	if r.ban != nil {
		d, err := time.ParseDuration(r.ban.v)
		switch {
		case r.rate == nil:
			v.errorf(r.ban.pos, "%s: ban: only applies with a rate", ctx)
		case err != nil:
			v.errorf(r.ban.pos, "%s: ban: %q is not a duration like 90s, 10m or 1h30m", ctx, r.ban.v)
		case d <= 0:
			v.errorf(r.ban.pos, "%s: ban: %q must be longer than 0", ctx, r.ban.v)
		default:
			ban, banOK = d, true
		}
	}

	if !v.opts.rates {
		if rate != nil {
			v.errorf(r.rate.pos, "%s: rate: rate limits are not supported by this version yet", ctx)
		}
		if burstOK {
			v.errorf(r.burst.pos, "%s: burst: rate limits are not supported by this version yet", ctx)
		}
		if banOK {
			v.errorf(r.ban.pos, "%s: ban: bans are not supported by this version yet", ctx)
		}
		return nil, 0
	}
	return rate, ban
}

// defaultBanWindow is how long offences are remembered by default.
const defaultBanWindow = 24 * time.Hour

// escalate checks ban_escalate and ban_window. The ladder starts with ban
// when both are set (ban must then be its first step).
func (v *validator) escalate(r *rawLimit, ban time.Duration) ([]time.Duration, time.Duration) {
	ctx := r.ctx
	var ladder []time.Duration
	ok := true
	if r.banEscalate != nil {
		if r.rate == nil {
			v.errorf(r.banEscalate.pos, "%s: ban_escalate: only applies with a rate", ctx)
			ok = false
		}
		if len(r.banEscalate.items) == 0 {
			v.errorf(r.banEscalate.pos, "%s: ban_escalate: list at least one duration", ctx)
			ok = false
		}
		for _, it := range r.banEscalate.items {
			d, err := time.ParseDuration(it.str)
			switch {
			case err != nil:
				v.errorf(it.pos, "%s: ban_escalate: %q is not a duration like 90s, 10m or 1h30m", ctx, it.str)
				ok = false
			case d < time.Second:
				v.errorf(it.pos, "%s: ban_escalate: %q must be at least 1s", ctx, it.str)
				ok = false
			case len(ladder) > 0 && d < ladder[len(ladder)-1]:
				v.errorf(it.pos, "%s: ban_escalate: %q is shorter than the step before it: each offence must get at least the ban of the one before", ctx, it.str)
				ok = false
			}
			ladder = append(ladder, d)
		}
		if ok && r.ban != nil && ban > 0 && ban != ladder[0] {
			v.errorf(r.ban.pos, "%s: ban: %q differs from the first step of ban_escalate (%s): set one or make them agree", ctx, r.ban.v, ladder[0])
			ok = false
		}
		if !ok {
			ladder = nil
		}
	} else if ban > 0 {
		ladder = []time.Duration{ban}
	}
	window := time.Duration(0)
	if len(ladder) > 0 {
		window = defaultBanWindow
	}
	if r.banWindow != nil {
		d, err := time.ParseDuration(r.banWindow.v)
		switch {
		case r.ban == nil && r.banEscalate == nil:
			v.errorf(r.banWindow.pos, "%s: ban_window: only applies with ban or ban_escalate", ctx)
		case err != nil:
			v.errorf(r.banWindow.pos, "%s: ban_window: %q is not a duration like 90s, 10m or 1h30m", ctx, r.banWindow.v)
		case d < time.Second:
			v.errorf(r.banWindow.pos, "%s: ban_window: %q must be at least 1s", ctx, r.banWindow.v)
		default:
			window = d
		}
	}
	return ladder, window
}

// sortErrors sorts errors by file, in the order the files were read, then
// by position.
func sortErrors(l ErrorList, files []string) {
	index := make(map[string]int, len(files))
	for i, f := range files {
		if _, ok := index[f]; !ok {
			index[f] = i
		}
	}
	fileIndex := func(name string) int {
		if i, ok := index[name]; ok {
			return i
		}
		return len(files)
	}
	slices.SortStableFunc(l, func(a, b *Error) int {
		return cmp.Or(
			cmp.Compare(fileIndex(a.Pos.File), fileIndex(b.Pos.File)),
			cmp.Compare(a.Pos.Line, b.Pos.Line),
			cmp.Compare(a.Pos.Col, b.Pos.Col),
		)
	})
}
