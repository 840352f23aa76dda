// Package daemon is nftlimitd's run loop (`nftlimitd run`): it applies the
// configuration, then keeps the kernel equal to it. It reloads on SIGHUP and
// when the configuration files change, repairs the table when anything else
// deletes or edits it (nftables netlink events, plus a periodic check in case
// events are lost), retries failed applies with backoff, and talks to systemd
// (READY, RELOADING, STOPPING, WATCHDOG).
//
// One goroutine owns reconciliation and the kernel connection; the file
// watcher, the event monitor, signals and timers only signal it through
// channels, so at most one reconcile runs at a time and bursts of events
// coalesce into one.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/nftables"

	"github.com/nftlimitd/nftlimitd/internal/banstate"
	"github.com/nftlimitd/nftlimitd/internal/config"
	"github.com/nftlimitd/nftlimitd/pkg/netlinkx"
	"github.com/nftlimitd/nftlimitd/pkg/ruleset"
)

// Defaults for Options.
const (
	DefaultCheckInterval = 10 * time.Second
	DefaultDebounce      = 200 * time.Millisecond
	DefaultRetryMin      = time.Second
	DefaultRetryMax      = 30 * time.Second
	// DefaultBanSaveInterval is how often bans are saved to the state
	// file (they are also saved at stop).
	DefaultBanSaveInterval = time.Minute
)

// Options configure Run. Only ConfigPath is required.
type Options struct {
	// ConfigPath is the main configuration file; its directory's
	// nftlimit.d/*.conf are read after it.
	ConfigPath string
	// Logger receives structured logs; nil means a text logger on stderr.
	Logger *slog.Logger
	// Dial opens the kernel connection used to apply; nil means
	// netlinkx.Open().
	Dial func() (*netlinkx.Conn, error)
	// MonitorOptions are added to the options of the nftables connection
	// that subscribes to ruleset events (e.g. nftables.WithNetNSFd to watch
	// another network namespace, which Dial must then use too).
	MonitorOptions []nftables.ConnOption
	// Notify sends one sd_notify message; nil means SdNotify (a no-op
	// without NOTIFY_SOCKET).
	Notify func(state string) error
	// Watchdog is how often to send WATCHDOG=1; zero means half of
	// systemd's WATCHDOG_USEC, or never when that is unset.
	Watchdog time.Duration
	// CheckInterval is how often the table is verified even without
	// events; zero means DefaultCheckInterval.
	CheckInterval time.Duration
	// Debounce is how long file changes must settle before a reload; zero
	// means DefaultDebounce.
	Debounce time.Duration
	// RetryMin and RetryMax bound the backoff after a failed apply; zero
	// means DefaultRetryMin and DefaultRetryMax.
	RetryMin, RetryMax time.Duration
	// StatePath is the file that keeps bans across reboots (written every
	// BanSaveInterval and at stop, read when the table had to be created);
	// empty disables it.
	StatePath string
	// BanSaveInterval is how often bans are saved; zero means
	// DefaultBanSaveInterval.
	BanSaveInterval time.Duration
}

// ConfigError is a configuration that cannot be loaded at start (exit 1).
// Each problem has been logged with its FILE:LINE:COL.
type ConfigError struct{ Err error }

// Error describes the configuration problem.
func (e *ConfigError) Error() string {
	var list config.ErrorList
	if errors.As(e.Err, &list) {
		return fmt.Sprintf("configuration has %d error(s)", len(list))
	}
	return e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *ConfigError) Unwrap() error { return e.Err }

// KernelError is a kernel that refuses the ruleset or lacks a feature at
// start (exit 2).
type KernelError struct{ Err error }

// Error describes what the kernel refused.
func (e *KernelError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *KernelError) Unwrap() error { return e.Err }

// daemon is the state of one Run: owned by the reconcile goroutine except
// where noted.
type daemon struct {
	opts Options
	log  *slog.Logger
	conn *netlinkx.Conn

	cfg  *config.Config
	want *ruleset.Table

	// table is the name of the owned table, read by the monitor goroutine.
	tableMu sync.Mutex
	table   string

	reload chan string   // a reload was asked for; the value says by whom
	drift  chan string   // the kernel may differ; the value says why
	lost   chan error    // the event subscription broke
	files  chan []string // the files the configuration was read from, for the watcher

	// mon is the event subscription, nil while closed (during our own
	// applies, and after it broke until monRetry fires).
	mon      *monitor
	monDelay time.Duration
	monRetry *time.Timer

	retryDelay time.Duration // current backoff, 0 when the last apply succeeded

	// gen is the ruleset generation at which the table was last known to
	// equal the configuration (genOK): a periodic check that finds the
	// ruleset still at gen has nothing to read.
	gen   uint32
	genOK bool

	// metricsCfg is the configuration the metrics handler reports on.
	metricsCfg atomic.Pointer[config.Config]
	counts     counters
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if o.Dial == nil {
		o.Dial = func() (*netlinkx.Conn, error) { return netlinkx.Open() }
	}
	if o.Notify == nil {
		o.Notify = sdNotify
	}
	if o.CheckInterval <= 0 {
		o.CheckInterval = DefaultCheckInterval
	}
	if o.Debounce <= 0 {
		o.Debounce = DefaultDebounce
	}
	if o.RetryMin <= 0 {
		o.RetryMin = DefaultRetryMin
	}
	if o.RetryMax <= 0 {
		o.RetryMax = DefaultRetryMax
	}
	if o.Watchdog <= 0 {
		o.Watchdog = sdWatchdogInterval()
	}
	if o.BanSaveInterval <= 0 {
		o.BanSaveInterval = DefaultBanSaveInterval
	}
}

// Run applies the configuration at opts.ConfigPath and keeps the kernel
// equal to it until ctx is cancelled (SIGTERM/SIGINT in the CLI), then
// leaves the table in place or removes it (table.keep_on_exit) and returns
// nil. A configuration that cannot be loaded at start is a *ConfigError; a
// kernel that lacks a feature or refuses the first apply is a *KernelError.
// Later problems are logged and retried, never fatal.
func Run(ctx context.Context, opts Options) error {
	opts.defaults()
	// Catch SIGHUP first: one that arrives while starting must not kill
	// the process; it reloads once the first apply is done.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGHUP)
	defer signal.Stop(sigs)
	d := &daemon{
		opts:   opts,
		log:    opts.Logger,
		reload: make(chan string, 1),
		drift:  make(chan string, 1),
		lost:   make(chan error, 1),
		files:  make(chan []string, 1),
	}

	// Watch the files before reading them: an edit made while starting is
	// not lost.
	watchCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	ready := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.watchFiles(watchCtx, ready)
	}()
	<-ready

	cfg, want, err := d.load()
	if err != nil {
		return &ConfigError{Err: err}
	}
	conn, err := opts.Dial()
	if err != nil {
		return &KernelError{Err: err}
	}
	d.conn = conn
	defer conn.Close()
	if _, err := conn.Probe(); err != nil {
		return &KernelError{Err: err}
	}
	start := time.Now()
	plan, err := conn.Apply(want)
	if err != nil {
		return &KernelError{Err: err}
	}
	d.cfg, d.want = cfg, want
	d.setTable(want.Name)
	if plan.CreateTable {
		d.restoreBans()
	}
	d.log.Info("applied configuration", "table", "inet "+want.Name, "limits", len(cfg.Limits),
		"changes", len(plan.Changes), "files", cfg.Files, "took", time.Since(start).Round(time.Microsecond))
	d.notify("READY=1\nSTATUS=enforcing " + fmt.Sprintf("%d limit(s)", len(cfg.Limits)))

	d.watchList(cfg.Files)
	d.metricsCfg.Store(cfg)
	if cfg.Metrics.Listen != "" {
		if err := d.serveMetrics(watchCtx, cfg.Metrics.Listen); err != nil {
			return &ConfigError{Err: err}
		}
	}

	d.monRetry = time.NewTimer(time.Hour)
	d.monRetry.Stop()
	defer d.monRetry.Stop()
	d.openMonitor()
	defer d.closeMonitor()

	d.loop(ctx, sigs)

	d.notify("STOPPING=1")
	cancel()
	d.closeMonitor()
	d.saveBans()
	if d.cfg.Table.KeepOnExit {
		d.log.Info("stopping; enforcement stays in the kernel", "table", "inet "+d.want.Name)
		return nil
	}
	found, err := conn.Remove(d.want.Name)
	if err != nil {
		d.log.Error("stopping: remove table", "table", "inet "+d.want.Name, "error", err)
		return nil
	}
	d.log.Info("stopping; removed table (keep_on_exit = false)", "table", "inet "+d.want.Name, "found", found)
	return nil
}

// loop is the reconcile goroutine: it runs until ctx ends.
func (d *daemon) loop(ctx context.Context, sigs <-chan os.Signal) {
	check := time.NewTicker(d.opts.CheckInterval)
	defer check.Stop()
	save := time.NewTicker(d.opts.BanSaveInterval)
	defer save.Stop()
	var watchdog <-chan time.Time
	if d.opts.Watchdog > 0 {
		t := time.NewTicker(d.opts.Watchdog)
		defer t.Stop()
		watchdog = t.C
		d.log.Debug("systemd watchdog enabled", "interval", d.opts.Watchdog)
	}
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()

	for {
		var why string
		reload := false
		select {
		case <-ctx.Done():
			return
		case s := <-sigs:
			reload, why = true, "signal "+s.String()
		case why = <-d.reload:
			reload = true
		case why = <-d.drift:
		case <-check.C:
			if d.unchanged() {
				continue
			}
			why = "periodic check"
		case <-save.C:
			d.saveBans()
			continue
		case <-retry.C:
			why = "retry"
		case err := <-d.lost:
			d.log.Warn("nftables event subscription broke (events may be lost); checking the table and subscribing again",
				"error", err)
			d.closeMonitor()
			d.openMonitor()
			continue
		case <-d.monRetry.C:
			d.openMonitor()
			continue
		case <-watchdog:
			d.notify("WATCHDOG=1")
			continue
		}
		var ok bool
		if reload {
			ok = d.doReload(why)
		} else {
			ok = d.reconcile(why)
		}
		if ok {
			d.retryDelay = 0
			continue
		}
		// Schedule a retry with exponential backoff.
		switch {
		case d.retryDelay == 0:
			d.retryDelay = d.opts.RetryMin
		default:
			d.retryDelay = min(2*d.retryDelay, d.opts.RetryMax)
		}
		retry.Reset(d.retryDelay)
		d.log.Info("will retry", "in", d.retryDelay)
	}
}

// load reads and validates the configuration and computes the table it
// asks for. Problems in the files are logged one by one, with their
// positions, and returned as the config.ErrorList; other errors are only
// returned.
func (d *daemon) load() (*config.Config, *ruleset.Table, error) {
	cfg, err := config.Load(d.opts.ConfigPath)
	if err != nil {
		var list config.ErrorList
		if errors.As(err, &list) {
			for _, e := range list {
				d.log.Error("configuration error", "error", e.Error())
			}
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("load configuration: %w", err)
	}
	for _, w := range cfg.Warnings {
		d.log.Warn("configuration warning", "warning", w.Error())
	}
	want, err := ruleset.Desired(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("configuration: %w", err)
	}
	return cfg, want, nil
}

// doReload loads the configuration again and applies it; on a bad
// configuration the kernel is left as it is. It reports false when the
// apply failed and should be retried.
func (d *daemon) doReload(why string) bool {
	start := time.Now()
	d.notify(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", monotonicUsec()))
	defer d.notify("READY=1")
	d.log.Info("reloading configuration", "trigger", why)
	cfg, want, err := d.load()
	if err != nil {
		var list config.ErrorList
		if errors.As(err, &list) {
			err = &ConfigError{Err: err}
		}
		d.counts.reloadErrors.Add(1)
		d.log.Error("configuration not reloaded: the kernel keeps the last good configuration",
			"table", "inet "+d.want.Name, "error", err)
		// Still make sure the kernel holds the last good state.
		return d.reconcile("reload failed")
	}
	old := d.want.Name
	if cfg.Metrics.Listen != d.cfg.Metrics.Listen {
		d.log.Warn("metrics listen address changed: restart nftlimitd to apply it",
			"running", d.cfg.Metrics.Listen, "configured", cfg.Metrics.Listen)
	}
	d.cfg, d.want = cfg, want
	d.metricsCfg.Store(cfg)
	d.setTable(want.Name)
	d.watchList(cfg.Files)
	ok := d.apply("reload", start)
	if ok && old != want.Name {
		if _, err := d.conn.Remove(old); err != nil {
			d.log.Error("remove the previous table after a rename", "table", "inet "+old, "error", err)
		} else {
			d.log.Info("removed the previous table after a rename", "table", "inet "+old)
		}
	}
	return ok
}

// reconcile makes the kernel equal to the current desired table.
func (d *daemon) reconcile(why string) bool {
	return d.apply(why, time.Now())
}

// apply makes the kernel equal to d.want in one transaction and logs what
// it changed. When there is something to change, the event subscription is
// closed during the transaction: while anyone listens, the kernel builds a
// notification for every set element added, which makes a large exempt
// list load several times slower. What happens meanwhile is caught by a
// check right after the subscription is open again.
func (d *daemon) apply(why string, start time.Time) bool {
	d.genOK = false
	closed := false
	plan, gen, err := d.conn.ApplyGen(d.want, func() {
		d.closeMonitor()
		closed = true
	})
	if closed {
		d.openMonitor()
	}
	if err == nil {
		// The table equals the configuration at this generation.
		d.gen, d.genOK = gen, true
	}
	if err != nil {
		d.counts.applyErrors.Add(1)
		d.log.Error("apply failed: the kernel keeps its current state", "table", "inet "+d.want.Name,
			"trigger", why, "error", err)
		// The retry timer brings the next attempt. The check a new
		// subscription asks for would only repeat this failure now, and
		// again after every attempt: a busy loop.
		select {
		case <-d.drift:
		default:
		}
		return false
	}
	if plan.CreateTable {
		d.restoreBans()
	}
	took := time.Since(start).Round(time.Microsecond)
	switch {
	case why == "reload":
		d.counts.reloads.Add(1)
		d.log.Info("reloaded configuration", "table", "inet "+d.want.Name, "limits", len(d.cfg.Limits),
			"changes", len(plan.Changes), "took", took)
	case plan.Empty():
		d.log.Debug("table is up to date", "table", "inet "+d.want.Name, "trigger", why, "took", took)
	default:
		d.counts.repairs.Add(1)
		d.log.Warn("repaired table", "table", "inet "+d.want.Name, "trigger", why,
			"changes", len(plan.Changes), "took", took)
	}
	for _, c := range plan.Changes {
		if c.Op == "~" && c.Kind == "set" && !strings.HasPrefix(c.Why, "size ") && !strings.HasSuffix(c.Why, "elements changed") {
			// A dynamic set whose type or flags changed was replaced: the
			// state it held (counts, buckets, bans) is gone.
			d.log.Warn("replaced set: the state it held is lost", "table", "inet "+d.want.Name, "change", c.String())
			continue
		}
		d.log.Debug("change", "table", "inet "+d.want.Name, "change", c.String())
	}
	return true
}

// unchanged reports whether the ruleset is still at the generation at which
// the table was known to be right: then a check need not read anything.
// Asking for the generation is one small netlink round trip, so an idle
// daemon wakes up rarely.
func (d *daemon) unchanged() bool {
	if !d.genOK {
		return false
	}
	g, err := d.conn.Gen()
	return err == nil && g == d.gen
}

// hasBans reports whether any limit of the current configuration bans.
func (d *daemon) hasBans() bool {
	for i := range d.cfg.Limits {
		if d.cfg.Limits[i].Ban > 0 {
			return true
		}
	}
	return false
}

// saveBans writes the bans in the kernel to the state file, so that a
// reboot does not forget them. Bans given in the last BanSaveInterval before
// a crash of the whole machine can be lost; a clean stop saves them all.
func (d *daemon) saveBans() {
	if d.opts.StatePath == "" || !d.hasBans() {
		return
	}
	snap, err := banstate.Snapshot(d.conn, d.cfg, time.Now())
	if errors.Is(err, banstate.ErrNoBanSets) {
		d.log.Debug("not saving bans: the table has no ban sets now", "file", d.opts.StatePath)
		return
	}
	if err == nil {
		err = banstate.Save(d.opts.StatePath, snap)
	}
	if err != nil {
		d.log.Error("save bans", "file", d.opts.StatePath, "error", err)
		return
	}
	d.log.Debug("saved bans", "file", d.opts.StatePath, "bans", len(snap.Bans))
}

// restoreBans puts the bans of the state file back, for the time they have
// left, after the table had to be created (at boot, or after something
// deleted it).
func (d *daemon) restoreBans() {
	if d.opts.StatePath == "" || !d.hasBans() {
		return
	}
	f, err := banstate.Load(d.opts.StatePath)
	if err != nil {
		d.log.Error("restore bans", "file", d.opts.StatePath, "error", err)
		return
	}
	n, err := banstate.Restore(d.conn, d.cfg, f, time.Now())
	if err != nil {
		d.log.Error("restore bans", "file", d.opts.StatePath, "error", err)
	}
	if n > 0 {
		d.log.Info("restored bans", "file", d.opts.StatePath, "bans", n, "saved", f.Saved)
	}
}

// watchList tells the file watcher which files the configuration now
// comes from, replacing a list it has not picked up yet.
func (d *daemon) watchList(files []string) {
	select {
	case <-d.files:
	default:
	}
	d.files <- files
}

func (d *daemon) setTable(name string) {
	d.tableMu.Lock()
	d.table = name
	d.tableMu.Unlock()
}

func (d *daemon) tableName() string {
	d.tableMu.Lock()
	defer d.tableMu.Unlock()
	return d.table
}

// signal asks the reconcile goroutine for work without blocking: a pending
// request already covers this one.
func signalChan(ch chan string, why string) {
	select {
	case ch <- why:
	default:
	}
}
