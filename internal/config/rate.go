package config

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
	"time"
)

// rateEnforced says whether this version enforces rate, burst and ban. While
// it is false they are parsed and validated, but a limit that uses them is
// an error: accepting them would promise a protection that is not there.
const rateEnforced = true

// Week is the largest unit a rate can be expressed in.
const week = 7 * 24 * time.Hour

// rateUnits are the units nft can print and parse, smallest first.
var rateUnits = []struct {
	name string
	d    time.Duration
}{
	{"second", time.Second},
	{"minute", time.Minute},
	{"hour", time.Hour},
	{"day", 24 * time.Hour},
	{"week", week},
}

// parseRate parses "N/DURATION" (Go duration syntax: "10/100s", "5/1m30s")
// or "N/UNIT" (second, minute, hour, day, week) into a bucket size and the
// window it refills in.
func parseRate(s string) (n uint64, window time.Duration, err error) {
	count, per, ok := strings.Cut(s, "/")
	if !ok {
		return 0, 0, fmt.Errorf("%q is not N/DURATION (like \"10/100s\") or N/UNIT (second, minute, hour, day or week)", s)
	}
	count, per = strings.TrimSpace(count), strings.TrimSpace(per)
	n, err = strconv.ParseUint(count, 10, 32)
	if err != nil || n == 0 {
		return 0, 0, fmt.Errorf("%q: the count %q is not a whole number from 1 to %d", s, count, uint32(math.MaxUint32))
	}
	for _, u := range rateUnits {
		if per == u.name {
			return n, u.d, nil
		}
	}
	window, err = time.ParseDuration(per)
	if err != nil {
		return 0, 0, fmt.Errorf("%q: %q is neither a duration (like 100s or 1m30s) nor second, minute, hour, day or week", s, per)
	}
	if window <= 0 {
		return 0, 0, fmt.Errorf("%q: the window must be longer than 0", s)
	}
	return n, window, nil
}

// convertRate expresses a token bucket of n tokens, refilled at n per window,
// in the smallest standard unit in which the refill rate is a whole number:
// 10 per 100s is 6/minute with a burst of 10. Where no unit gives a whole
// number, the rate is rounded down in weeks (a slower refill is the safe
// side) and exact is false.
func convertRate(n uint64, window time.Duration) (r Rate, exact bool, err error) {
	if n == 0 || n > math.MaxUint32 || window <= 0 {
		return Rate{}, false, fmt.Errorf("invalid rate %d per %s", n, window)
	}
	var count uint64
	for _, u := range rateUnits {
		// count = n * unit / window, in 128 bits.
		hi, lo := bits.Mul64(n, uint64(u.d))
		if hi >= uint64(window) {
			return Rate{}, false, errors.New("the rate is too high")
		}
		q, rem := bits.Div64(hi, lo, uint64(window))
		if rem == 0 {
			return Rate{Count: q, Unit: u.d, Burst: uint32(n)}, true, nil
		}
		count = q
	}
	if count == 0 {
		return Rate{}, false, errors.New("the rate is lower than 1/week")
	}
	return Rate{Count: count, Unit: week, Burst: uint32(n)}, false, nil
}

// String formats r as nft does: "6/minute burst 10".
func (r Rate) String() string {
	unit := r.Unit.String()
	for _, u := range rateUnits {
		if u.d == r.Unit {
			unit = u.name
		}
	}
	return fmt.Sprintf("%d/%s burst %d", r.Count, unit, r.Burst)
}
