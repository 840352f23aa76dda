package config

import (
	"errors"
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

// TestRateGate checks that, while rateEnforced is false, Parse refuses rate,
// burst and ban, and names each.
func TestRateGate(t *testing.T) {
	t.Parallel()
	if rateEnforced {
		t.Skip("rate limits are enforced")
	}
	_, err := Parse([]File{{Name: "nftlimit.conf", Data: []byte(`[[limit]]
name = "r"
ports = [80]
max_connections = 3
rate = "10/100s"
burst = 20
ban = "10m"
`)}})
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("got %v, want an ErrorList", err)
	}
	want := []string{
		`nftlimit.conf:5:8: limit "r": rate: rate limits are not supported by this version yet`,
		`nftlimit.conf:6:9: limit "r": burst: rate limits are not supported by this version yet`,
		`nftlimit.conf:7:7: limit "r": ban: bans are not supported by this version yet`,
	}
	var got []string
	for _, e := range list {
		got = append(got, e.Error())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}
