package daemon

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWatchFiles: the watcher asks for one reload per burst of changes to
// the files the configuration comes from, and none for other files.
func TestWatchFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	main := filepath.Join(dir, "nftlimit.conf")
	lists := filepath.Join(t.TempDir(), "lists")
	exempt := filepath.Join(lists, "trusted.txt")
	for _, p := range []string{main, exempt} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const debounce = 50 * time.Millisecond
	d := &daemon{
		opts:   Options{ConfigPath: main, Debounce: debounce},
		log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		reload: make(chan string, 1),
		files:  make(chan []string, 1),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	ready := make(chan struct{})
	go func() {
		defer close(done)
		d.watchFiles(ctx, ready)
	}()
	defer func() {
		cancel()
		<-done
	}()
	<-ready // the main file's directory is watched from here on

	write := func(p string) {
		t.Helper()
		if err := os.WriteFile(p+".tmp", []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(p+".tmp", p); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(what, want string) {
		t.Helper()
		select {
		case got := <-d.reload:
			if want == "" {
				t.Errorf("%s: unexpected reload %q", what, got)
			} else if !strings.HasSuffix(got, want) {
				t.Errorf("%s: reload %q, want one naming %s", what, got, want)
			}
		case <-time.After(debounce + 500*time.Millisecond):
			if want != "" {
				t.Errorf("%s: no reload", what)
			}
		}
	}
	write(main)
	expect("the main file, watched before the configuration is loaded", main)

	// The configuration names an exempt file in another directory: it is
	// watched from now on, and checked once, as it may have changed before.
	d.watchList([]string{main, exempt})
	expect("a newly watched directory", "newly watched directory")
	d.watchList([]string{main, exempt})
	expect("the same list again", "")

	for range 5 {
		write(main)
		time.Sleep(debounce / 5)
	}
	expect("a burst of edits", main)
	expect("after the burst", "")

	write(filepath.Join(dir, "unrelated.conf"))
	expect("unrelated file next to the main file", "")

	snippets := filepath.Join(dir, "nftlimit.d")
	if err := os.Mkdir(snippets, 0o755); err != nil {
		t.Fatal(err)
	}
	expect("nftlimit.d created", snippets)
	write(filepath.Join(snippets, "web.conf"))
	expect("snippet added", filepath.Join(snippets, "web.conf"))

	write(exempt)
	expect("exempt file in another directory", exempt)
	write(filepath.Join(lists, "other.txt"))
	expect("unrelated file next to the exempt file", "")
}
