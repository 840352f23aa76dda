package netlinkx

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/nftlimitd/nftlimitd/internal/config"
	"github.com/nftlimitd/nftlimitd/pkg/ruleset"
)

// Feature is a piece of kernel support nftlimitd needs.
type Feature struct {
	// Name is what the feature provides, e.g. "connlimit".
	Name string
	// Module and Kconfig name the kernel module and option behind it.
	Module  string
	Kconfig string
	// Available is set by Probe.
	Available bool
	// Err is why the feature is missing.
	Err error
}

// FeatureError says which piece of kernel support is missing.
type FeatureError struct {
	Feature Feature
}

// Error names the module and config option, and how to load it.
func (e *FeatureError) Error() string {
	f := e.Feature
	return fmt.Sprintf("kernel lacks %s (%s): try 'modprobe %s' (%v)", f.Module, f.Kconfig, f.Module, f.Err)
}

// Unwrap returns the kernel's error.
func (e *FeatureError) Unwrap() error { return e.Feature.Err }

// probe is one feature and what it takes to show it works.
type probe struct {
	feature Feature
	sets    []ruleset.Set
	stmts   []ruleset.Stmt
	base    bool
}

func probes() []probe {
	dyn := ruleset.Set{Name: "p4", Type: ruleset.TypeIPv4, Dynamic: true, Size: 16}
	rate := ruleset.Set{Name: "r4", Type: ruleset.TypeIPv4, Dynamic: true, Timeout: true, Size: 16}
	vmap := ruleset.Set{Name: "m", Type: ruleset.TypePort, Map: true, Interval: true,
		Ports: []ruleset.PortMapping{{Ports: config.PortRange{From: 1, To: 2}, Chain: "target"}}}
	return []probe{
		{feature: Feature{Name: "inet tables and base chains", Module: "nf_tables", Kconfig: "CONFIG_NF_TABLES_INET"}, base: true},
		{feature: Feature{Name: "conntrack state", Module: "nft_ct", Kconfig: "CONFIG_NFT_CT"},
			stmts: []ruleset.Stmt{ruleset.CTStateNew{}}},
		{feature: Feature{Name: "verdict maps", Module: "nf_tables", Kconfig: "CONFIG_NF_TABLES"},
			sets: []ruleset.Set{vmap}, stmts: []ruleset.Stmt{ruleset.DportVmap{Proto: config.TCP, Map: "m"}}},
		{feature: Feature{Name: "connection limits", Module: "nft_connlimit", Kconfig: "CONFIG_NFT_CONNLIMIT"},
			sets: []ruleset.Set{dyn}, stmts: []ruleset.Stmt{ruleset.ConnLimit{Family: ruleset.IPv4, Prefix: 24, Set: "p4", Over: 1}}},
		{feature: Feature{Name: "rate limits", Module: "nft_limit", Kconfig: "CONFIG_NFT_LIMIT"},
			sets: []ruleset.Set{rate}, stmts: []ruleset.Stmt{ruleset.RateLimit{Family: ruleset.IPv4, Prefix: 32, Set: "r4",
				Timeout: time.Minute, Rate: 1, Unit: time.Second, Burst: 1}}},
		{feature: Feature{Name: "reject", Module: "nft_reject_inet", Kconfig: "CONFIG_NFT_REJECT_INET"},
			stmts: []ruleset.Stmt{ruleset.Reject{With: config.TCPReset}}},
		{feature: Feature{Name: "log", Module: "nft_log", Kconfig: "CONFIG_NFT_LOG"},
			stmts: []ruleset.Stmt{ruleset.LogLimited{Rate: 1, Unit: time.Second, Burst: 5, Prefix: "probe"}}},
	}
}

// Probe checks that the kernel supports everything nftlimitd programs. Each
// feature is tried in a transaction that creates a scratch table and deletes
// it again, so nothing is left behind and no other table is touched. The
// returned error, if any, is a *FeatureError for the first missing feature.
func (c *Conn) Probe() ([]Feature, error) {
	var out []Feature
	var first error
	for _, p := range probes() {
		f := p.feature
		f.Err = c.try(p)
		f.Available = f.Err == nil
		if f.Err != nil && first == nil {
			if isPermission(f.Err) {
				return nil, fmt.Errorf("probe kernel support: %w (nftlimitd needs CAP_NET_ADMIN)", f.Err)
			}
			first = &FeatureError{Feature: f}
		}
		out = append(out, f)
	}
	return out, first
}

func (c *Conn) try(p probe) error {
	t := &nftables.Table{Name: fmt.Sprintf("nftlimitd_probe_%d", os.Getpid()), Family: nftables.TableFamilyINet}
	c.nft.AddTable(t)
	ch := c.nft.AddChain(&nftables.Chain{Name: "c", Table: t})
	c.nft.AddChain(&nftables.Chain{Name: "target", Table: t})
	if p.base {
		prio := nftables.ChainPriority(0)
		policy := nftables.ChainPolicyAccept
		c.nft.AddChain(&nftables.Chain{Name: "b", Table: t, Hooknum: nftables.ChainHookInput,
			Priority: &prio, Type: nftables.ChainTypeFilter, Policy: &policy})
	}
	created := map[string]*nftables.Set{}
	for i := range p.sets {
		s := &p.sets[i]
		ns := set(t, s)
		elems, err := elements(s)
		if err != nil {
			return err
		}
		if err := c.nft.AddSet(ns, elems); err != nil {
			return err
		}
		created[s.Name] = ns
	}
	if len(p.stmts) > 0 {
		exprs, err := exprsOf(ruleset.Rule{Stmts: p.stmts}, created)
		if err != nil {
			return err
		}
		c.nft.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: append(exprs, &expr.Verdict{Kind: expr.VerdictAccept})})
	}
	c.nft.DelTable(t)
	return c.nft.Flush()
}

func isPermission(err error) bool {
	return errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES)
}
