package netlinkx

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// ErrNotInSet is returned by DeleteElement when the set does not hold the
// element.
var ErrNotInSet = errors.New("not in the set")

// AddElement adds addr to a set with timeouts in table inet table, to
// expire after timeout. An element that is already there keeps its timeout.
func (c *Conn) AddElement(table, set string, addr netip.Addr, timeout time.Duration) error {
	s := &nftables.Set{Table: &nftables.Table{Name: table, Family: nftables.TableFamilyINet}, Name: set, HasTimeout: true}
	if err := c.nft.SetAddElements(s, []nftables.SetElement{{Key: addr.AsSlice(), Timeout: timeout}}); err != nil {
		return fmt.Errorf("add %s to set inet %s %s: %w", addr, table, set, err)
	}
	if err := c.nft.Flush(); err != nil {
		return fmt.Errorf("add %s to set inet %s %s: %w", addr, table, set, err)
	}
	return nil
}

// DeleteElement removes addr from a set in table inet table. It returns
// ErrNotInSet when the set does not hold it.
func (c *Conn) DeleteElement(table, set string, addr netip.Addr) error {
	s := &nftables.Set{Table: &nftables.Table{Name: table, Family: nftables.TableFamilyINet}, Name: set}
	if err := c.nft.SetDeleteElements(s, []nftables.SetElement{{Key: addr.AsSlice()}}); err != nil {
		return fmt.Errorf("delete %s from set inet %s %s: %w", addr, table, set, err)
	}
	if err := c.nft.Flush(); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return ErrNotInSet
		}
		return fmt.Errorf("delete %s from set inet %s %s: %w", addr, table, set, err)
	}
	return nil
}

// CounterValue is what a named counter counted.
type CounterValue struct {
	Packets uint64
	Bytes   uint64
}

// Counters returns the named counters of table inet table.
func (c *Conn) Counters(table string) (map[string]CounterValue, error) {
	objs, err := c.nft.GetNamedObjects(&nftables.Table{Name: table, Family: nftables.TableFamilyINet})
	if err != nil {
		return nil, fmt.Errorf("list counters of table inet %s: %w", table, err)
	}
	out := map[string]CounterValue{}
	for _, o := range objs {
		n, ok := o.(*nftables.NamedObj)
		if !ok || n.Type != nftables.ObjTypeCounter {
			continue
		}
		if ctr, ok := n.Obj.(*expr.Counter); ok {
			out[n.Name] = CounterValue{Packets: ctr.Packets, Bytes: ctr.Bytes}
		}
	}
	return out, nil
}
