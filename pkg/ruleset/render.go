package ruleset

import (
	"fmt"
	"net/netip"
	"strings"
)

// Render prints t in nft syntax, in the layout `nft list table` uses, so
// that `nft -c -f -` accepts it and a listing of the applied table matches
// it but for counter values and set elements.
func Render(t *Table) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", t.Name)
	first := true
	block := func() {
		if !first {
			b.WriteString("\n")
		}
		first = false
	}
	for _, c := range t.Counters {
		block()
		fmt.Fprintf(&b, "\tcounter %s {\n\t\tpackets 0 bytes 0\n\t}\n", c.Name)
	}
	for i := range t.Sets {
		block()
		writeSet(&b, &t.Sets[i], "\t")
	}
	for _, c := range t.Chains {
		block()
		fmt.Fprintf(&b, "\tchain %s {\n", c.Name)
		if c.Hook != "" {
			fmt.Fprintf(&b, "\t\ttype filter hook %s priority %s; policy accept;\n", c.Hook, PriorityString(c.Priority))
		}
		for _, r := range c.Rules {
			fmt.Fprintf(&b, "\t\t%s\n", r.Text())
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// writeSet prints one set or map, indented by indent.
func writeSet(b *strings.Builder, s *Set, indent string) {
	kind, typ := "set", string(s.Type)
	if s.Map {
		kind, typ = "map", typ+" : verdict"
	}
	fmt.Fprintf(b, "%s%s %s {\n", indent, kind, s.Name)
	in := indent + "\t"
	fmt.Fprintf(b, "%stype %s\n", in, typ)
	if s.Size > 0 {
		fmt.Fprintf(b, "%ssize %d\n", in, s.Size)
	}
	var flags []string
	if s.Interval {
		flags = append(flags, "interval")
	}
	if s.Dynamic {
		flags = append(flags, "dynamic")
	}
	if s.Timeout {
		flags = append(flags, "timeout")
	}
	if len(flags) > 0 {
		fmt.Fprintf(b, "%sflags %s\n", in, strings.Join(flags, ","))
	}
	if s.Comment != "" {
		fmt.Fprintf(b, "%scomment %s\n", in, quote(s.Comment))
	}
	elems := Elements(s)
	if len(elems) > 0 {
		fmt.Fprintf(b, "%selements = { %s }\n", in, strings.Join(elems, ",\n"+in+"\t     "))
	}
	fmt.Fprintf(b, "%s}\n", indent)
}

// Elements renders the elements of a static set in nft syntax.
func Elements(s *Set) []string {
	var out []string
	for _, r := range s.Addrs {
		out = append(out, r.String())
	}
	for _, m := range s.Ports {
		out = append(out, fmt.Sprintf("%s : jump %s", m.Ports, m.Chain))
	}
	for _, n := range s.Names {
		out = append(out, quote(n))
	}
	return out
}

// String prints r as an address, a prefix, or from-to.
func (r AddrRange) String() string {
	if r.From == r.To {
		return r.From.String()
	}
	for bits := 0; bits <= r.From.BitLen(); bits++ {
		p := netip.PrefixFrom(r.From, bits)
		if p.Masked().Addr() == r.From && lastAddr(p) == r.To {
			return p.String()
		}
	}
	return r.From.String() + "-" + r.To.String()
}

// PriorityString prints a filter chain priority as nft does: by the name of
// a standard priority when it is within 10 of one.
func PriorityString(p int) string {
	for _, std := range []struct {
		name string
		val  int
	}{{"raw", -300}, {"mangle", -150}, {"filter", 0}, {"security", 50}} {
		off := p - std.val
		switch {
		case off == 0:
			return std.name
		case off > 0 && off <= 10:
			return fmt.Sprintf("%s + %d", std.name, off)
		case off < 0 && off >= -10:
			return fmt.Sprintf("%s - %d", std.name, -off)
		}
	}
	return fmt.Sprint(p)
}
