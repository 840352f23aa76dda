package config

import (
	"fmt"
	"slices"
	"strings"
)

// This file is the second half of stage one: the generic tree is decoded
// into raw structs that follow the schema. Unknown keys and wrong types are
// reported here; a nil pointer means "not set". Values are checked in stage
// two (validate.go).

type str struct {
	v   string
	pos Position
}

type num struct {
	v   int64
	pos Position
}

type flag struct {
	v   bool
	pos Position
}

// list is an array whose elements have been type-checked; pos is where the
// array starts.
type list struct {
	items []*node
	pos   Position
}

// rawFile is one decoded file.
type rawFile struct {
	table    *rawTable
	metrics  *rawMetrics
	defaults *rawCommon
	limits   []*rawLimit
}

type rawTable struct {
	name       *str
	priority   *num
	keepOnExit *flag
}

type rawMetrics struct {
	listen *str
}

// rawCommon holds the keys that [defaults] and [[limit]] share.
type rawCommon struct {
	action, rejectWith, whenFull, protocol, hook, exemptFile *str
	ipv4Prefix, ipv6Prefix, maxSources                       *num
	log                                                      *flag
	exempt, interfaces                                       *list
}

type rawLimit struct {
	rawCommon
	// pos is where the [[limit]] header stands.
	pos Position
	// ctx names the limit in messages: `limit "ssh"`.
	ctx string
	// has holds every known key the limit sets, even to a value of the
	// wrong type, so that a required key is not also reported missing.
	has map[string]bool

	name, rate, ban       *str
	banWindow             *str
	banEscalate           *list
	ports                 *list
	maxConnections, burst *num
	destinations          *list
}

// Keys of each table, for unknown-key hints.
var (
	topKeys       = []string{"table", "metrics", "defaults", "limit"}
	tableKeys     = []string{"name", "priority", "keep_on_exit"}
	metricsKeys   = []string{"listen"}
	commonKeys    = []string{"action", "ipv4_prefix", "ipv6_prefix", "exempt", "exempt_file", "log", "max_sources", "when_full", "reject_with", "protocol", "hook", "interfaces"}
	limitOnlyKeys = []string{"name", "ports", "max_connections", "rate", "burst", "ban", "ban_escalate", "ban_window", "destinations"}
)

// decoder decodes trees into raw structs.
type decoder struct {
	errs *ErrorList
}

func (d *decoder) errorf(pos Position, format string, args ...any) {
	*d.errs = append(*d.errs, &Error{Pos: pos, Msg: fmt.Sprintf(format, args...)})
}

// file decodes the tree of one file. A snippet may hold only [[limit]].
func (d *decoder) file(root *node, snippet bool) *rawFile {
	f := &rawFile{}
	for _, key := range root.keys {
		n := root.fields[key]
		switch key {
		case "table", "metrics", "defaults":
			if !d.section(key, n) {
				continue
			}
			if snippet {
				d.errorf(n.keyPos, "[%s] is only allowed in the main file: a snippet may contain only [[limit]] tables", key)
				continue
			}
			switch key {
			case "table":
				f.table = d.table(n)
			case "metrics":
				f.metrics = d.metrics(n)
			case "defaults":
				f.defaults = d.defaults(n)
			}
		case "limit":
			switch n.kind {
			case kindArrayTables:
				for _, t := range n.items {
					f.limits = append(f.limits, d.limit(t))
				}
			case kindTable:
				d.errorf(n.keyPos, "[limit] must be written [[limit]]: each limit is one table of an array")
			case kindInvalid:
			default:
				d.typeError(n, "limit", "[[limit]] tables")
			}
		default:
			switch n.kind {
			case kindTable:
				d.errorf(n.keyPos, "unknown table [%s]%s", key, hint(key, topKeys))
			case kindArrayTables:
				d.errorf(n.keyPos, "unknown table [[%s]]%s", key, hint(key, topKeys))
			default:
				d.errorf(n.keyPos, "unknown key %q at top level%s", key, hint(key, topKeys))
			}
		}
	}
	return f
}

// section checks that a [table], [metrics] or [defaults] is a table.
func (d *decoder) section(key string, n *node) bool {
	switch n.kind {
	case kindTable:
		return true
	case kindArrayTables:
		d.errorf(n.keyPos, "[[%s]] must be written [%s]: there is only one", key, key)
	case kindInvalid:
	default:
		d.typeError(n, key, "a table")
	}
	return false
}

func (d *decoder) table(t *node) *rawTable {
	r := &rawTable{}
	d.fields(t, "table", "[table]", tableKeys, nil, map[string]func(string, *node){
		"name":         d.str("table", &r.name),
		"priority":     d.num("table", &r.priority),
		"keep_on_exit": d.flag("table", &r.keepOnExit),
	})
	return r
}

func (d *decoder) metrics(t *node) *rawMetrics {
	r := &rawMetrics{}
	d.fields(t, "metrics", "[metrics]", metricsKeys, nil, map[string]func(string, *node){
		"listen": d.str("metrics", &r.listen),
	})
	return r
}

func (d *decoder) defaults(t *node) *rawCommon {
	r := &rawCommon{}
	d.fields(t, "defaults", "[defaults]", commonKeys, limitOnlyKeys, d.commonFields("defaults", r))
	return r
}

func (d *decoder) commonFields(ctx string, r *rawCommon) map[string]func(string, *node) {
	return map[string]func(string, *node){
		"action":      d.str(ctx, &r.action),
		"reject_with": d.str(ctx, &r.rejectWith),
		"when_full":   d.str(ctx, &r.whenFull),
		"protocol":    d.str(ctx, &r.protocol),
		"hook":        d.str(ctx, &r.hook),
		"exempt_file": d.str(ctx, &r.exemptFile),
		"ipv4_prefix": d.num(ctx, &r.ipv4Prefix),
		"ipv6_prefix": d.num(ctx, &r.ipv6Prefix),
		"max_sources": d.num(ctx, &r.maxSources),
		"log":         d.flag(ctx, &r.log),
		"exempt":      d.strings(ctx, &r.exempt),
		"interfaces":  d.strings(ctx, &r.interfaces),
	}
}

func (d *decoder) limit(t *node) *rawLimit {
	r := &rawLimit{pos: t.pos, ctx: "[[limit]]", has: map[string]bool{}}
	// Name the limit in every message, even before its name is checked.
	if n := t.fields["name"]; n != nil && n.kind == kindString {
		r.ctx = fmt.Sprintf("limit %q", n.str)
	}
	fs := d.commonFields(r.ctx, &r.rawCommon)
	fs["name"] = d.str(r.ctx, &r.name)
	fs["rate"] = d.str(r.ctx, &r.rate)
	fs["ban"] = d.str(r.ctx, &r.ban)
	fs["ban_escalate"] = d.strings(r.ctx, &r.banEscalate)
	fs["ban_window"] = d.str(r.ctx, &r.banWindow)
	fs["max_connections"] = d.num(r.ctx, &r.maxConnections)
	fs["burst"] = d.num(r.ctx, &r.burst)
	fs["destinations"] = d.strings(r.ctx, &r.destinations)
	fs["ports"] = d.ports(r.ctx, &r.ports)
	d.fields(t, r.ctx, "[[limit]]", append(append([]string(nil), commonKeys...), limitOnlyKeys...), nil, fs)
	for _, key := range t.keys {
		r.has[key] = fs[key] != nil
	}
	return r
}

// fields decodes the keys of table t. ctx prefixes messages; where names the
// table in unknown-key messages; known lists the keys for hints, and
// elsewhere the keys that belong in a [[limit]] instead.
func (d *decoder) fields(t *node, ctx, where string, known, elsewhere []string, fs map[string]func(string, *node)) {
	for _, key := range t.keys {
		n := t.fields[key]
		if set, ok := fs[key]; ok {
			set(key, n)
			continue
		}
		if slices.Contains(elsewhere, key) {
			d.errorf(n.keyPos, "%s: %s can only be set in a [[limit]]", ctx, key)
			continue
		}
		d.errorf(n.keyPos, "unknown key %q in %s%s", key, where, hint(key, known))
	}
}

// typeError reports a value of the wrong type.
func (d *decoder) typeError(n *node, key, want string) {
	d.errorf(n.pos, "%s: want %s, got %s", key, want, n.kind)
}

// check reports whether n has kind k; if not, and n is not already known to
// be bad, it says so.
func (d *decoder) check(ctx, key string, n *node, k kind) bool {
	switch n.kind {
	case k:
		return true
	case kindInvalid:
		return false
	}
	d.typeError(n, ctx+": "+key, article(k))
	return false
}

func article(k kind) string {
	switch k {
	case kindInteger, kindArray, kindArrayTables:
		return "an " + k.String()
	default:
		return "a " + k.String()
	}
}

func (d *decoder) str(ctx string, dst **str) func(string, *node) {
	return func(key string, n *node) {
		if d.check(ctx, key, n, kindString) {
			*dst = &str{v: n.str, pos: n.pos}
		}
	}
}

func (d *decoder) num(ctx string, dst **num) func(string, *node) {
	return func(key string, n *node) {
		if d.check(ctx, key, n, kindInteger) {
			*dst = &num{v: n.int, pos: n.pos}
		}
	}
}

func (d *decoder) flag(ctx string, dst **flag) func(string, *node) {
	return func(key string, n *node) {
		if d.check(ctx, key, n, kindBool) {
			*dst = &flag{v: n.bool, pos: n.pos}
		}
	}
}

// strings decodes an array of strings. Elements of the wrong type are
// reported and left out.
func (d *decoder) strings(ctx string, dst **list) func(string, *node) {
	return func(key string, n *node) {
		if !d.check(ctx, key, n, kindArray) {
			return
		}
		l := &list{pos: n.pos}
		for _, it := range n.items {
			if d.check(ctx, key, it, kindString) {
				l.items = append(l.items, it)
			}
		}
		*dst = l
	}
}

// ports decodes an array of integers and strings.
func (d *decoder) ports(ctx string, dst **list) func(string, *node) {
	return func(key string, n *node) {
		if !d.check(ctx, key, n, kindArray) {
			return
		}
		l := &list{pos: n.pos}
		for _, it := range n.items {
			switch it.kind {
			case kindInteger, kindString:
				l.items = append(l.items, it)
			case kindInvalid:
			default:
				d.typeError(it, ctx+": "+key, `a port number or a "from-to" range string`)
			}
		}
		*dst = l
	}
}

// hint suggests the known key closest to a misspelt one.
func hint(key string, known []string) string {
	if len(key) > 64 {
		return ""
	}
	best, bestDist := "", 3
	for _, k := range known {
		dist := editDistance(strings.ToLower(key), k)
		if dist < bestDist && dist < len(k)/2 {
			best, bestDist = k, dist
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the optimal string alignment distance between a and b:
// the insertions, deletions, substitutions and transpositions of adjacent
// bytes that turn one into the other.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
