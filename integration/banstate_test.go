package integration

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nftlimitd/nftlimitd/integration/nstest"
	"github.com/nftlimitd/nftlimitd/internal/banstate"
	"github.com/nftlimitd/nftlimitd/internal/config"
	"github.com/nftlimitd/nftlimitd/pkg/netlinkx"
)

// TestBansSurviveReboot: bans are saved to the state file and, after the
// table is lost (as on a reboot), put back for the time they had left.
func TestBansSurviveReboot(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{})
	s.Server.ServeTCP(t, 80)
	s.apply(t, s.Server, banConfig)
	p := filepath.Join(s.dir, "nftlimit.conf")
	s.Server.MustExec(t, s.bin, "ban", "198.51.100.3", "--limit", "web", "--for", "1h", "-c", p)
	s.Server.MustExec(t, s.bin, "ban", "2001:db8:1:2::9", "--limit", "web", "--for", "2m", "-c", p)

	cfg, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	c, err := netlinkx.Open(netlinkx.WithNetNS(s.Server.NsFd()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	now := time.Now()
	snap, err := banstate.Snapshot(c, cfg, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Bans) != 2 {
		t.Fatalf("snapshot: %+v, want 2 bans", snap.Bans)
	}
	// A ban that has run out by the time of the restore is not restored.
	snap.Bans = append(snap.Bans, banstate.Ban{Limit: "web", Source: netip.MustParseAddr("198.51.100.4"), Until: now.Add(-time.Second)})
	state := filepath.Join(s.dir, "state", "bans.json")
	if err := banstate.Save(state, snap); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(state)); len(entries) != 1 {
		t.Errorf("state directory holds %d files, want only bans.json", len(entries))
	}

	// "Reboot": the table is gone, then applied again, empty.
	s.Server.MustExec(t, s.bin, "remove", "-c", p)
	s.apply(t, s.Server, banConfig)
	want(t, "after the table was lost", tally(t, s.Client, 1, nstest.ClientV4(1, 3), nstest.ServerV4, 80), map[nstest.Outcome]int{accepted: 1})

	loaded, err := banstate.Load(state)
	if err != nil {
		t.Fatal(err)
	}
	n, err := banstate.Restore(c, cfg, loaded, time.Now())
	if err != nil || n != 2 {
		t.Fatalf("restore: %d, %v; want 2 bans restored", n, err)
	}
	want(t, "v4 ban restored", tally(t, s.Client, 1, nstest.ClientV4(1, 3), nstest.ServerV4, 80), map[nstest.Outcome]int{timedOut: 1})
	want(t, "v6 ban restored for the /64", tally(t, s.Client, 1, nstest.ClientV6(2, 1), nstest.ServerV6, 80), map[nstest.Outcome]int{timedOut: 1})
	bans := readStatus(t, s, p).Limits[0].Bans
	if len(bans) != 2 || bans[0].ExpiresIn > 120 || bans[0].ExpiresIn < 100 || bans[1].ExpiresIn < 3500 || bans[1].ExpiresIn > 3600 {
		t.Errorf("restored bans: %+v, want about 2 min and 1 h left", bans)
	}
	// Restoring again does not extend anything.
	if _, err := banstate.Restore(c, cfg, loaded, time.Now()); err != nil {
		t.Fatal(err)
	}
}
