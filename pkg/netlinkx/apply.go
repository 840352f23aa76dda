package netlinkx

import (
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"

	"github.com/nftlimitd/nftlimitd/internal/config"
	"github.com/nftlimitd/nftlimitd/pkg/ruleset"
)

// maxAttempts bounds how often Apply starts over when another process
// changed the ruleset between its read and its commit.
const maxAttempts = 5

// Apply brings the kernel's table to want in one transaction and returns the
// plan it applied (empty when the kernel already matched). The transaction
// is bound to the generation the table was read at: when anyone else changes
// the ruleset in between, the kernel refuses it (ERESTART) and Apply reads
// again and retries.
func (c *Conn) Apply(want *ruleset.Table) (*ruleset.Plan, error) {
	plan, _, err := c.ApplyGen(want, nil)
	return plan, err
}

// ApplyGen is Apply that also returns the generation of the ruleset at
// which the kernel's table equals want: the one it read when there was
// nothing to change, or the one its own transaction made. When there is
// something to change, before (if not nil) is called just before the
// transaction is sent.
func (c *Conn) ApplyGen(want *ruleset.Table, before func()) (*ruleset.Plan, uint32, error) {
	var lastErr error
	for attempt := 0; attempt < maxAttempts; attempt++ {
		gen, err := c.Gen()
		if err != nil {
			return nil, 0, err
		}
		have, err := c.Read(want.Name)
		if err != nil {
			return nil, 0, err
		}
		plan := ruleset.Diff(want, have)
		if plan.Empty() {
			return plan, gen, nil
		}
		if err := c.queue(plan); err != nil {
			return nil, 0, err
		}
		if before != nil {
			before()
		}
		err = c.nft.FlushWithGenID(gen)
		if err == nil {
			// Every commit moves the generation on by one.
			return plan, gen + 1, nil
		}
		if errors.Is(err, unix.ERESTART) {
			lastErr = err
			continue
		}
		return nil, 0, fmt.Errorf("apply table inet %s: %w", want.Name, err)
	}
	return nil, 0, fmt.Errorf("apply table inet %s: ruleset kept changing under us: %w", want.Name, lastErr)
}

// Plan computes what Apply would change now, without changing anything.
func (c *Conn) Plan(want *ruleset.Table) (*ruleset.Plan, error) {
	have, err := c.Read(want.Name)
	if err != nil {
		return nil, err
	}
	return ruleset.Diff(want, have), nil
}

// queue adds the plan's messages to the pending batch, in the order the
// kernel needs: references are dropped before what they refer to is
// deleted, and created before they are used.
func (c *Conn) queue(p *ruleset.Plan) error {
	t := &nftables.Table{Name: p.Table, Family: nftables.TableFamilyINet}
	c.nft.AddTable(t)

	for _, name := range p.FlushChains {
		c.nft.FlushChain(&nftables.Chain{Name: name, Table: t})
	}
	// Emptied before chains are deleted: map elements jump to chains.
	for i := range p.RefillSets {
		c.nft.FlushSet(set(t, &p.RefillSets[i]))
	}
	for _, name := range p.DelSets {
		c.nft.DelSet(&nftables.Set{Name: name, Table: t})
	}
	for _, name := range p.DelCounters {
		c.nft.DeleteObject(&nftables.NamedObj{Table: t, Name: name, Type: nftables.ObjTypeCounter, Obj: &expr.Counter{}})
	}
	for _, name := range p.DelChains {
		c.nft.DelChain(&nftables.Chain{Name: name, Table: t})
	}

	for _, ct := range p.AddCounters {
		c.nft.AddObj(&nftables.NamedObj{Table: t, Name: ct.Name, Type: nftables.ObjTypeCounter, Obj: &expr.Counter{}})
	}
	for _, ch := range p.AddChains {
		c.nft.AddChain(chain(t, &ch))
	}
	// Sets created in this batch are referred to by their transaction ID.
	created := map[string]*nftables.Set{}
	for i := range p.AddSets {
		s := &p.AddSets[i]
		ns := set(t, s)
		elems, err := elements(s)
		if err != nil {
			return fmt.Errorf("add %s inet %s %s: %w", kind(s), p.Table, s.Name, err)
		}
		if err := c.nft.AddSet(ns, elems); err != nil {
			return fmt.Errorf("add %s inet %s %s: %w", kind(s), p.Table, s.Name, err)
		}
		created[s.Name] = ns
	}
	for i := range p.RefillSets {
		s := &p.RefillSets[i]
		elems, err := elements(s)
		if err == nil {
			err = c.nft.SetAddElements(set(t, s), elems)
		}
		if err != nil {
			return fmt.Errorf("refill %s inet %s %s: %w", kind(s), p.Table, s.Name, err)
		}
	}
	for _, ch := range p.AddRules {
		nc := &nftables.Chain{Name: ch.Name, Table: t}
		for _, r := range ch.Rules {
			exprs, err := exprsOf(r, created)
			if err != nil {
				return fmt.Errorf("add rule to chain inet %s %s: %w", p.Table, ch.Name, err)
			}
			c.nft.AddRule(&nftables.Rule{
				Table:    t,
				Chain:    nc,
				Exprs:    exprs,
				UserData: userdata.AppendString(nil, userdata.TypeComment, r.Comment),
			})
		}
	}
	return nil
}

func kind(s *ruleset.Set) string {
	if s.Map {
		return "map"
	}
	return "set"
}

func chain(t *nftables.Table, c *ruleset.Chain) *nftables.Chain {
	nc := &nftables.Chain{Name: c.Name, Table: t}
	if c.Hook != "" {
		hook := nftables.ChainHookInput
		if c.Hook == config.Forward {
			hook = nftables.ChainHookForward
		}
		prio := nftables.ChainPriority(int32(c.Priority))
		policy := nftables.ChainPolicyAccept
		nc.Hooknum = hook
		nc.Priority = &prio
		nc.Type = nftables.ChainTypeFilter
		nc.Policy = &policy
	}
	return nc
}

func set(t *nftables.Table, s *ruleset.Set) *nftables.Set {
	ns := &nftables.Set{
		Table:      t,
		Name:       s.Name,
		Interval:   s.Interval,
		Dynamic:    s.Dynamic,
		HasTimeout: s.Timeout,
		Size:       s.Size,
		Comment:    s.Comment,
		IsMap:      s.Map,
	}
	switch s.Type {
	case ruleset.TypeIPv4:
		ns.KeyType = nftables.TypeIPAddr
	case ruleset.TypeIPv6:
		ns.KeyType = nftables.TypeIP6Addr
	case ruleset.TypePort:
		ns.KeyType = nftables.TypeInetService
	case ruleset.TypeIfname:
		ns.KeyType = nftables.TypeIFName
	}
	if s.Map {
		ns.DataType = nftables.TypeVerdict
	}
	switch {
	case s.Type == ruleset.TypeIfname:
		// nft keeps interface names in host byte order.
		ns.KeyByteOrder = binaryutil.NativeEndian
	case s.Interval:
		ns.KeyByteOrder = binaryutil.BigEndian
	}
	return ns
}

// elements encodes a static set's elements. Intervals are a start element
// and an end element one past the last address or port; a range that ends
// at the last one is open.
func elements(s *ruleset.Set) ([]nftables.SetElement, error) {
	var out []nftables.SetElement
	for _, r := range s.Addrs {
		out = append(out, nftables.SetElement{Key: r.From.AsSlice()})
		if next := r.To.Next(); next.IsValid() {
			out = append(out, nftables.SetElement{Key: next.AsSlice(), IntervalEnd: true})
		} else {
			out[len(out)-1].IntervalOpen = true
		}
	}
	for _, m := range s.Ports {
		out = append(out, nftables.SetElement{
			Key:         binaryutil.BigEndian.PutUint16(m.Ports.From),
			VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: m.Chain},
		})
		if m.Ports.To < 0xffff {
			out = append(out, nftables.SetElement{Key: binaryutil.BigEndian.PutUint16(m.Ports.To + 1), IntervalEnd: true})
		} else {
			out[len(out)-1].IntervalOpen = true
		}
	}
	for _, n := range s.Names {
		if len(n) >= unix.IFNAMSIZ {
			return nil, fmt.Errorf("interface name %q too long", n)
		}
		key := make([]byte, unix.IFNAMSIZ)
		copy(key, n)
		out = append(out, nftables.SetElement{Key: key})
	}
	return out, nil
}
