// Package ruleset turns a validated nftlimitd configuration into the
// nftables objects that enforce it, renders them in nft syntax, and computes
// the smallest change that brings a table from one state to another.
//
// The package is pure: it never talks to the kernel. pkg/netlinkx translates
// its objects into netlink messages, and reads the kernel back into a Table
// for Diff.
//
// Every object nftlimitd creates is tagged so that it can be recognised
// without dumping set elements: set comments carry the limit they serve and,
// for sets whose elements come from the configuration, a fingerprint of those
// elements; rule comments carry a hash of the rule's text. Two rules with the
// same comment are the same rule.
package ruleset

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"strings"

	"github.com/nftlimitd/nftlimitd/internal/config"
)

// CommentPrefix starts the comment of every set and rule nftlimitd creates.
const CommentPrefix = "nftlimitd:"

// Family is an IP family.
type Family int

// Families.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

// SetType is the key type of a set.
type SetType string

// Set key types, named as nft names them.
const (
	TypeIPv4   SetType = "ipv4_addr"
	TypeIPv6   SetType = "ipv6_addr"
	TypePort   SetType = "inet_service"
	TypeIfname SetType = "ifname"
)

// Table is an inet table and everything in it.
type Table struct {
	Name     string
	Counters []Counter
	Sets     []Set
	Chains   []Chain
}

// Counter is a named counter object.
type Counter struct {
	Name string
	// Limit is the limit the counter serves.
	Limit string
}

// AddrRange is an inclusive range of addresses of one family.
type AddrRange struct {
	From, To netip.Addr
}

// PortMapping maps a range of ports to a jump to a chain.
type PortMapping struct {
	Ports config.PortRange
	Chain string
}

// Set is a named set or verdict map.
type Set struct {
	Name string
	Type SetType
	// Map makes the set a verdict map (from Type to jump verdicts).
	Map      bool
	Interval bool
	Dynamic  bool
	Timeout  bool
	// Size bounds the number of elements; 0 leaves it to the kernel.
	Size    uint32
	Comment string

	// Elements of static sets; dynamic sets are filled by the kernel.
	Addrs []AddrRange
	Ports []PortMapping
	Names []string

	// Limit is the limit the set serves ("" for shared dispatch maps).
	Limit string
}

// Static reports whether the set's elements come from the configuration
// (as opposed to being added by the kernel at run time).
func (s *Set) Static() bool { return !s.Dynamic }

// Chain is a chain and its rules. A chain with a Hook is a base chain.
type Chain struct {
	Name string
	// Hook is "input" or "forward" for base chains, empty otherwise.
	Hook     config.Hook
	Priority int
	Rules    []Rule
	// Limit is the limit the chain serves ("" for shared chains).
	Limit string
}

// Rule is a list of statements evaluated in order. Comment identifies the
// rule: nftlimitd's prefix, its owner and a hash of its statements and of
// the elements of the static sets it looks up. Two rules with the same
// comment are the same rule, looking up the same elements.
type Rule struct {
	Stmts   []Stmt
	Comment string
	// owner is the limit (or DispatchOwner) the rule serves.
	owner string
}

// Text renders the rule's statements and comment in nft syntax.
func (r Rule) Text() string {
	parts := make([]string, 0, len(r.Stmts)+1)
	for _, s := range r.Stmts {
		parts = append(parts, s.String())
	}
	if r.Comment != "" {
		parts = append(parts, "comment "+quote(r.Comment))
	}
	return strings.Join(parts, " ")
}

// newRule builds a rule owned by owner. Its comment is set by
// finishComments, once the static sets it looks up are known.
func newRule(owner string, stmts ...Stmt) Rule {
	return Rule{Stmts: stmts, owner: owner}
}

// finishComments sets the comment of every rule of t: a hash of its
// statements and of the fingerprints of the static sets it refers to. A
// static set's elements therefore change the comment of the rules that use
// it, never the set's own definition: the set is refilled in place (its
// comment cannot be changed without replacing it, and replacing a set that
// packets are being looked up in lets some of them through).
func finishComments(t *Table) {
	fps := map[string]string{}
	for i := range t.Sets {
		if t.Sets[i].Static() {
			fps[t.Sets[i].Name] = fingerprint(&t.Sets[i])
		}
	}
	for ci := range t.Chains {
		for ri := range t.Chains[ci].Rules {
			r := &t.Chains[ci].Rules[ri]
			r.Comment = ""
			text := r.Text()
			for _, st := range r.Stmts {
				for _, ref := range st.refs() {
					if fp, ok := fps[ref]; ok {
						text += " @" + ref + "=" + fp
					}
				}
			}
			sum := sha256.Sum256([]byte(text))
			r.Comment = CommentPrefix + r.owner + ":" + hex.EncodeToString(sum[:4])
		}
	}
}

// Set returns the set called name, or nil.
func (t *Table) Set(name string) *Set {
	for i := range t.Sets {
		if t.Sets[i].Name == name {
			return &t.Sets[i]
		}
	}
	return nil
}

// Chain returns the chain called name, or nil.
func (t *Table) Chain(name string) *Chain {
	for i := range t.Chains {
		if t.Chains[i].Name == name {
			return &t.Chains[i]
		}
	}
	return nil
}

// Counter returns the counter called name, or nil.
func (t *Table) Counter(name string) *Counter {
	for i := range t.Counters {
		if t.Counters[i].Name == name {
			return &t.Counters[i]
		}
	}
	return nil
}

func quote(s string) string {
	return `"` + s + `"`
}
