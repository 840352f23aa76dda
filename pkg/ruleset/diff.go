package ruleset

import (
	"fmt"
	"slices"
	"strings"
)

// Plan is the change that brings a table to the desired state. pkg/netlinkx
// sends it as one transaction, in this order: create the table, flush
// chains, flush the sets to refill, delete sets, counters and chains, add
// counters, chains and sets, add the refilled sets' elements, add rules.
// Sets that are kept keep their elements: the state of the limits
// (connection counts, rate buckets, bans) lives in them. Static sets whose
// elements change are refilled in place, never replaced: replacing a set
// that packets are being looked up in lets some of them through.
type Plan struct {
	// Table is the table's name.
	Table string
	// CreateTable is set when the table does not exist yet.
	CreateTable bool
	// FlushChains lists chains whose rules are all removed.
	FlushChains []string
	// DelSets, DelCounters and DelChains list objects to delete.
	DelSets     []string
	DelCounters []string
	DelChains   []string
	// AddCounters and AddChains list objects to create.
	AddCounters []Counter
	AddChains   []Chain
	// AddSets lists sets to create, with their elements, or to declare
	// again with a new size (a set that exists keeps its elements).
	AddSets []Set
	// RefillSets lists static sets whose elements are all replaced, in
	// place, in the same transaction.
	RefillSets []Set
	// AddRules lists the chains whose rules are added, with those rules.
	AddRules []Chain
	// Changes describes the plan for people, one line a change.
	Changes []Change
}

// Change is one change to one object, for logs and `nftlimitd diff`.
type Change struct {
	// Op is "+" (add), "-" (delete) or "~" (change).
	Op string
	// Kind is "table", "set", "map", "counter" or "chain".
	Kind string
	Name string
	// Why says what differs, for changes.
	Why string
}

// String formats c as `~ set ssh_conn4: size 100 -> 200`.
func (c Change) String() string {
	s := fmt.Sprintf("%s %s %s", c.Op, c.Kind, c.Name)
	if c.Why != "" {
		s += ": " + c.Why
	}
	return s
}

// Empty reports whether the plan changes nothing.
func (p *Plan) Empty() bool { return len(p.Changes) == 0 }

// String lists the changes one a line.
func (p *Plan) String() string {
	var b strings.Builder
	for _, c := range p.Changes {
		b.WriteString(c.String())
		b.WriteString("\n")
	}
	return b.String()
}

// Diff computes the plan that turns have into want. have is the table as
// read back from the kernel: sets without elements, chains whose rules carry
// only their comments, or nil when the table does not exist.
func Diff(want, have *Table) *Plan {
	p := &Plan{Table: want.Name}
	if have == nil {
		have = &Table{Name: want.Name}
		p.CreateTable = true
		p.Changes = append(p.Changes, Change{Op: "+", Kind: "table", Name: "inet " + want.Name})
	}

	// gone lists objects that are deleted or replaced: every chain that
	// refers to one of them must be flushed first.
	gone := map[string]bool{}

	for i := range want.Sets {
		w := &want.Sets[i]
		h := have.Set(w.Name)
		switch {
		case h == nil:
			p.AddSets = append(p.AddSets, *w)
			p.Changes = append(p.Changes, Change{Op: "+", Kind: setKind(w), Name: w.Name})
		case sameSet(w, h) && w.Static() && usersChanged(want, have, w.Name):
			p.RefillSets = append(p.RefillSets, *w)
			p.Changes = append(p.Changes, Change{Op: "~", Kind: setKind(w), Name: w.Name, Why: "elements changed"})
		case sameSet(w, h):
		case w.Dynamic && sameSetBut(w, h):
			// Declaring a set again with a new size updates it in place and
			// keeps its elements.
			p.AddSets = append(p.AddSets, *w)
			p.Changes = append(p.Changes, Change{Op: "~", Kind: setKind(w), Name: w.Name,
				Why: fmt.Sprintf("size %d -> %d", h.Size, w.Size)})
		default:
			gone[w.Name] = true
			p.DelSets = append(p.DelSets, w.Name)
			p.AddSets = append(p.AddSets, *w)
			p.Changes = append(p.Changes, Change{Op: "~", Kind: setKind(w), Name: w.Name, Why: setWhy(w, h)})
		}
	}
	for i := range have.Sets {
		h := &have.Sets[i]
		if want.Set(h.Name) == nil {
			gone[h.Name] = true
			p.DelSets = append(p.DelSets, h.Name)
			p.Changes = append(p.Changes, Change{Op: "-", Kind: setKind(h), Name: h.Name})
		}
	}

	for _, c := range want.Counters {
		if have.Counter(c.Name) == nil {
			p.AddCounters = append(p.AddCounters, c)
			p.Changes = append(p.Changes, Change{Op: "+", Kind: "counter", Name: c.Name})
		}
	}
	for _, c := range have.Counters {
		if want.Counter(c.Name) == nil {
			gone[c.Name] = true
			p.DelCounters = append(p.DelCounters, c.Name)
			p.Changes = append(p.Changes, Change{Op: "-", Kind: "counter", Name: c.Name})
		}
	}

	for _, h := range have.Chains {
		if want.Chain(h.Name) == nil {
			gone[h.Name] = true
			p.FlushChains = append(p.FlushChains, h.Name)
			p.DelChains = append(p.DelChains, h.Name)
			p.Changes = append(p.Changes, Change{Op: "-", Kind: "chain", Name: h.Name})
		}
	}
	for _, w := range want.Chains {
		h := have.Chain(w.Name)
		switch {
		case h == nil:
			p.AddChains = append(p.AddChains, w)
			p.AddRules = append(p.AddRules, w)
			p.Changes = append(p.Changes, Change{Op: "+", Kind: "chain", Name: w.Name})
		case h.Hook != w.Hook || (w.Hook != "" && h.Priority != w.Priority):
			// A base chain's hook and priority cannot be changed in place.
			p.FlushChains = append(p.FlushChains, w.Name)
			p.DelChains = append(p.DelChains, w.Name)
			p.AddChains = append(p.AddChains, w)
			p.AddRules = append(p.AddRules, w)
			p.Changes = append(p.Changes, Change{Op: "~", Kind: "chain", Name: w.Name,
				Why: fmt.Sprintf("hook %s priority %d -> hook %s priority %d", hookName(h), h.Priority, hookName(&w), w.Priority)})
		case !slices.Equal(comments(h.Rules), comments(w.Rules)):
			p.FlushChains = append(p.FlushChains, w.Name)
			p.AddRules = append(p.AddRules, w)
			p.Changes = append(p.Changes, Change{Op: "~", Kind: "chain", Name: w.Name, Why: "rules changed"})
		case refersTo(w, gone):
			// Its rules are the same, but an object they use is replaced.
			p.FlushChains = append(p.FlushChains, w.Name)
			p.AddRules = append(p.AddRules, w)
		}
	}
	return p
}

// usersChanged reports whether a rule that looks up set in want has a
// comment that its chain in have lacks: the comment carries the
// fingerprint of the set's elements, so the elements changed (or the rule
// did, which costs a refill that was not needed, but is as correct).
func usersChanged(want, have *Table, set string) bool {
	for _, w := range want.Chains {
		h := have.Chain(w.Name)
		for _, r := range w.Rules {
			if !refers(r, set) {
				continue
			}
			if h == nil || !slices.Contains(comments(h.Rules), r.Comment) {
				return true
			}
		}
	}
	return false
}

func refers(r Rule, name string) bool {
	for _, s := range r.Stmts {
		if slices.Contains(s.refs(), name) {
			return true
		}
	}
	return false
}

func comments(rs []Rule) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Comment
	}
	return out
}

func refersTo(c Chain, names map[string]bool) bool {
	for _, r := range c.Rules {
		for _, s := range r.Stmts {
			for _, ref := range s.refs() {
				if names[ref] {
					return true
				}
			}
		}
	}
	return false
}

func setKind(s *Set) string {
	if s.Map {
		return "map"
	}
	return "set"
}

func hookName(c *Chain) string {
	if c.Hook == "" {
		return "none"
	}
	return string(c.Hook)
}

// sameSet compares definitions: elements are compared through the
// fingerprint in the comment of static sets.
func sameSet(a, b *Set) bool {
	return sameSetBut(a, b) && a.Size == b.Size
}

// sameSetBut compares definitions but for the size.
func sameSetBut(a, b *Set) bool {
	return a.Type == b.Type && a.Map == b.Map && a.Interval == b.Interval &&
		a.Dynamic == b.Dynamic && a.Timeout == b.Timeout && a.Comment == b.Comment
}

func setWhy(w, h *Set) string {
	switch {
	case w.Type != h.Type || w.Map != h.Map:
		return fmt.Sprintf("type %s -> %s", h.Type, w.Type)
	case w.Interval != h.Interval || w.Dynamic != h.Dynamic || w.Timeout != h.Timeout:
		return "flags changed"
	}
	return "definition changed"
}
