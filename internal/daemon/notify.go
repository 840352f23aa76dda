package daemon

import (
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// sdNotify sends state to systemd; without NOTIFY_SOCKET it does nothing.
func sdNotify(state string) error {
	_, err := sd.SdNotify(false, state)
	return err
}

// sdWatchdogInterval is half of systemd's watchdog timeout, or 0 when the
// watchdog is not enabled for this process.
func sdWatchdogInterval() time.Duration {
	d, err := sd.SdWatchdogEnabled(false)
	if err != nil || d <= 0 {
		return 0
	}
	return d / 2
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, as systemd expects it
// in MONOTONIC_USEC= next to RELOADING=1.
func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1000
}

// notify sends state to systemd and logs a failure.
func (d *daemon) notify(state string) {
	if err := d.opts.Notify(state); err != nil {
		d.log.Warn("sd_notify", "state", state, "error", err)
	}
}
