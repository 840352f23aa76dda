package config

import (
	"bufio"
	"bytes"
	"errors"
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

// sortPrefixes sorts ps (IPv4 first, then by address, then by length) and
// removes duplicates.
func sortPrefixes(ps []netip.Prefix) []netip.Prefix {
	if !slices.IsSortedFunc(ps, netip.Prefix.Compare) {
		slices.SortFunc(ps, netip.Prefix.Compare)
	}
	return slices.Compact(ps)
}

// mergePrefixes merges two sorted, de-duplicated lists into a new one.
func mergePrefixes(a, b []netip.Prefix) []netip.Prefix {
	if len(a)+len(b) == 0 {
		return nil
	}
	out := make([]netip.Prefix, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		switch c := a[0].Compare(b[0]); {
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
	var (
		out     []netip.Prefix
		nerrs   int
		lineNum int
	)
	errorf := func(line, col int, format string, args ...any) bool {
		nerrs++
		if nerrs > maxFileErrors {
			*errs = append(*errs, &Error{
				Pos: Position{File: name, Line: line, Col: col},
				Msg: fmt.Sprintf("too many errors in this exempt file, stopped after %d", maxFileErrors),
			})
			return false
		}
		*errs = append(*errs, &Error{Pos: Position{File: name, Line: line, Col: col}, Msg: fmt.Sprintf(format, args...)})
		return true
	}

	sc := bufio.NewScanner(r)
	for sc.Scan() {
		lineNum++
		line := sc.Bytes()
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
		if i := bytes.IndexAny(field, " \t"); i >= 0 {
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
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			errorf(lineNum+1, 1, "line is too long for an address or CIDR")
		} else {
			errorf(lineNum+1, 1, "read: %v", err)
		}
	}
	return sortPrefixes(out)
}

func isBlank(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r'
}
