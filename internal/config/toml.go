package config

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/pelletier/go-toml/v2/unstable"
)

// This file is the first half of stage one: a strict TOML parse into a
// generic tree that remembers where every key and value stands. go-toml's
// unstable parser checks the syntax; the rules it leaves to its callers
// (duplicate keys, tables defined twice, dotted keys that reopen tables) are
// checked here.

// kind is the type of a node in the tree.
type kind int

const (
	kindInvalid kind = iota // a value already reported as an error
	kindString
	kindInteger
	kindFloat
	kindBool
	kindDatetime
	kindArray
	kindTable
	kindArrayTables // [[x]]: items are tables
)

// String names k as messages about types do.
func (k kind) String() string {
	switch k {
	case kindString:
		return "string"
	case kindInteger:
		return "integer"
	case kindFloat:
		return "float"
	case kindBool:
		return "boolean"
	case kindDatetime:
		return "date or time"
	case kindArray:
		return "array"
	case kindTable:
		return "table"
	case kindArrayTables:
		return "array of tables"
	default:
		return "invalid value"
	}
}

// how says how a table came to be, which decides whether it may be extended.
type how int

const (
	// implicit tables are intermediates of a header ([a] in [a.b]).
	implicit how = iota
	// header tables are defined by [a] or are one element of [[a]].
	header
	// dotted tables are created by a dotted key (a in a.b = 1).
	dotted
	// inline tables ({...}) are complete as written.
	inline
)

// rootName is how messages name the root table.
const rootName = "top level"

// node is a TOML value, table or array of tables with its position.
type node struct {
	kind kind
	// keyPos is where the key that names the node stands: the header for a
	// table defined by one.
	keyPos Position
	// pos is where the value starts: the header for tables and [[x]].
	pos Position

	str   string // kindString
	int   int64  // kindInteger
	bool  bool   // kindBool
	items []*node

	// Tables: keys in the order they were defined.
	how    how
	name   string // for messages: "[table]", "[[limit]]", "top level"
	keys   []string
	fields map[string]*node
}

func newTable(h how, name string, pos Position) *node {
	return &node{kind: kindTable, how: h, name: name, keyPos: pos, pos: pos, fields: map[string]*node{}}
}

func (n *node) add(key string, child *node) {
	n.keys = append(n.keys, key)
	n.fields[key] = child
}

// source is one file's bytes and an index of its lines, to turn byte offsets
// into positions.
type source struct {
	name  string
	data  []byte
	lines []int // offset of the start of each line

	// The last position computed: positions are mostly asked for in
	// order, and counting from there keeps a long line from costing
	// quadratic time.
	lastOff  int
	lastLine int
	lastCol  int
}

func newSource(name string, data []byte) *source {
	// A UTF-8 byte order mark is not part of the document.
	data = bytes.TrimPrefix(data, []byte("\uFEFF"))
	lines := []int{0}
	for i, c := range data {
		if c == '\n' {
			lines = append(lines, i+1)
		}
	}
	return &source{name: name, data: data, lines: lines}
}

// pos turns a byte offset into a position; columns count characters.
func (s *source) pos(offset int) Position {
	offset = max(0, min(offset, len(s.data)))
	line := sort.Search(len(s.lines), func(i int) bool { return s.lines[i] > offset })
	from, col := s.lines[line-1], 1
	if line == s.lastLine && offset >= s.lastOff {
		from, col = s.lastOff, s.lastCol
	}
	col += utf8.RuneCount(s.data[from:offset])
	s.lastOff, s.lastLine, s.lastCol = offset, line, col
	return Position{File: s.name, Line: line, Col: col}
}

// offsetOf returns where b, a subslice of the data, starts.
func (s *source) offsetOf(b []byte) int {
	return cap(s.data) - cap(b)
}

// parser builds the tree of one file.
type parser struct {
	src  *source
	p    unstable.Parser
	root *node
	cur  *node // the table that key/values go into
	errs *ErrorList
}

// parseTOML parses one file into a tree. Problems are added to errs; the
// tree is nil when the file is not valid TOML.
func parseTOML(src *source, errs *ErrorList) *node {
	p := &parser{src: src, errs: errs}
	p.root = newTable(header, rootName, src.pos(0))
	p.cur = p.root
	p.p.Reset(src.data)
	for p.p.NextExpression() {
		e := p.p.Expression()
		switch e.Kind {
		case unstable.Table:
			p.header(e, false)
		case unstable.ArrayTable:
			p.header(e, true)
		case unstable.KeyValue:
			p.keyValue(p.cur, e)
		}
	}
	if err := p.p.Error(); err != nil {
		pos := src.pos(len(src.data))
		var perr *unstable.ParserError
		if errors.As(err, &perr) {
			pos = src.pos(src.offsetOf(perr.Highlight))
		}
		p.errorf(pos, "%s", err.Error())
		return nil
	}
	return p.root
}

func (p *parser) errorf(pos Position, format string, args ...any) {
	*p.errs = append(*p.errs, &Error{Pos: pos, Msg: fmt.Sprintf(format, args...)})
}

// keyPart is one part of a possibly dotted key.
type keyPart struct {
	name string
	pos  Position
	off  int // where the key starts in the source
	end  int // just after the key
}

func (p *parser) keyParts(it unstable.Iterator) []keyPart {
	var parts []keyPart
	for it.Next() {
		k := it.Node()
		off := int(k.Raw.Offset)
		parts = append(parts, keyPart{
			name: string(k.Data),
			pos:  p.src.pos(off),
			off:  off,
			end:  off + int(k.Raw.Length),
		})
	}
	return parts
}

// headerName formats a header for messages: [a.b] or [[a.b]].
func headerName(parts []keyPart, array bool) string {
	var b bytes.Buffer
	for i, k := range parts {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(k.name)
	}
	if array {
		return "[[" + b.String() + "]]"
	}
	return "[" + b.String() + "]"
}

// header handles [a.b] and [[a.b]].
func (p *parser) header(e *unstable.Node, array bool) {
	parts := p.keyParts(e.Key())
	name := headerName(parts, array)

	// The unstable parser keeps no range for headers: step back from the
	// first key over blanks and the opening brackets.
	off := parts[0].off
	for off > 0 && (p.src.data[off-1] == ' ' || p.src.data[off-1] == '\t') {
		off--
	}
	for i := 0; i < 2 && off > 0 && p.src.data[off-1] == '['; i++ {
		off--
		if !array {
			break
		}
	}
	pos := p.src.pos(off)

	// A table that cannot be defined still gets its keys parsed, into a
	// table that belongs to nothing, so that they are not reported as
	// belonging to the previous table.
	p.cur = newTable(header, name, pos)

	t := p.root
	for _, k := range parts[:len(parts)-1] {
		child := t.fields[k.name]
		switch {
		case child == nil:
			child = newTable(implicit, childName(t, k.name), k.pos)
			t.add(k.name, child)
		case child.kind == kindArrayTables:
			child = child.items[len(child.items)-1]
		case child.kind == kindTable && child.how != inline:
		default:
			p.errorf(k.pos, "%s: key %q is already defined as a %s at %s", name, k.name, kindName(child), child.keyPos)
			return
		}
		t = child
	}

	last := parts[len(parts)-1]
	child := t.fields[last.name]
	if array {
		switch {
		case child == nil:
			child = &node{kind: kindArrayTables, keyPos: pos, pos: pos}
			t.add(last.name, child)
		case child.kind == kindArrayTables:
		default:
			p.errorf(pos, "%s: key %q is already defined as a %s at %s", name, last.name, kindName(child), child.keyPos)
			return
		}
		child.items = append(child.items, p.cur)
		return
	}
	switch {
	case child == nil:
		t.add(last.name, p.cur)
	case child.kind == kindTable && child.how == implicit:
		// [a.b] came first; now [a] is defined.
		child.how, child.name, child.keyPos, child.pos = header, name, pos, pos
		p.cur = child
	case child.kind == kindTable:
		p.errorf(pos, "table %s is already defined at %s", name, child.keyPos)
	default:
		p.errorf(pos, "%s: key %q is already defined as a %s at %s", name, last.name, kindName(child), child.keyPos)
	}
}

// childName names the table key in parent for messages: [a.b].
func childName(parent *node, key string) string {
	if parent.name == rootName {
		return "[" + key + "]"
	}
	return "[" + strings.Trim(parent.name, "[]") + "." + key + "]"
}

// kindName describes a node for "already defined as a ..." messages.
func kindName(n *node) string {
	if n.kind == kindTable && n.how == inline {
		return "inline table"
	}
	if n.kind == kindTable {
		return "table"
	}
	return "value"
}

// keyValue handles key = value, possibly dotted, into table t.
func (p *parser) keyValue(t *node, e *unstable.Node) {
	parts := p.keyParts(e.Key())
	for _, k := range parts[:len(parts)-1] {
		child := t.fields[k.name]
		switch {
		case child == nil:
			child = newTable(dotted, childName(t, k.name), k.pos)
			t.add(k.name, child)
		case child.kind == kindTable && child.how == dotted:
		default:
			p.errorf(k.pos, "%s: cannot add to key %q with a dotted key: it is defined as a %s at %s", t.name, k.name, kindName(child), child.keyPos)
			return
		}
		t = child
	}
	last := parts[len(parts)-1]
	if prev, ok := t.fields[last.name]; ok {
		p.errorf(last.pos, "duplicate key %q in %s: first defined at %s", last.name, t.name, prev.keyPos)
		return
	}
	v := e.Value()
	n := p.value(v, p.valueStart(last.end), t, last.name)
	n.keyPos = last.pos
	t.add(last.name, n)
}

// valueStart finds the value after a key that ends at offset end: the
// unstable parser keeps no range for arrays.
func (p *parser) valueStart(end int) int {
	data := p.src.data
	i := end
	for i < len(data) && (data[i] == ' ' || data[i] == '\t') {
		i++
	}
	if i < len(data) && data[i] == '=' {
		i++
	}
	for i < len(data) && (data[i] == ' ' || data[i] == '\t') {
		i++
	}
	return i
}

// value converts a value node. start is where the value stands when the
// node has no range of its own (arrays).
func (p *parser) value(v *unstable.Node, start int, parent *node, name string) *node {
	n := &node{}
	if v.Kind == unstable.Array {
		n.pos = p.src.pos(start)
	} else {
		n.pos = p.src.pos(int(v.Raw.Offset))
	}
	switch v.Kind {
	case unstable.String:
		n.kind, n.str = kindString, string(v.Data)
	case unstable.Integer:
		i, err := strconv.ParseInt(string(v.Data), 0, 64)
		if err != nil {
			p.errorf(n.pos, "%s: integer %s is out of range", name, v.Data)
			return n // kindInvalid
		}
		n.kind, n.int = kindInteger, i
	case unstable.Float:
		n.kind = kindFloat
	case unstable.Bool:
		n.kind, n.bool = kindBool, string(v.Data) == "true"
	case unstable.LocalDate, unstable.LocalTime, unstable.LocalDateTime, unstable.DateTime:
		n.kind = kindDatetime
	case unstable.Array:
		n.kind = kindArray
		it := v.Children()
		for it.Next() {
			c := it.Node()
			// A nested array has no range either: use its first
			// element, or the outer array.
			cstart := start
			if c.Kind != unstable.Array {
				cstart = int(c.Raw.Offset)
			} else if first := c.Child(); first != nil && first.Kind != unstable.Array {
				cstart = int(first.Raw.Offset)
			}
			n.items = append(n.items, p.value(c, cstart, parent, name))
		}
	case unstable.InlineTable:
		t := newTable(inline, childName(parent, name), n.pos)
		it := v.Children()
		for it.Next() {
			if c := it.Node(); c.Kind == unstable.KeyValue {
				p.keyValue(t, c)
			}
		}
		return t
	}
	return n
}
