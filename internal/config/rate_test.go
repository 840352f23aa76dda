package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestConvertRate(t *testing.T) {
	t.Parallel()
	day := 24 * time.Hour
	tests := []struct {
		rate  string
		want  Rate
		exact bool
	}{
		// SPEC's example: the kernel's "6/minute burst 10".
		{"10/100s", Rate{Count: 6, Unit: time.Minute, Burst: 10}, true},
		{"3/second", Rate{Count: 3, Unit: time.Second, Burst: 3}, true},
		{"3/1s", Rate{Count: 3, Unit: time.Second, Burst: 3}, true},
		// Named units are windows like any other: the smallest unit wins.
		{"60/minute", Rate{Count: 1, Unit: time.Second, Burst: 60}, true},
		{"5/minute", Rate{Count: 5, Unit: time.Minute, Burst: 5}, true},
		{"5/1m30s", Rate{Count: 200, Unit: time.Hour, Burst: 5}, true},
		{"1/hour", Rate{Count: 1, Unit: time.Hour, Burst: 1}, true},
		{"1/day", Rate{Count: 1, Unit: day, Burst: 1}, true},
		{"1/week", Rate{Count: 1, Unit: week, Burst: 1}, true},
		{"2/week", Rate{Count: 2, Unit: week, Burst: 2}, true},
		{"1/7s", Rate{Count: 86400, Unit: week, Burst: 1}, true},
		{"7/168h", Rate{Count: 1, Unit: day, Burst: 7}, true},
		{"1/500ms", Rate{Count: 2, Unit: time.Second, Burst: 1}, true},
		{"1/1ns", Rate{Count: 1e9, Unit: time.Second, Burst: 1}, true},
		{" 10 / 100s ", Rate{Count: 6, Unit: time.Minute, Burst: 10}, true},
		// No unit gives a whole number: rounded down in weeks.
		{"1/11s", Rate{Count: 54981, Unit: week, Burst: 1}, false},
		{"1/312h", Rate{}, false}, // less than 1/week: an error
		{"4294967295/1ns", Rate{Count: 4294967295e9, Unit: time.Second, Burst: 4294967295}, true},
	}
	for _, tt := range tests {
		n, window, err := parseRate(tt.rate)
		if err != nil {
			t.Errorf("parseRate(%q): %v", tt.rate, err)
			continue
		}
		got, exact, err := convertRate(n, window)
		if tt.want.Count == 0 {
			if err == nil {
				t.Errorf("convertRate(%q) = %+v, want an error", tt.rate, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("convertRate(%q): %v", tt.rate, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" || exact != tt.exact {
			t.Errorf("convertRate(%q): exact %v, want %v; (-want +got):\n%s", tt.rate, exact, tt.exact, diff)
		}
	}
}

func TestConvertRateBounds(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		n      uint64
		window time.Duration
	}{
		{0, time.Second},
		{1 << 32, time.Second},
		{1, 0},
		{1, -time.Second},
	} {
		if r, _, err := convertRate(tt.n, tt.window); err == nil {
			t.Errorf("convertRate(%d, %s) = %+v, want an error", tt.n, tt.window, r)
		}
	}
}

func TestParseRateErrors(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		"", "10", "/1s", "x/1s", "-1/1s", "0/1s", "4294967296/1s", "1.5/1s",
		"1/", "1/s", "1/seconds", "1/0s", "1/-1s", "1/1s/2",
	} {
		if n, w, err := parseRate(s); err == nil {
			t.Errorf("parseRate(%q) = %d, %s, want an error", s, n, w)
		}
	}
}

func TestRateString(t *testing.T) {
	t.Parallel()
	r := Rate{Count: 6, Unit: time.Minute, Burst: 10}
	if got, want := r.String(), "6/minute burst 10"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

// TestRateEnabled covers what rate, burst and ban become once the daemon
// enforces them (rateEnforced).
func TestRateEnabled(t *testing.T) {
	t.Parallel()
	cfg, err := testParse(t, `[[limit]]
name = "http-rate"
ports = [80]
interfaces = ["eth0"]
rate = "10/100s"
action = "drop"
ban = "10m"

[[limit]]
name = "both"
ports = [80]
max_connections = 5
rate = "3/second"
burst = 9

[[limit]]
name = "odd"
ports = [80]
rate = "1/11s"
`, nil, nil, true)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	want := []Limit{
		limit("http-rate", ports(80, 80), func(l *Limit) {
			l.MaxConnections = 0
			l.Interfaces = []string{"eth0"}
			l.Rate = &Rate{Count: 6, Unit: time.Minute, Burst: 10}
			l.Action, l.RejectWith = Drop, ""
			l.Ban = 10 * time.Minute
			l.BanEscalate = []time.Duration{10 * time.Minute}
			l.BanWindow = 24 * time.Hour
		}),
		limit("both", ports(80, 80), func(l *Limit) {
			l.MaxConnections = 5
			l.Rate = &Rate{Count: 3, Unit: time.Second, Burst: 9}
		}),
		limit("odd", ports(80, 80), func(l *Limit) {
			l.MaxConnections = 0
			l.Rate = &Rate{Count: 54981, Unit: week, Burst: 1}
		}),
	}
	if diff := cmp.Diff(want, cfg.Limits, append(cmpOpts, cmpopts.IgnoreFields(Limit{}, "Pos"))...); diff != "" {
		t.Errorf("limits (-want +got):\n%s", diff)
	}
	wantWarn := []string{
		`nftlimit.conf:19:8: limit "odd": rate: "1/11s" is not a whole number per second, minute, hour, day or week: using 54981/week burst 1, rounded down`,
	}
	var gotWarn []string
	for _, w := range cfg.Warnings {
		gotWarn = append(gotWarn, w.Error())
	}
	if diff := cmp.Diff(wantWarn, gotWarn); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
}

// TestParseIsPublicForRates: Parse (not only the test path) accepts rate,
// burst and ban now that they are enforced.
func TestParseIsPublicForRates(t *testing.T) {
	t.Parallel()
	cfg, err := Parse([]File{{Name: "nftlimit.conf", Data: []byte("[[limit]]\nname = \"r\"\nports = [80]\nrate = \"10/100s\"\nburst = 20\nban = \"10m\"\n")}})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if l := cfg.Limits[0]; l.Rate == nil || l.Rate.Burst != 20 || l.Ban != 10*time.Minute {
		t.Errorf("got rate %v ban %v", l.Rate, l.Ban)
	}
}

// TestBanEscalate covers ban_escalate and ban_window.
func TestBanEscalate(t *testing.T) {
	t.Parallel()
	const head = "[[limit]]\nname = \"r\"\nports = [80]\nrate = \"10/100s\"\n"
	for _, tc := range []struct {
		name, text string
		ladder     []time.Duration
		window     time.Duration
		err        string
	}{
		{name: "ladder", text: head + `ban_escalate = ["10m", "1h", "24h"]` + "\n",
			ladder: []time.Duration{10 * time.Minute, time.Hour, 24 * time.Hour}, window: 24 * time.Hour},
		{name: "ban agrees with the first step", text: head + "ban = \"10m\"\nban_escalate = [\"10m\", \"1h\"]\nban_window = \"7h\"\n",
			ladder: []time.Duration{10 * time.Minute, time.Hour}, window: 7 * time.Hour},
		{name: "ban disagrees", text: head + "ban = \"5m\"\nban_escalate = [\"10m\"]\n",
			err: `nftlimit.conf:5:7: limit "r": ban: "5m" differs from the first step of ban_escalate (10m0s): set one or make them agree`},
		{name: "shorter step", text: head + `ban_escalate = ["1h", "10m"]` + "\n",
			err: `nftlimit.conf:5:23: limit "r": ban_escalate: "10m" is shorter than the step before it: each offence must get at least the ban of the one before`},
		{name: "not a duration", text: head + `ban_escalate = ["1d"]` + "\n",
			err: `nftlimit.conf:5:17: limit "r": ban_escalate: "1d" is not a duration like 90s, 10m or 1h30m`},
		{name: "window without ban", text: head + "ban_window = \"1h\"\n",
			err: `nftlimit.conf:5:14: limit "r": ban_window: only applies with ban or ban_escalate`},
		{name: "escalate without rate", text: "[[limit]]\nname = \"r\"\nports = [80]\nmax_connections = 1\nban_escalate = [\"1m\"]\n",
			err: `nftlimit.conf:5:16: limit "r": ban_escalate: only applies with a rate`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]File{{Name: "nftlimit.conf", Data: []byte(tc.text)}})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			l := cfg.Limits[0]
			if diff := cmp.Diff(tc.ladder, l.BanEscalate); diff != "" || l.BanWindow != tc.window || l.Ban != tc.ladder[0] {
				t.Errorf("ladder (-want +got):\n%s\nwindow %v, want %v; ban %v", diff, l.BanWindow, tc.window, l.Ban)
			}
		})
	}
}
