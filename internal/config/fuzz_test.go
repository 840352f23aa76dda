package config

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
)

// errorLine is what every problem looks like: FILE:LINE:COL: message.
var errorLine = regexp.MustCompile(`^(main\.conf|nftlimit\.d/s\.conf):([0-9]+):([0-9]+): \S`)

func FuzzParse(f *testing.F) {
	ref, err := os.ReadFile("../../nftlimit.conf")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ref, []byte(""))
	f.Add([]byte(""), []byte("[[limit]]\nname = \"a\"\nports = [1, \"2-3\"]\nmax_connections = 1\n"))
	f.Add([]byte("[defaults]\nexempt_file = \"x\"\n[[limit]]\nname = \"x\"\nports = [1]\nrate = \"1/11s\"\nban = \"1m\"\n"), []byte("[table]\n"))
	f.Add([]byte("a.b.c = 1\n[a.b]\n[[a.b.d]]\nx = {y = [1, [2, {z = 3}]]}\n"), []byte("[[limit]\n"))
	f.Add([]byte("[[limit]]\nname = \"é\"\nports = [0x10, 1_000, -1, 1e3, 2021-01-01]\nexempt = [\"10.0.0.1/8\"]\n"), []byte("\uFEFF"))

	f.Fuzz(func(t *testing.T, main, snippet []byte) {
		files := []File{{Name: "main.conf", Data: main}, {Name: "nftlimit.d/s.conf", Data: snippet}}
		cfg, err := parse(files, options{open: fakeFiles{}.open, rates: true})
		if err == nil {
			checkConfig(t, cfg)
			return
		}
		if cfg != nil {
			t.Fatalf("got a config and an error: %v", err)
		}
		var list ErrorList
		if !errors.As(err, &list) || len(list) == 0 {
			t.Fatalf("error %v (%T) is not a non-empty ErrorList", err, err)
		}
		for _, e := range list {
			if !errorLine.MatchString(e.Error()) {
				t.Errorf("error %q does not start with FILE:LINE:COL", e.Error())
			}
			if e.Pos.Line < 1 || e.Pos.Col < 1 {
				t.Errorf("error %q: line and column must be at least 1", e.Error())
			}
		}
	})
}

// checkConfig checks the promises of a valid Config.
func checkConfig(t *testing.T, cfg *Config) {
	t.Helper()
	names := map[string]bool{}
	for _, l := range cfg.Limits {
		if problem := limitNameProblem(l.Name); problem != "" || names[l.Name] {
			t.Errorf("limit %q: bad or duplicate name", l.Name)
		}
		names[l.Name] = true
		if len(l.Ports) == 0 {
			t.Errorf("limit %q: no ports", l.Name)
		}
		for i, r := range l.Ports {
			if r.From == 0 || r.From > r.To || i > 0 && int(l.Ports[i-1].To)+1 >= int(r.From) {
				t.Errorf("limit %q: ports %v are not sorted and merged", l.Name, l.Ports)
			}
		}
		if l.MaxConnections == 0 && l.Rate == nil {
			t.Errorf("limit %q: limits nothing", l.Name)
		}
		for _, ps := range [][]netip.Prefix{l.Exempt, l.Destinations} {
			for i, p := range ps {
				if p != p.Masked() || i > 0 && ps[i-1].Compare(p) >= 0 {
					t.Errorf("limit %q: prefixes %v are not masked, sorted and unique", l.Name, ps)
				}
			}
		}
		if l.Action == Reject && l.RejectWith == "" || l.Action != Reject && l.RejectWith != "" {
			t.Errorf("limit %q: action %q with reject_with %q", l.Name, l.Action, l.RejectWith)
		}
		if l.Protocol == UDP && l.RejectWith == TCPReset {
			t.Errorf("limit %q: tcp-reset on udp", l.Name)
		}
	}
	for _, w := range cfg.Warnings {
		if !errorLine.MatchString(w.Error()) {
			t.Errorf("warning %q does not start with FILE:LINE:COL", w.Error())
		}
	}
}

// writeExemptFile writes n lines of addresses and CIDRs, in no order, with
// some comments and blank lines.
func writeExemptFile(tb testing.TB, path string, n int) {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriter(f)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range n {
		switch {
		case i%1000 == 0:
			fmt.Fprintln(w, "# a comment")
		case i%1000 == 1:
			fmt.Fprintln(w)
		case i%10 == 0:
			fmt.Fprintf(w, "2001:db8:%x:%x::/64\n", r.Uint32()&0xffff, r.Uint32()&0xffff)
		case i%10 == 1:
			fmt.Fprintf(w, "%d.%d.%d.0/24\n", 1+r.IntN(223), r.IntN(256), r.IntN(256))
		default:
			fmt.Fprintf(w, "%d.%d.%d.%d\n", 1+r.IntN(223), r.IntN(256), r.IntN(256), r.IntN(256))
		}
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
}

func BenchmarkExemptFile1M(b *testing.B) {
	dir := b.TempDir()
	writeExemptFile(b, filepath.Join(dir, "big.txt"), 1_000_000)
	conf := filepath.Join(dir, "nftlimit.conf")
	data := []byte("[[limit]]\nname = \"big\"\nports = [80]\nmax_connections = 10\nexempt_file = \"big.txt\"\n")
	if err := os.WriteFile(conf, data, 0o644); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		cfg, err := Load(conf)
		if err != nil {
			b.Fatal(err)
		}
		if n := len(cfg.Limits[0].Exempt); n < 900_000 {
			b.Fatalf("only %d exempt prefixes", n)
		}
	}
}

// TestExemptFileLarge checks that a large exempt file is read completely,
// sorted and de-duplicated.
func TestExemptFileLarge(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "big.txt")
	writeExemptFile(t, path, 100_000)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var errs ErrorList
	got := readExemptFile(path, f, &errs)
	if len(errs) > 0 {
		t.Fatalf("errors: %v", errs)
	}
	if len(got) < 99_000 || !slices.IsSortedFunc(got, netip.Prefix.Compare) || len(slices.Compact(slices.Clone(got))) != len(got) {
		t.Errorf("got %d prefixes, not sorted or not unique", len(got))
	}
}
