package daemon

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/nftlimitd/nftlimitd/internal/config"
)

// watchFiles asks for a reload when a file the configuration comes from
// changes: the main file, anything in nftlimit.d/, and the exempt files the
// last good configuration named (the list arrives on d.files after each
// load). It watches directories, not files, so an editor or a configuration
// manager that writes a new file and renames it into place is seen too.
// Changes settle for Options.Debounce first. It closes ready once the main
// file's directory and nftlimit.d/ are watched, so that the caller can load
// the configuration after that and miss no edit. A directory it only starts
// watching later (that of an exempt file elsewhere) gets one reload, which
// sends nothing when nothing changed meanwhile. It returns when ctx ends; if
// the watcher cannot be set up, reloads are by SIGHUP only.
func (d *daemon) watchFiles(ctx context.Context, ready chan<- struct{}) {
	once := false
	readyNow := func() {
		if !once {
			once = true
			close(ready)
		}
	}
	defer readyNow()
	main := abs(d.opts.ConfigPath)
	mainDir := filepath.Dir(main)
	snippets := filepath.Join(mainDir, config.SnippetDir)

	w, err := fsnotify.NewWatcher()
	if err != nil {
		d.log.Warn("cannot watch configuration files; reload with SIGHUP", "error", err)
		return
	}
	defer w.Close()

	watched := map[string]bool{} // directories
	names := map[string]bool{}   // files that matter, besides nftlimit.d/*
	watch := func(dir string) bool {
		if watched[dir] {
			return false
		}
		err := w.Add(dir)
		switch {
		case err == nil:
			watched[dir] = true
			d.log.Debug("watching for configuration changes", "dir", dir)
			return true
		case errors.Is(err, fs.ErrNotExist) && dir == snippets:
		default:
			d.log.Warn("cannot watch directory; reload with SIGHUP after changing files in it", "dir", dir, "error", err)
		}
		return false
	}
	// setFiles watches what the configuration comes from; it reports
	// whether it started watching a directory.
	setFiles := func(files []string) bool {
		names = map[string]bool{main: true}
		need := map[string]bool{mainDir: true, snippets: true}
		for _, f := range files {
			f = abs(f)
			names[f] = true
			need[filepath.Dir(f)] = true
		}
		for dir := range watched {
			if !need[dir] {
				_ = w.Remove(dir)
				delete(watched, dir)
			}
		}
		added := false
		for dir := range need {
			if watch(dir) {
				added = true
			}
		}
		return added
	}
	setFiles(nil)
	readyNow()

	// timer fires Debounce after the last relevant change.
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var changed string
	for {
		select {
		case <-ctx.Done():
			return
		case files := <-d.files:
			if setFiles(files) {
				// It may have changed before it was watched.
				changed = "newly watched directory"
				timer.Reset(d.opts.Debounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			// An overflow loses events: reload to be sure.
			d.log.Warn("configuration watcher", "error", err)
			changed = "file watcher error"
			timer.Reset(d.opts.Debounce)
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			switch {
			case ev.Op == fsnotify.Chmod:
				continue
			case ev.Name == snippets:
				if ev.Has(fsnotify.Create) {
					watch(snippets)
				} else if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
					delete(watched, snippets)
				}
			case filepath.Dir(ev.Name) == snippets, names[ev.Name]:
			default:
				continue
			}
			changed = ev.Name
			timer.Reset(d.opts.Debounce)
		case <-timer.C:
			signalChan(d.reload, "file change: "+changed)
		}
	}
}

// abs returns path made absolute, or as it is when that fails.
func abs(path string) string {
	if p, err := filepath.Abs(path); err == nil {
		return p
	}
	return path
}
