package daemon

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/google/nftables"

	"github.com/nftlimitd/nftlimitd/internal/config"
)

func TestTouchesTable(t *testing.T) {
	t.Parallel()
	d := &daemon{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	d.setTable("nftlimit")
	ours := &nftables.Table{Name: "nftlimit", Family: nftables.TableFamilyINet}
	other := &nftables.Table{Name: "filter", Family: nftables.TableFamilyINet}
	ip := &nftables.Table{Name: "nftlimit", Family: nftables.TableFamilyIPv4}
	self := uint32(os.Getpid())
	gen := func(pid uint32) *nftables.MonitorEvent {
		return &nftables.MonitorEvent{Type: nftables.MonitorEventType(0x0f), Data: &nftables.Gen{ProcPID: pid, ProcComm: "nft"}}
	}
	ev := func(typ nftables.MonitorEventType, data any) *nftables.MonitorEvent {
		return &nftables.MonitorEvent{Type: typ, Data: data}
	}
	for _, tc := range []struct {
		name string
		evs  nftables.MonitorEvents
		want bool
	}{
		{"delete our table", nftables.MonitorEvents{GeneratedBy: gen(1), Changes: []*nftables.MonitorEvent{
			ev(nftables.MonitorEventTypeDelTable, ours)}}, true},
		{"our own change", nftables.MonitorEvents{GeneratedBy: gen(self), Changes: []*nftables.MonitorEvent{
			ev(nftables.MonitorEventTypeDelTable, ours)}}, false},
		{"rule in our chain", nftables.MonitorEvents{GeneratedBy: gen(1), Changes: []*nftables.MonitorEvent{
			ev(nftables.MonitorEventTypeDelRule, &nftables.Rule{Table: ours})}}, true},
		{"chain of another table", nftables.MonitorEvents{GeneratedBy: gen(1), Changes: []*nftables.MonitorEvent{
			ev(nftables.MonitorEventTypeNewChain, &nftables.Chain{Table: other}),
			ev(nftables.MonitorEventTypeNewRule, &nftables.Rule{Table: other})}}, false},
		{"same name, other family", nftables.MonitorEvents{GeneratedBy: gen(1), Changes: []*nftables.MonitorEvent{
			ev(nftables.MonitorEventTypeDelTable, ip)}}, false},
		{"set elements only", nftables.MonitorEvents{GeneratedBy: gen(1), Changes: []*nftables.MonitorEvent{
			ev(nftables.MonitorEventTypeNewSetElem, []nftables.SetElement{{Key: []byte{1, 2, 3, 4}}})}}, false},
		{"set without table name may be ours", nftables.MonitorEvents{GeneratedBy: gen(1), Changes: []*nftables.MonitorEvent{
			ev(nftables.MonitorEventTypeDelSet, &nftables.Set{Name: "ssh_conn4"})}}, true},
		{"undecodable rule may be ours", nftables.MonitorEvents{GeneratedBy: gen(1), Changes: []*nftables.MonitorEvent{
			{Type: nftables.MonitorEventTypeNewRule, Data: (*nftables.Rule)(nil), Error: errors.New("bad expr")}}}, true},
		{"no generation message", nftables.MonitorEvents{Changes: []*nftables.MonitorEvent{
			ev(nftables.MonitorEventTypeDelChain, &nftables.Chain{Table: ours})}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			why, got := d.touchesTable(&tc.evs, self)
			if got != tc.want {
				t.Errorf("touchesTable = %v (%q), want %v", got, why, tc.want)
			}
		})
	}
}

func TestConfigErrorMessage(t *testing.T) {
	t.Parallel()
	err := &ConfigError{Err: config.ErrorList{{Pos: config.Position{File: "a.conf", Line: 1, Col: 2}, Msg: "bad"}}}
	var list config.ErrorList
	if !errors.As(err, &list) {
		t.Error("ConfigError does not unwrap")
	}
	if got, want := err.Error(), "configuration has 1 error(s)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}
