// Package netlinkx is nftlimitd's only door to the kernel: it reads the
// table nftlimitd owns, applies a ruleset.Plan in one netlink transaction,
// probes kernel support, and removes the table. It never reads any other
// table for writing, and never changes or deletes one.
package netlinkx

import (
	"errors"
	"fmt"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"

	"github.com/nftlimitd/nftlimitd/internal/config"
	"github.com/nftlimitd/nftlimitd/pkg/ruleset"
)

// Conn talks nftables netlink in one network namespace.
type Conn struct {
	nft *nftables.Conn
	// netnsFd is the namespace of dumps (-1: the caller's).
	netnsFd int
}

// Option configures a Conn.
type Option func(*options)

type options struct {
	netnsFd int
	dial    nltest.Func
}

// WithNetNS makes the Conn work in the network namespace of the given file
// descriptor (from /run/netns/NAME or /proc/PID/ns/net) instead of the
// caller's.
func WithNetNS(fd int) Option { return func(o *options) { o.netnsFd = fd } }

// WithTestDial replaces the netlink transport, for unit tests.
func WithTestDial(f nltest.Func) Option { return func(o *options) { o.dial = f } }

// Open returns a Conn. It keeps one netlink socket open until Close.
func Open(opts ...Option) (*Conn, error) {
	o := options{netnsFd: -1}
	for _, opt := range opts {
		opt(&o)
	}
	var nopts []nftables.ConnOption
	if o.dial != nil {
		nopts = append(nopts, nftables.WithTestDial(o.dial))
	} else {
		nopts = append(nopts, nftables.AsLasting())
	}
	if o.netnsFd >= 0 {
		nopts = append(nopts, nftables.WithNetNSFd(o.netnsFd))
	}
	c, err := nftables.New(nopts...)
	if err != nil {
		return nil, fmt.Errorf("open nftables netlink: %w", err)
	}
	return &Conn{nft: c, netnsFd: o.netnsFd}, nil
}

// Close releases the netlink socket.
func (c *Conn) Close() error {
	return c.nft.CloseLasting()
}

// Read returns the table called name as the kernel holds it, in the form
// ruleset.Diff expects: sets without elements, rules with their comments
// only. It returns nil, nil when there is no such table. Set elements are
// never dumped.
func (c *Conn) Read(name string) (*ruleset.Table, error) {
	t, err := c.nft.ListTableOfFamily(name, nftables.TableFamilyINet)
	if err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("list table inet %s: %w", name, err)
	}
	out := &ruleset.Table{Name: name}

	objs, err := c.nft.GetNamedObjects(t)
	if err != nil {
		return nil, fmt.Errorf("list objects of table inet %s: %w", name, err)
	}
	for _, o := range objs {
		if n, ok := o.(*nftables.NamedObj); ok && n.Type == nftables.ObjTypeCounter {
			out.Counters = append(out.Counters, ruleset.Counter{Name: n.Name})
		}
	}

	sets, err := c.nft.GetSets(t)
	if err != nil {
		return nil, fmt.Errorf("list sets of table inet %s: %w", name, err)
	}
	for _, s := range sets {
		if s.Anonymous {
			continue
		}
		out.Sets = append(out.Sets, ruleset.Set{
			Name:     s.Name,
			Type:     ruleset.SetType(s.KeyType.Name),
			Map:      s.IsMap,
			Interval: s.Interval,
			Dynamic:  s.Dynamic,
			Timeout:  s.HasTimeout,
			Size:     s.Size,
			Comment:  s.Comment,
		})
	}

	chains, err := c.nft.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("list chains of table inet %s: %w", name, err)
	}
	comments, err := c.ruleComments(name)
	if err != nil {
		return nil, err
	}
	for _, ch := range chains {
		if ch.Table.Name != name {
			continue
		}
		rc := ruleset.Chain{Name: ch.Name}
		if ch.Hooknum != nil {
			rc.Hook = config.Hook(hookName(*ch.Hooknum))
			if ch.Priority != nil {
				rc.Priority = int(*ch.Priority)
			}
		}
		for _, comment := range comments[ch.Name] {
			rc.Rules = append(rc.Rules, ruleset.Rule{Comment: comment})
		}
		out.Chains = append(out.Chains, rc)
	}
	return out, nil
}

// ruleComments dumps every rule of table inet table in one request and
// returns their comments per chain, in rule order. Only the chain and the
// user data of each rule are decoded.
func (c *Conn) ruleComments(table string) (map[string][]string, error) {
	out := map[string][]string{}
	err := c.dump(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_GETRULE, unix.NFPROTO_INET, []netlink.Attribute{
		{Type: unix.NFTA_RULE_TABLE, Data: cstring(table)},
	}, func(m netlink.Message) error {
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return err
		}
		var chain, tbl string
		var ud []byte
		for ad.Next() {
			switch ad.Type() {
			case unix.NFTA_RULE_TABLE:
				tbl = ad.String()
			case unix.NFTA_RULE_CHAIN:
				chain = ad.String()
			case unix.NFTA_RULE_USERDATA:
				ud = ad.Bytes()
			}
		}
		if err := ad.Err(); err != nil {
			return err
		}
		if tbl == table {
			comment, _ := userdata.GetString(ud, userdata.TypeComment)
			out[chain] = append(out[chain], comment)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list rules of table inet %s: %w", table, err)
	}
	return out, nil
}

// Gen returns the ruleset's current generation.
func (c *Conn) Gen() (uint32, error) {
	g, err := c.nft.GetGen()
	if err != nil {
		return 0, fmt.Errorf("get nftables generation: %w", err)
	}
	return g.ID, nil
}

// Remove deletes the table called name, if it exists. It reports whether
// there was one.
func (c *Conn) Remove(name string) (bool, error) {
	t, err := c.nft.ListTableOfFamily(name, nftables.TableFamilyINet)
	if err != nil {
		if isNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("list table inet %s: %w", name, err)
	}
	c.nft.DelTable(t)
	if err := c.nft.Flush(); err != nil {
		if isNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("delete table inet %s: %w", name, err)
	}
	return true, nil
}

func hookName(h nftables.ChainHook) string {
	switch h {
	case *nftables.ChainHookInput:
		return "input"
	case *nftables.ChainHookForward:
		return "forward"
	case *nftables.ChainHookPrerouting:
		return "prerouting"
	case *nftables.ChainHookOutput:
		return "output"
	case *nftables.ChainHookPostrouting:
		return "postrouting"
	}
	return fmt.Sprintf("hook%d", h)
}

func isNotFound(err error) bool {
	return errors.Is(err, unix.ENOENT) || strings.Contains(err.Error(), "no such file or directory")
}
