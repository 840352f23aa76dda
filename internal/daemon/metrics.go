package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nftlimitd/nftlimitd/internal/config"
	"github.com/nftlimitd/nftlimitd/internal/status"
)

// counters are the daemon's own counts, exported as metrics. They are
// written by the reconcile goroutine and read by the metrics handler.
type counters struct {
	reloads      atomic.Uint64
	reloadErrors atomic.Uint64
	applyErrors  atomic.Uint64
	repairs      atomic.Uint64
}

// serveMetrics serves Prometheus text metrics on addr until ctx ends. Each
// scrape reads the kernel on its own connection: the limits' counters and
// the fill of their dynamic sets (never an exempt set).
func (d *daemon) serveMetrics(ctx context.Context, addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", d.handleMetrics)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	d.log.Info("serving metrics", "listen", l.Addr().String(), "path", "/metrics")
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("metrics server stopped", "error", err)
		}
	}()
	return nil
}

func (d *daemon) handleMetrics(w http.ResponseWriter, r *http.Request) {
	cfg := d.metricsCfg.Load()
	var b bytes.Buffer
	scrapeOK := 1
	st, err := d.readStatus(cfg)
	if err != nil {
		d.log.Warn("metrics: read the kernel", "error", err)
		scrapeOK = 0
	}
	metric := func(name, typ, help string) {
		fmt.Fprintf(&b, "# HELP nftlimitd_%s %s\n# TYPE nftlimitd_%s %s\n", name, help, name, typ)
	}
	if st != nil {
		metric("hits_total", "counter", "New connections a limit's action was applied to.")
		for _, l := range st.Limits {
			fmt.Fprintf(&b, "nftlimitd_hits_total{limit=%q} %d\n", l.Name, l.Hits.Packets)
		}
		metric("banned_drops_total", "counter", "Packets dropped because their source was banned.")
		for _, l := range st.Limits {
			fmt.Fprintf(&b, "nftlimitd_banned_drops_total{limit=%q} %d\n", l.Name, l.BannedDrops.Packets)
		}
		metric("bans", "gauge", "Source groups banned now.")
		for _, l := range st.Limits {
			fmt.Fprintf(&b, "nftlimitd_bans{limit=%q} %d\n", l.Name, len(l.Bans))
		}
		metric("tracked_sources", "gauge", "Source groups a limit's set tracks now.")
		for _, l := range st.Limits {
			for _, s := range l.Sets {
				if !strings.Contains(s.Name, "_ban") {
					fmt.Fprintf(&b, "nftlimitd_tracked_sources{limit=%q,set=%q} %d\n", l.Name, s.Name, s.Elements)
				}
			}
		}
		metric("set_size", "gauge", "How many source groups a limit's set can track (max_sources).")
		for _, l := range st.Limits {
			for _, s := range l.Sets {
				fmt.Fprintf(&b, "nftlimitd_set_size{limit=%q,set=%q} %d\n", l.Name, s.Name, s.Size)
			}
		}
	}
	metric("reloads_total", "counter", "Configuration reloads applied.")
	fmt.Fprintf(&b, "nftlimitd_reloads_total %d\n", d.counts.reloads.Load())
	metric("reload_errors_total", "counter", "Reloads refused because the configuration has errors.")
	fmt.Fprintf(&b, "nftlimitd_reload_errors_total %d\n", d.counts.reloadErrors.Load())
	metric("apply_errors_total", "counter", "Transactions the kernel refused.")
	fmt.Fprintf(&b, "nftlimitd_apply_errors_total %d\n", d.counts.applyErrors.Load())
	metric("repairs_total", "counter", "Times the table was found changed by someone else and repaired.")
	fmt.Fprintf(&b, "nftlimitd_repairs_total %d\n", d.counts.repairs.Load())
	metric("scrape_ok", "gauge", "1 when this scrape could read the kernel.")
	fmt.Fprintf(&b, "nftlimitd_scrape_ok %d\n", scrapeOK)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = w.Write(b.Bytes())
}

// readStatus reads the limits' state on a connection of its own.
func (d *daemon) readStatus(cfg *config.Config) (*status.Status, error) {
	c, err := d.opts.Dial()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return status.Read(c, cfg, false)
}
