// Package integration tests nftlimitd against the real kernel: every test
// makes throwaway network namespaces, programs them with the nftlimitd
// binary, and sends real TCP and UDP traffic across veth pairs.
package integration

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nftlimitd/nftlimitd/integration/nstest"
)

// dialTimeout is how long a dial waits before it counts as timed out (a
// dropped SYN). Rejects answer at once.
const dialTimeout = 700 * time.Millisecond

// icmpTimeout is the dial timeout where the answer is an ICMP error: over a
// local veth it arrives while connect() still holds the socket, which makes
// it a soft error, and the client only fails on its SYN retransmit (~1 s).
const icmpTimeout = 2500 * time.Millisecond

// suite is one test's lab plus the nftlimitd binary.
type suite struct {
	*nstest.Lab
	bin string
	dir string
}

func newSuite(t *testing.T, opts nstest.Options) *suite {
	t.Helper()
	nstest.Require(t)
	nstest.Watchdog(t, 2*time.Minute)
	return &suite{Lab: nstest.NewLab(t, opts), bin: nstest.BuildBinary(t), dir: t.TempDir()}
}

// writeConfig writes a configuration file and returns its path.
func (s *suite) writeConfig(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(s.dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// run runs nftlimitd in host's namespace.
func (s *suite) run(t *testing.T, h *nstest.Host, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return h.Exec(t, s.bin, args...)
}

// apply writes text as the configuration and applies it in h, failing the
// test unless nftlimitd exits 0.
func (s *suite) apply(t *testing.T, h *nstest.Host, text string) string {
	t.Helper()
	p := s.writeConfig(t, "nftlimit.conf", text)
	out, errOut, code := s.run(t, h, "apply", "-c", p)
	if code != 0 {
		t.Fatalf("nftlimitd apply: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	return out
}

// tally dials n TCP connections in parallel and counts the outcomes.
func tally(t *testing.T, h *nstest.Host, n int, src, dst netip.Addr, port int) map[nstest.Outcome]int {
	t.Helper()
	return tallyT(t, h, n, src, dst, port, dialTimeout)
}

// tallyT is tally with a dial timeout.
func tallyT(t *testing.T, h *nstest.Host, n int, src, dst netip.Addr, port int, timeout time.Duration) map[nstest.Outcome]int {
	t.Helper()
	rs := h.DialMany(t, n, src, dst, port, timeout)
	out := map[nstest.Outcome]int{}
	for _, r := range rs {
		out[r.Outcome]++
	}
	return out
}

// closeAll closes every accepted connection in rs.
func closeAll(rs []nstest.Result) {
	for _, r := range rs {
		if r.Conn != nil {
			r.Conn.Close()
		}
	}
}

var counterRE = regexp.MustCompile(`packets (\d+) bytes (\d+)`)

// counter reads a named counter of table inet name in h.
func counter(t *testing.T, h *nstest.Host, table, name string) int {
	t.Helper()
	out := h.MustExec(t, "nft", "list", "counter", "inet", table, name)
	m := counterRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("counter %s: no packets in %q", name, out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// observe installs counters in the client namespace that count what comes
// back to it: TCP resets and ICMP/ICMPv6 destination-unreachable messages.
func observe(t *testing.T, h *nstest.Host) {
	t.Helper()
	h.Nft(t, `table inet observe {
	counter rst {}
	counter unreach {}
	chain in {
		type filter hook input priority -500; policy accept;
		tcp flags & rst == rst counter name "rst"
		icmp type destination-unreachable counter name "unreach"
		icmpv6 type destination-unreachable counter name "unreach"
	}
}`)
}

var (
	elementsRE = regexp.MustCompile(`(?s)\n\t*elements = \{[^}]*\}`)
	packetsRE  = regexp.MustCompile(`\n\t*packets \d+ bytes \d+`)
)

// normalize strips what legitimately differs between a render and a
// listing: set elements and counter values.
func normalize(s string) string {
	s = elementsRE.ReplaceAllString(s, "")
	s = packetsRE.ReplaceAllString(s, "")
	return strings.TrimSpace(s)
}

// listTable returns `nft list table inet name` in h.
func listTable(t *testing.T, h *nstest.Host, name string) string {
	t.Helper()
	return h.MustExec(t, "nft", "list", "table", "inet", name)
}

func cfg(format string, args ...any) string { return fmt.Sprintf(format, args...) }

func writeFile(t testing.TB, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}
