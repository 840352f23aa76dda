package netlinkx

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"
)

// TestProbeNamesMissingFeature fakes a kernel without nft_connlimit: every
// batch that carries a connlimit expression is refused with EOPNOTSUPP, as
// the kernel does when the expression type is unknown. The probe must say
// which module is missing and how to load it.
func TestProbeNamesMissingFeature(t *testing.T) {
	dial := func(req []netlink.Message) ([]netlink.Message, error) {
		var out []netlink.Message
		for _, m := range req {
			if bytes.Contains(m.Data, []byte("connlimit\x00")) {
				return nltest.Error(int(unix.EOPNOTSUPP), []netlink.Message{m})
			}
			if m.Header.Flags&netlink.Acknowledge != 0 {
				out = append(out, netlink.Message{
					Header: netlink.Header{Type: netlink.Error, Sequence: m.Header.Sequence, PID: m.Header.PID},
					Data:   make([]byte, 4),
				})
			}
		}
		return out, nil
	}
	c, err := Open(WithTestDial(dial))
	if err != nil {
		t.Fatal(err)
	}
	features, err := c.Probe()
	var fe *FeatureError
	if !errors.As(err, &fe) {
		t.Fatalf("Probe: got %v, want a *FeatureError", err)
	}
	if fe.Feature.Module != "nft_connlimit" {
		t.Errorf("missing module: got %q, want nft_connlimit", fe.Feature.Module)
	}
	msg := err.Error()
	for _, s := range []string{"kernel lacks nft_connlimit (CONFIG_NFT_CONNLIMIT)", "modprobe nft_connlimit"} {
		if !strings.Contains(msg, s) {
			t.Errorf("error %q does not say %q", msg, s)
		}
	}
	for _, f := range features {
		if want := f.Module != "nft_connlimit"; f.Available != want {
			t.Errorf("feature %s: available = %v, want %v", f.Name, f.Available, want)
		}
	}
}
