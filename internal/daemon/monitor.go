package daemon

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
)

// monitorReadBuffer is the receive buffer of the event socket: big enough
// for the bursts of a large `nft -f`. When it overflows anyway (ENOBUFS),
// the subscription is opened again and the table checked.
const monitorReadBuffer = 8 << 20

// Bounds of the delay before subscribing again after a failure.
const (
	monitorRetryMin = 100 * time.Millisecond
	monitorRetryMax = 5 * time.Second
)

// monitor is one subscription to nftables ruleset events. Its goroutine
// asks for a reconcile whenever another process changes the owned table
// (or deletes it, or flushes the ruleset); changes made by this process
// are ignored.
type monitor struct {
	conn *nftables.Conn
	mon  *nftables.Monitor
	done chan struct{} // closed when the forwarding goroutine returned
}

// openMonitor subscribes to ruleset events, unless already subscribed, and
// asks for a check of the table, since changes before the subscription
// were not seen. On failure it schedules another try with backoff. Only
// the reconcile goroutine calls it.
func (d *daemon) openMonitor() {
	if d.mon != nil {
		return
	}
	m, err := d.subscribe()
	if err != nil {
		if d.monDelay == 0 {
			d.monDelay = monitorRetryMin
		} else {
			d.monDelay = min(2*d.monDelay, monitorRetryMax)
		}
		d.log.Warn("cannot subscribe to nftables events; relying on the periodic check until it works",
			"error", err, "retry_in", d.monDelay)
		d.monRetry.Reset(d.monDelay)
		signalChan(d.drift, "event subscription failed")
		return
	}
	d.mon, d.monDelay = m, 0
	signalChan(d.drift, "event monitor subscribed")
}

// closeMonitor ends the subscription, if any, and waits for its goroutine.
// Only the reconcile goroutine calls it.
func (d *daemon) closeMonitor() {
	if d.mon == nil {
		return
	}
	d.mon.mon.Close()
	// With a lasting connection, closing it is what ends the monitor's
	// receive loop; Monitor.Close alone would not.
	d.mon.conn.CloseLasting()
	<-d.mon.done
	d.mon = nil
	// A breakage it reported is moot now: whoever opens the next
	// subscription checks the table anyway.
	select {
	case <-d.lost:
	default:
	}
}

func (d *daemon) subscribe() (*monitor, error) {
	opts := append([]nftables.ConnOption{
		nftables.AsLasting(),
		nftables.WithSockOptions(func(c *netlink.Conn) error { return c.SetReadBuffer(monitorReadBuffer) }),
	}, d.opts.MonitorOptions...)
	conn, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("open nftables event socket: %w", err)
	}
	mon := nftables.NewMonitor(nftables.WithMonitorEventBuffer(64))
	events, err := conn.AddGenerationalMonitor(mon)
	if err != nil {
		conn.CloseLasting()
		return nil, fmt.Errorf("subscribe to nftables events: %w", err)
	}
	m := &monitor{conn: conn, mon: mon, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		d.forward(events)
	}()
	d.log.Debug("subscribed to nftables events")
	return m, nil
}

// forward reads one subscription's events until its channel closes, and
// signals the reconcile goroutine.
func (d *daemon) forward(events <-chan *nftables.MonitorEvents) {
	pid := uint32(os.Getpid())
	for evs := range events {
		if g := evs.GeneratedBy; g != nil && g.Type == nftables.MonitorEventTypeOOB {
			// The monitor stops after this; the channel closes.
			err := g.Error
			if errors.Is(err, os.ErrClosed) {
				continue // closeMonitor
			}
			if err == nil {
				err = errors.New("event monitor stopped")
			}
			select {
			case d.lost <- err:
			default:
			}
			continue
		}
		if why, ok := d.touchesTable(evs, pid); ok {
			signalChan(d.drift, why)
		}
	}
}

// touchesTable reports whether one generation's changes, made by another
// process, touch the owned table, and says who made them.
func (d *daemon) touchesTable(evs *nftables.MonitorEvents, pid uint32) (string, bool) {
	by := "unknown process"
	if g := evs.GeneratedBy; g != nil {
		if gen, ok := g.Data.(*nftables.Gen); ok && gen != nil {
			if ownThread(pid, gen.ProcPID) {
				return "", false
			}
			by = fmt.Sprintf("pid %d (%s)", gen.ProcPID, gen.ProcComm)
		}
	}
	table := d.tableName()
	for _, ev := range evs.Changes {
		name, known, skip := eventTable(ev)
		switch {
		case skip:
			continue
		case !known, name == table:
			return fmt.Sprintf("%s by %s", eventName(ev.Type), by), true
		}
	}
	return "", false
}

// ownThread reports whether tid, the kernel's "pid" of the task that
// committed a generation (a thread id), is one of this process's threads.
func ownThread(pid, tid uint32) bool {
	if tid == pid {
		return true
	}
	_, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", tid))
	return err == nil
}

// eventTable returns the name of the inet table an event is about. known is
// false when the event does not say (google/nftables does not decode the
// table of set and object events, or decoding failed): such an event may be
// about the owned table. skip is true for events that never call for a
// reconcile: set elements (dynamic sets fill from the packet path, `unban`
// deletes elements) and tables of other families.
func eventTable(ev *nftables.MonitorEvent) (name string, known, skip bool) {
	var t *nftables.Table
	switch v := ev.Data.(type) {
	case []nftables.SetElement:
		return "", false, true
	case *nftables.Table:
		t = v
	case *nftables.Chain:
		if v != nil {
			t = v.Table
		}
	case *nftables.Rule:
		if v != nil {
			t = v.Table
		}
	}
	switch ev.Type {
	case nftables.MonitorEventTypeNewSetElem, nftables.MonitorEventTypeDelSetElem:
		return "", false, true
	}
	if t == nil || t.Name == "" {
		return "", false, false
	}
	if t.Family != nftables.TableFamilyINet {
		return "", true, true
	}
	return t.Name, true, false
}

func eventName(t nftables.MonitorEventType) string {
	switch t {
	case nftables.MonitorEventTypeNewTable:
		return "new table"
	case nftables.MonitorEventTypeDelTable:
		return "delete table"
	case nftables.MonitorEventTypeNewChain:
		return "new chain"
	case nftables.MonitorEventTypeDelChain:
		return "delete chain"
	case nftables.MonitorEventTypeNewRule:
		return "new rule"
	case nftables.MonitorEventTypeDelRule:
		return "delete rule"
	case nftables.MonitorEventTypeNewSet:
		return "new set"
	case nftables.MonitorEventTypeDelSet:
		return "delete set"
	case nftables.MonitorEventTypeNewObj:
		return "new object"
	case nftables.MonitorEventTypeDelObj:
		return "delete object"
	}
	return fmt.Sprintf("event %d", t)
}
