// Package config reads and validates nftlimitd's configuration:
// /etc/nftlimit.conf and the snippets in /etc/nftlimit.d/*.conf.
//
// Parsing is two-stage: a strict TOML decode into raw values that keep the
// position of every key, then validation into the typed Config below. Every
// problem is reported as FILE:LINE:COL: message, and all problems of a load
// are reported at once.
package config

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Default locations.
const (
	// DefaultPath is the main configuration file.
	DefaultPath = "/etc/nftlimit.conf"
	// EnvPath names the environment variable that overrides DefaultPath.
	EnvPath = "NFTLIMIT_CONFIG"
)

// Protocol is the transport protocol a limit applies to.
type Protocol string

// Protocols.
const (
	TCP Protocol = "tcp"
	UDP Protocol = "udp"
)

// Hook is the netfilter hook a limit is evaluated in.
type Hook string

// Hooks.
const (
	// Input limits connections to this host.
	Input Hook = "input"
	// Forward limits connections routed through this host.
	Forward Hook = "forward"
)

// Action is what happens to a new connection over a limit.
type Action string

// Actions.
const (
	Reject Action = "reject"
	Drop   Action = "drop"
	// Log counts (and, with Log set, logs) but lets the connection through:
	// a dry run.
	Log Action = "log"
)

// RejectWith is how a rejected connection is answered.
type RejectWith string

// Reject kinds.
const (
	TCPReset            RejectWith = "tcp-reset"
	ICMPPortUnreachable RejectWith = "icmp-port-unreachable"
	ICMPAdminProhibited RejectWith = "icmp-admin-prohibited"
)

// WhenFull says what new sources get once a limit tracks MaxSources groups.
type WhenFull string

// WhenFull values.
const (
	// FullDeny gives new sources beyond MaxSources the limit's action.
	FullDeny WhenFull = "deny"
	// FullAllow lets them through unlimited (the kernel's own behaviour).
	FullAllow WhenFull = "allow"
)

// Position is a place in a configuration file. Line and Col are 1-based.
type Position struct {
	File string
	Line int
	Col  int
}

// String formats p as FILE:LINE:COL.
func (p Position) String() string {
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// PortRange is an inclusive range of ports; a single port has From == To.
type PortRange struct {
	From uint16
	To   uint16
}

// String formats r as "22" or "8000-8080".
func (r PortRange) String() string {
	if r.From == r.To {
		return fmt.Sprint(r.From)
	}
	return fmt.Sprintf("%d-%d", r.From, r.To)
}

// Rate is a token bucket: Burst new connections at once, refilled at Count
// per Per. It is expressed in a standard unit nft can print and parse.
type Rate struct {
	// Count is how many tokens are refilled per Unit.
	Count uint64
	// Unit is one of time.Second, time.Minute, time.Hour, 24h or 7*24h.
	Unit time.Duration
	// Burst is the bucket size.
	Burst uint32
}

// Table is the [table] section.
type Table struct {
	// Name of the inet table nftlimitd owns.
	Name string
	// Priority of the base chains.
	Priority int
	// KeepOnExit leaves enforcement in the kernel when the daemon stops.
	KeepOnExit bool
}

// Limit is one validated [[limit]] with every default applied.
type Limit struct {
	// Name is unique and names the nft objects that serve the limit.
	Name string
	// Pos is where the limit's [[limit]] header stands.
	Pos Position

	Protocol Protocol
	Hook     Hook
	// Ports is sorted and has no overlaps.
	Ports []PortRange

	// MaxConnections is the number of concurrent connections a source
	// group may hold; 0 means no connection limit.
	MaxConnections int
	// Rate is the new-connection rate limit, nil for none.
	Rate *Rate
	// Ban is how long a source group that goes over Rate is banned; 0 for
	// no ban.
	Ban time.Duration
	// BanEscalate lists the ban of each offence: a source group that goes
	// over Rate again within BanWindow of its last offence gets the next,
	// longer ban, up to the last. It always holds at least Ban when Ban is
	// set; BanEscalate[0] == Ban.
	BanEscalate []time.Duration
	// BanWindow is how long offences are remembered for escalation.
	BanWindow time.Duration

	// IPv4Prefix and IPv6Prefix group sources before counting.
	IPv4Prefix int
	IPv6Prefix int

	// Exempt is every exempt prefix, from exempt and exempt_file, masked
	// to its prefix length, sorted and de-duplicated (but not merged).
	// Limits that inherit the same large exempt file may share the
	// backing array: do not modify it.
	Exempt []netip.Prefix
	// Interfaces restricts the limit to traffic arriving on these (sorted,
	// de-duplicated); nil for all.
	Interfaces []string
	// Destinations restricts the limit to these local addresses (masked,
	// sorted, de-duplicated); nil for all.
	Destinations []netip.Prefix

	Action Action
	// RejectWith is how Reject answers; it is empty for other actions.
	RejectWith RejectWith
	// Log also emits a rate-limited kernel log line when the action fires.
	Log bool

	// MaxSources bounds the tracked source groups (the sets' size).
	MaxSources int
	WhenFull   WhenFull
}

// Metrics is the optional [metrics] section.
type Metrics struct {
	// Listen is the address of the Prometheus endpoint; empty disables it.
	Listen string
}

// Config is a validated configuration.
type Config struct {
	Table   Table
	Metrics Metrics
	Limits  []Limit
	// Files lists every file read, main file first.
	Files []string
	// Warnings are problems that do not stop the configuration from being
	// applied (for example a rate rounded to a standard unit).
	Warnings ErrorList
}

// Error is one problem at one place in a configuration file.
type Error struct {
	Pos Position
	Msg string
}

// Error formats e as FILE:LINE:COL: message.
func (e *Error) Error() string {
	return e.Pos.String() + ": " + e.Msg
}

// ErrorList is every problem found in one load, in file order.
type ErrorList []*Error

// Error formats the list one problem a line.
func (l ErrorList) Error() string {
	lines := make([]string, len(l))
	for i, e := range l {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}
