package integration

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/nftlimitd/nftlimitd/integration/nstest"
)

// TestDemo runs what `make demo` runs and checks that the limits bite as
// the README shows, and that it cleans up its namespaces.
func TestDemo(t *testing.T) {
	t.Parallel()
	nstest.Require(t)
	bin := nstest.BuildBinary(t)
	out, err := exec.Command("go", "run", "../contrib/demo", "-bin", bin, "-config", "../nftlimit.conf").CombinedOutput()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	for _, want := range []string{
		"from 198.51.100.10   -> 192.0.2.1:22   5 at once:  3 accepted,  2 refused",
		"from 198.51.100.11   -> 192.0.2.1:80  10 at once: 10 accepted,  0 refused",
		"from 198.51.100.12   -> 192.0.2.1:80   5 at once:  0 accepted,  5 refused",
		"from 198.51.100.7    -> 192.0.2.1:80  30 at once: 30 accepted,  0 refused",
		"from 203.0.113.5     -> 192.0.2.1:80   8 in turn:  5 accepted,  0 refused (tcp reset), 3 timed out",
		"203.0.113.5/32           9m5",
		"lifted the ban on 203.0.113.5/32 by http-rate",
		"is up to date",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	if ns, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(ns), "nftlimit-demo") {
		t.Errorf("demo left namespaces behind:\n%s", ns)
	}
}
