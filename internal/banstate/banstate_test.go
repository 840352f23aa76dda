package banstate

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestSaveLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "bans.json")
	until := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	want := &File{Version: version, Saved: until.Add(-time.Hour), Bans: []Ban{
		{Limit: "web", Source: netip.MustParseAddr("198.51.100.0"), Until: until},
		{Limit: "ssh", Source: netip.MustParseAddr("2001:db8:1::"), Until: until.Add(time.Minute)},
	}}
	if err := Save(path, want); err != nil {
		t.Fatal(err)
	}
	// Saving again replaces the file whole and leaves no temporary file.
	if err := Save(path, want); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil || len(entries) != 1 || entries[0].Name() != "bans.json" {
		t.Errorf("state directory: %v %v, want only bans.json", entries, err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f, err := Load(filepath.Join(dir, "none.json"))
	if err != nil || len(f.Bans) != 0 {
		t.Errorf("missing file: %+v, %v; want no bans", f, err)
	}
	for name, data := range map[string]string{
		"version": `{"version": 7, "bans": []}`,
		"garbage": `{"version": 1, "bans": [`,
		"address": `{"version": 1, "bans": [{"limit": "x", "source": "nope", "until": "2026-11-23T12:00:00Z"}]}`,
	} {
		p := filepath.Join(dir, name+".json")
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(p); err == nil {
			t.Errorf("%s: a bad file loaded", name)
		}
	}
}
