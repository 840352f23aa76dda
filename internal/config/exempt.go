package config

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"unicode/utf8"
)

// maxFileErrors bounds the problems reported for one exempt file: a file
// that is not an address list at all should not bury the other errors.
const maxFileErrors = 20

// parsePrefix parses an address or a CIDR, as exempt and destinations hold
// them. An address becomes a /32 or /128. A CIDR with host bits set is an
// error: it is most likely a typo, and the message suggests the masked form.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.IndexByte(s, '/') < 0 {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR: %s", s, reason(err))
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q: addresses with a zone are not allowed", s)
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR: %s", s, reason(err))
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("%q has host bits set: did you mean %q?", s, m.String())
	}
	return p, nil
}

// reason strips the function name and input that net/netip puts in front of
// its errors: `netip.ParseAddr("x"): unable to parse IP` becomes
// `unable to parse IP`.
func reason(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, "): "); i >= 0 {
		return msg[i+3:]
	}
	return msg
}

// comparePrefixes orders masked prefixes: IPv4 first, then by address, then
// by length. It is netip.Prefix.Compare without the masking.
func comparePrefixes(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

// sortPrefixes sorts masked prefixes (see comparePrefixes) and removes
// duplicates. Addresses with a zone must not be among them.
//
// Sorting a million netip.Prefix values with a comparison function takes
// most of the time of loading a large exempt file, so the prefixes are
// sorted as plain integers instead: an IPv4 prefix as one uint64 (address,
// then length), an IPv6 prefix as a pair.
func sortPrefixes(ps []netip.Prefix) []netip.Prefix {
	if slices.IsSortedFunc(ps, comparePrefixes) {
		return slices.Compact(ps)
	}
	type key6 struct {
		hi, lo uint64
		bits   int
	}
	v4 := make([]uint64, 0, len(ps))
	var v6 []key6
	for _, p := range ps {
		a := p.Addr()
		if a.Is4() {
			b := a.As4()
			v4 = append(v4, uint64(binary.BigEndian.Uint32(b[:]))<<8|uint64(p.Bits()))
			continue
		}
		b := a.As16()
		v6 = append(v6, key6{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:]), p.Bits()})
	}
	slices.Sort(v4)
	slices.SortFunc(v6, func(a, b key6) int {
		return cmp.Or(cmp.Compare(a.hi, b.hi), cmp.Compare(a.lo, b.lo), cmp.Compare(a.bits, b.bits))
	})
	v4, v6 = slices.Compact(v4), slices.Compact(v6)

	ps = ps[:0]
	for _, k := range v4 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(k>>8))
		ps = append(ps, netip.PrefixFrom(netip.AddrFrom4(b), int(k&0xff)))
	}
	for _, k := range v6 {
		var b [16]byte
		binary.BigEndian.PutUint64(b[:8], k.hi)
		binary.BigEndian.PutUint64(b[8:], k.lo)
		ps = append(ps, netip.PrefixFrom(netip.AddrFrom16(b), k.bits))
	}
	return ps
}

// mergePrefixes merges two sorted, de-duplicated lists. When one is empty,
// the result is the other, clipped so that an append cannot write into it:
// limits that inherit a large exempt file share one list.
func mergePrefixes(a, b []netip.Prefix) []netip.Prefix {
	switch {
	case len(a) == 0 && len(b) == 0:
		return nil
	case len(a) == 0:
		return slices.Clip(b)
	case len(b) == 0:
		return slices.Clip(a)
	}
	out := make([]netip.Prefix, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		switch c := comparePrefixes(a[0], b[0]); {
		case c < 0:
			out, a = append(out, a[0]), a[1:]
		case c > 0:
			out, b = append(out, b[0]), b[1:]
		default:
			out, a, b = append(out, a[0]), a[1:], b[1:]
		}
	}
	out = append(out, a...)
	return append(out, b...)
}

// readExemptFile reads one address or CIDR a line. '#' starts a comment;
// blank lines are ignored. Problems are reported at their line and column
// in the file named name. The result is sorted and de-duplicated.
func readExemptFile(name string, r io.Reader, errs *ErrorList) []netip.Prefix {
	data, err := io.ReadAll(r)
	if err != nil {
		*errs = append(*errs, &Error{Pos: Position{File: name, Line: 1, Col: 1}, Msg: fmt.Sprintf("read: %v", err)})
		return nil
	}
	var (
		out   = make([]netip.Prefix, 0, bytes.Count(data, []byte{'\n'})+1)
		nerrs int
	)
	errorf := func(line, col int, format string, args ...any) bool {
		pos := Position{File: name, Line: line, Col: col}
		nerrs++
		if nerrs > maxFileErrors {
			*errs = append(*errs, &Error{Pos: pos, Msg: fmt.Sprintf("too many errors in this exempt file, stopped after %d", maxFileErrors)})
			return false
		}
		*errs = append(*errs, &Error{Pos: pos, Msg: fmt.Sprintf(format, args...)})
		return true
	}

	for lineNum := 1; len(data) > 0; lineNum++ {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if i := bytes.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		start, end := 0, len(line)
		for start < end && isBlank(line[start]) {
			start++
		}
		for end > start && isBlank(line[end-1]) {
			end--
		}
		if start == end {
			continue
		}
		field := line[start:end]
		col := utf8.RuneCount(line[:start]) + 1
		if bytes.ContainsAny(field, " \t") {
			if !errorf(lineNum, col, "want one address or CIDR a line, got %q", field) {
				return nil
			}
			continue
		}
		p, err := parsePrefix(string(field))
		if err != nil {
			if !errorf(lineNum, col, "%s", err) {
				return nil
			}
			continue
		}
		out = append(out, p)
	}
	return sortPrefixes(out)
}

func isBlank(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r'
}
