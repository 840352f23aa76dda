// Package banstate keeps bans across reboots: it snapshots the ban sets of
// nftlimitd's table into a file, written atomically, and puts the bans that
// have time left back into the kernel after the table was lost (a reboot, an
// `nft flush ruleset`).
package banstate

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/nftlimitd/nftlimitd/internal/config"
	"github.com/nftlimitd/nftlimitd/pkg/netlinkx"
	"github.com/nftlimitd/nftlimitd/pkg/ruleset"
)

// DefaultPath is where the daemon keeps the bans.
const DefaultPath = "/var/lib/nftlimitd/bans.json"

// version is the file format's version.
const version = 1

// File is the content of the state file.
type File struct {
	Version int `json:"version"`
	// Saved is when the snapshot was taken.
	Saved time.Time `json:"saved"`
	Bans  []Ban     `json:"bans"`
}

// Ban is one banned source group.
type Ban struct {
	Limit string `json:"limit"`
	// Source is the banned group's key: an address masked to the limit's
	// prefix.
	Source netip.Addr `json:"source"`
	// Until is when the ban ends (wall clock).
	Until time.Time `json:"until"`
}

// ErrNoBanSets is returned by Snapshot when none of the limits' ban sets
// exists (the table is gone): such a snapshot must not replace a saved one.
var ErrNoBanSets = errors.New("no ban set in the kernel")

// Snapshot reads every ban of cfg's limits from the kernel, dumping only
// the ban sets. now is the wall clock the time left is counted from.
func Snapshot(c *netlinkx.Conn, cfg *config.Config, now time.Time) (*File, error) {
	f := &File{Version: version, Saved: now.UTC(), Bans: []Ban{}}
	found := false
	for i := range cfg.Limits {
		l := &cfg.Limits[i]
		if l.Ban == 0 {
			continue
		}
		for _, fam := range []ruleset.Family{ruleset.IPv4, ruleset.IPv6} {
			name := ruleset.SetName(l.Name, "ban", fam)
			_, elems, err := c.Elements(cfg.Table.Name, name, false)
			if errors.Is(err, fs.ErrNotExist) {
				continue // no such table or set (yet)
			}
			if err != nil {
				return nil, err
			}
			found = true
			for _, e := range elems {
				f.Bans = append(f.Bans, Ban{Limit: l.Name, Source: e.Addr, Until: now.Add(e.Expires).UTC().Truncate(time.Millisecond)})
			}
		}
	}
	if !found {
		return nil, ErrNoBanSets
	}
	sort.Slice(f.Bans, func(a, b int) bool {
		if f.Bans[a].Limit != f.Bans[b].Limit {
			return f.Bans[a].Limit < f.Bans[b].Limit
		}
		return f.Bans[a].Source.Less(f.Bans[b].Source)
	})
	return f, nil
}

// Save writes f to path atomically: a reader sees the old file or the new
// one, never a part, also across a crash.
func Save(path string, f *File) error {
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save bans: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".bans-*.json")
	if err != nil {
		return fmt.Errorf("save bans: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("save bans: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("save bans: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save bans: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save bans: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// Load reads the state file. A missing file is no bans.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &File{Version: version}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load bans: %w", err)
	}
	var f File
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("load bans from %s: %w", path, err)
	}
	if f.Version != version {
		return nil, fmt.Errorf("load bans from %s: unknown version %d", path, f.Version)
	}
	return &f, nil
}

// Restore puts the bans of f that still have time left (counted from now)
// back into the kernel, for the time they have left. A ban whose limit is
// gone, has no ban any more, or groups sources differently now is skipped;
// so is a source that is banned already (its ban is not extended). It
// returns how many bans it restored.
func Restore(c *netlinkx.Conn, cfg *config.Config, f *File, now time.Time) (int, error) {
	n := 0
	for _, b := range f.Bans {
		left := b.Until.Sub(now).Truncate(time.Millisecond)
		if left <= 0 {
			continue
		}
		l, ok := cfg.Limit(b.Limit)
		if !ok || l.Ban == 0 {
			continue
		}
		fam, bits := ruleset.IPv4, l.IPv4Prefix
		if b.Source.Is6() {
			fam, bits = ruleset.IPv6, l.IPv6Prefix
		}
		if p, err := b.Source.Prefix(bits); err != nil || p.Addr() != b.Source {
			continue // grouped differently now
		}
		if err := c.AddElement(cfg.Table.Name, ruleset.SetName(l.Name, "ban", fam), b.Source, left); err != nil {
			return n, fmt.Errorf("restore ban of %s by %s: %w", b.Source, l.Name, err)
		}
		n++
	}
	return n, nil
}
