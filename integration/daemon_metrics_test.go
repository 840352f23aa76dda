package integration

import (
	"io"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nftlimitd/nftlimitd/integration/nstest"
)

// scrape fetches /metrics from the server's address over real TCP from the
// client namespace.
func scrape(t *testing.T, s *suite) string {
	t.Helper()
	r := s.Client.DialTCP(t, nstest.ClientV4(2, 16), nstest.ServerV4, 9733, time.Second)
	if r.Outcome != accepted {
		t.Fatalf("connect to the metrics endpoint: %v", r)
	}
	defer r.Conn.Close()
	r.Conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(r.Conn, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(r.Conn)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(body), "HTTP/1.0 200") {
		t.Fatalf("metrics: %s", body)
	}
	return string(body)
}

// TestDaemonMetrics: with [metrics] listen set, the daemon serves
// Prometheus text with per-limit hits, tracked sources, bans, set sizes,
// and its reloads and repairs.
func TestDaemonMetrics(t *testing.T) {
	t.Parallel()
	s := newSuite(t, nstest.Options{})
	s.Server.ServeTCP(t, 22)
	s.Server.ServeTCP(t, 80)
	p := filepath.Join(s.dir, "nftlimit.conf")
	conf := "[metrics]\nlisten = \"192.0.2.1:9733\"\n" + sshLimit(2) + banConfig
	writeFile(t, p, conf)
	d := s.startDaemon(t, s.Server, p)
	want(t, "ssh", tally(t, s.Client, 3, nstest.ClientV4(1, 1), nstest.ServerV4, 22), map[nstest.Outcome]int{accepted: 2, refused: 1})
	s.Server.MustExec(t, s.bin, "ban", "203.0.113.7", "--limit", "web", "--for", "1h", "-c", p)
	if err := d.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	body := scrapeUntil(t, s, "nftlimitd_reloads_total 1")
	for _, w := range []string{
		"# TYPE nftlimitd_hits_total counter",
		`nftlimitd_hits_total{limit="ssh"} 1`,
		`nftlimitd_tracked_sources{limit="ssh",set="ssh_conn4"} 1`,
		`nftlimitd_set_size{limit="ssh",set="ssh_conn4"} 65536`,
		`nftlimitd_bans{limit="web"} 1`,
		"nftlimitd_repairs_total 0",
		"nftlimitd_scrape_ok 1",
	} {
		if !strings.Contains(body, w) {
			t.Errorf("metrics lack %q:\n%s", w, body)
		}
	}
	s.Server.MustExec(t, "nft", "delete", "table", "inet", "nftlimit")
	scrapeUntil(t, s, "nftlimitd_repairs_total 1")
}

// scrapeUntil scrapes until the metrics contain want, for up to 5 s.
func scrapeUntil(t *testing.T, s *suite, want string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		body := scrape(t, s)
		if strings.Contains(body, want) {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics never showed %q:\n%s", want, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
