package integration

import (
	"fmt"
	"strings"
	"testing"

	"github.com/nftlimitd/nftlimitd/integration/nstest"
)

// BenchmarkStatus100k times `nftlimitd status --json` with 100,000 tracked
// source groups in a rate set (the target is under 1 s). It dumps the
// limit's dynamic sets, never its exempt set, which holds 100,000 prefixes
// too.
func BenchmarkStatus100k(b *testing.B) {
	nstest.Require(b)
	lab := nstest.NewLab(b, nstest.Options{})
	bin := nstest.BuildBinary(b)
	dir := b.TempDir()
	exempt := dir + "/exempt.txt"
	var ex strings.Builder
	for i := 0; i < 100000; i++ {
		fmt.Fprintf(&ex, "%d.%d.%d.0/24\n", 10+i/65536, i/256%256, i%256)
	}
	writeFile(b, exempt, ex.String())
	conf := dir + "/nftlimit.conf"
	writeFile(b, conf, fmt.Sprintf(`
[[limit]]
name = "web"
ports = [80]
rate = "10/second"
max_connections = 50
max_sources = 200000
exempt_file = %q
`, exempt))
	lab.Server.MustExec(b, bin, "apply", "-c", conf)
	var elems strings.Builder
	elems.WriteString("add element inet nftlimit web_rate4 {")
	for i := 0; i < 100000; i++ {
		if i > 0 {
			elems.WriteString(",")
		}
		fmt.Fprintf(&elems, "172.%d.%d.%d timeout 1h", 16+i/65536, i/256%256, i%256)
	}
	elems.WriteString("}\n")
	lab.Server.Nft(b, elems.String())
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out := lab.Server.MustExec(b, bin, "status", "--json", "-c", conf)
		if !strings.Contains(out, `"elements": 100000`) {
			b.Fatalf("status does not count 100000 elements:\n%.2000s", out)
		}
	}
}
