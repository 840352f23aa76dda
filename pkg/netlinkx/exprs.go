package netlinkx

import (
	"fmt"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/nftlimitd/nftlimitd/internal/config"
	"github.com/nftlimitd/nftlimitd/pkg/ruleset"
)

// reg is the register every nftlimitd expression loads into and reads from.
const reg = 1

// connlimitInvert is NFT_CONNLIMIT_F_INV: match when the count is over.
const connlimitInvert = 1

// exprsOf translates a rule into the expressions nft generates for the same
// rule, so that `nft list` prints it exactly as ruleset.Render does.
func exprsOf(r ruleset.Rule, created map[string]*nftables.Set) ([]expr.Any, error) {
	var out []expr.Any
	st := &ruleState{created: created}
	for _, s := range r.Stmts {
		e, err := st.stmtExprs(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s, err)
		}
		out = append(out, e...)
	}
	return out, nil
}

// ruleState is what the translation of one rule remembers between its
// statements.
type ruleState struct {
	created map[string]*nftables.Set
	// checked is the family whose check the rule already made: nft adds it
	// once, before the first address load.
	checked ruleset.Family
}

func (st *ruleState) stmtExprs(s ruleset.Stmt) ([]expr.Any, error) {
	created := st.created
	switch s := s.(type) {
	case ruleset.CTStateNew:
		return []expr.Any{
			&expr.Ct{Register: reg, Key: expr.CtKeySTATE},
			&expr.Bitwise{
				SourceRegister: reg, DestRegister: reg, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitNEW),
				Xor:  binaryutil.NativeEndian.PutUint32(0),
			},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg, Data: binaryutil.NativeEndian.PutUint32(0)},
		}, nil
	case ruleset.DportVmap:
		return append(l4proto(s.Proto),
			&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			lookup(s.Map, created, false, true),
		), nil
	case ruleset.IifnameInSet:
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg},
			lookup(s.Set, created, s.Negate, false),
		}, nil
	case ruleset.NFProto:
		st.checked = s.Family
		return nfproto(s.Family), nil
	case ruleset.L4Proto:
		return l4proto(s.Proto), nil
	case ruleset.AddrInSet:
		return append(st.loadAddr(s.Family, s.Field, s.Prefix), lookup(s.Set, created, s.Negate, false)), nil
	case ruleset.SetAdd:
		op := uint32(unix.NFT_DYNSET_OP_ADD)
		if s.Update {
			op = unix.NFT_DYNSET_OP_UPDATE
		}
		return append(st.loadAddr(s.Family, ruleset.SAddr, s.Prefix), &expr.Dynset{
			SrcRegKey: reg,
			SetName:   s.Set,
			SetID:     setID(s.Set, created),
			Operation: op,
			Timeout:   s.Timeout,
		}), nil
	case ruleset.ConnLimit:
		return append(st.loadAddr(s.Family, ruleset.SAddr, s.Prefix), &expr.Dynset{
			SrcRegKey: reg,
			SetName:   s.Set,
			SetID:     setID(s.Set, created),
			Operation: unix.NFT_DYNSET_OP_ADD,
			Exprs:     []expr.Any{&expr.Connlimit{Count: s.Over, Flags: connlimitInvert}},
		}), nil
	case ruleset.RateLimit:
		unit, err := limitUnit(s.Unit)
		if err != nil {
			return nil, err
		}
		return append(st.loadAddr(s.Family, ruleset.SAddr, s.Prefix), &expr.Dynset{
			SrcRegKey: reg,
			SetName:   s.Set,
			SetID:     setID(s.Set, created),
			Operation: unix.NFT_DYNSET_OP_UPDATE,
			Timeout:   s.Timeout,
			Exprs: []expr.Any{&expr.Limit{
				Type: expr.LimitTypePkts, Rate: s.Rate, Unit: unit, Burst: s.Burst, Over: true,
			}},
		}), nil
	case ruleset.CounterRef:
		return []expr.Any{&expr.Objref{Type: int(nftables.ObjTypeCounter), Name: s.Name}}, nil
	case ruleset.LogLimited:
		unit, err := limitUnit(s.Unit)
		if err != nil {
			return nil, err
		}
		return []expr.Any{
			&expr.Limit{Type: expr.LimitTypePkts, Rate: s.Rate, Unit: unit, Burst: s.Burst},
			&expr.Log{Key: 1 << unix.NFTA_LOG_PREFIX, Data: []byte(s.Prefix)},
		}, nil
	case ruleset.Reject:
		switch s.With {
		case config.TCPReset:
			return append(l4proto(config.TCP), &expr.Reject{Type: unix.NFT_REJECT_TCP_RST}), nil
		case config.ICMPAdminProhibited:
			return []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED}}, nil
		default:
			return []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH}}, nil
		}
	case ruleset.Verdict:
		v := &expr.Verdict{Chain: s.Chain}
		switch s.Kind {
		case ruleset.Drop:
			v.Kind = expr.VerdictDrop
		case ruleset.Return:
			v.Kind = expr.VerdictReturn
		case ruleset.Jump:
			v.Kind = expr.VerdictJump
		case ruleset.Goto:
			v.Kind = expr.VerdictGoto
		default:
			return nil, fmt.Errorf("unknown verdict %q", s.Kind)
		}
		return []expr.Any{v}, nil
	}
	return nil, fmt.Errorf("unknown statement %T", s)
}

func l4proto(p config.Protocol) []expr.Any {
	n := byte(unix.IPPROTO_TCP)
	if p == config.UDP {
		n = unix.IPPROTO_UDP
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: []byte{n}},
	}
}

func nfproto(f ruleset.Family) []expr.Any {
	n := byte(unix.NFPROTO_IPV4)
	if f == ruleset.IPv6 {
		n = unix.NFPROTO_IPV6
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: []byte{n}},
	}
}

// loadAddr loads the source or destination address, masked to prefix bits,
// after the family check nft adds for `ip saddr` in an inet table (once a
// rule).
func (st *ruleState) loadAddr(f ruleset.Family, field ruleset.Addr, prefix int) []expr.Any {
	offset, size := uint32(12), uint32(4)
	if field == ruleset.DAddr {
		offset = 16
	}
	if f == ruleset.IPv6 {
		offset, size = 8, 16
		if field == ruleset.DAddr {
			offset = 24
		}
	}
	var out []expr.Any
	if st.checked != f {
		out = nfproto(f)
		st.checked = f
	}
	out = append(out, &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: size})
	if prefix < int(size)*8 {
		out = append(out, &expr.Bitwise{
			SourceRegister: reg, DestRegister: reg, Len: size,
			Mask: ruleset.Mask(f, prefix).AsSlice(),
			Xor:  make([]byte, size),
		})
	}
	return out
}

func lookup(name string, created map[string]*nftables.Set, invert, verdict bool) *expr.Lookup {
	l := &expr.Lookup{SourceRegister: reg, SetName: name, SetID: setID(name, created), Invert: invert}
	if verdict {
		l.DestRegister = 0
		l.IsDestRegSet = true
	}
	return l
}

func setID(name string, created map[string]*nftables.Set) uint32 {
	if s, ok := created[name]; ok {
		return s.ID
	}
	return 0
}

func limitUnit(d time.Duration) (expr.LimitTime, error) {
	switch d {
	case time.Second:
		return expr.LimitTimeSecond, nil
	case time.Minute:
		return expr.LimitTimeMinute, nil
	case time.Hour:
		return expr.LimitTimeHour, nil
	case 24 * time.Hour:
		return expr.LimitTimeDay, nil
	case 7 * 24 * time.Hour:
		return expr.LimitTimeWeek, nil
	}
	return 0, fmt.Errorf("non-standard rate unit %v", d)
}
