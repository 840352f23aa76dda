package integration

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/nftlimitd/nftlimitd/integration/nstest"
)

// TestDaemonKeepsBansAcrossReboot: the daemon saves the bans when it stops;
// when it starts and has to create the table (as after a reboot), it puts
// them back for the time they had left.
func TestDaemonKeepsBansAcrossReboot(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{})
	s.Server.ServeTCP(t, 80)
	p := filepath.Join(s.dir, "nftlimit.conf")
	writeFile(t, p, banConfig)
	d := s.startDaemon(t, s.Server, p)
	s.Server.MustExec(t, s.bin, "ban", "198.51.100.3", "--limit", "web", "--for", "1h", "-c", p)
	if err := d.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-d.Done()
	data, err := os.ReadFile(s.statePath())
	if err != nil || !strings.Contains(string(data), `"source": "198.51.100.3"`) {
		t.Fatalf("state file after stop: %v\n%s", err, data)
	}
	// The "reboot": the kernel forgets everything.
	s.Server.MustExec(t, "nft", "flush", "ruleset")
	s.startDaemon(t, s.Server, p)
	want(t, "banned after the reboot", tally(t, s.Client, 1, nstest.ClientV4(1, 3), nstest.ServerV4, 80), map[nstest.Outcome]int{timedOut: 1})
	bans := readStatus(t, s, p).Limits[0].Bans
	if len(bans) != 1 || bans[0].Source != "198.51.100.3/32" || bans[0].ExpiresIn > 3600 || bans[0].ExpiresIn < 3500 {
		t.Errorf("bans after the reboot: %+v, want 198.51.100.3/32 with just under 1 h left", bans)
	}
	want(t, "others not banned", tally(t, s.Client, 1, nstest.ClientV4(1, 4), nstest.ServerV4, 80), map[nstest.Outcome]int{accepted: 1})
}
