package windows

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// DefaultLast is the range of a query that gives neither last nor from/to
// when ParseRange is used on its own; the query service has its own
// setting (query.default-last).
const DefaultLast = 15 * time.Minute

// Range is a half-open time range [From, To).
type Range struct {
	From time.Time
	To   time.Time
}

// Duration is To − From.
func (r Range) Duration() time.Duration { return r.To.Sub(r.From) }

func (r Range) String() string { return "[" + FormatTime(r.From) + ", " + FormatTime(r.To) + ")" }

// RangeSpec is a range as a client gives it: Last (ending now) or From/To.
// Zero fields are absent; all zero means the default range.
type RangeSpec struct {
	Last time.Duration
	From time.Time
	To   time.Time
	// HasLast tells a given zero Last apart from an absent one.
	HasLast bool
}

// Relative reports whether the range slides with the clock.
func (sp RangeSpec) Relative() bool { return sp.HasLast || (sp.From.IsZero() && sp.To.IsZero()) }

// ParseRangeSpec parses the last, from and to query parameters; empty
// strings are absent. It checks syntax and combination only.
func ParseRangeSpec(last, from, to string) (RangeSpec, error) {
	var sp RangeSpec
	if last != "" {
		if from != "" || to != "" {
			return sp, Invalidf("give either last or from and to, not both")
		}
		d, err := ParseDuration(last)
		if err != nil {
			return sp, Invalidf("last %q is not a duration such as 5m, 2h or 7d", last)
		}
		sp.Last, sp.HasLast = d, true
		return sp, nil
	}
	if (from == "") != (to == "") {
		return sp, Invalidf("from and to must be given together")
	}
	if from == "" {
		return sp, nil
	}
	var err error
	if sp.From, err = parseTime("from", from); err != nil {
		return sp, err
	}
	if sp.To, err = parseTime("to", to); err != nil {
		return sp, err
	}
	return sp, nil
}

func parseTime(name, s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, Invalidf("%s %q is not an RFC 3339 time such as 2026-11-24T10:00:00Z", name, s)
	}
	return t.UTC(), nil
}

// Resolve turns the spec into an absolute range. A last range ends at now
// rounded up to the next multiple of unit (now itself when already on one)
// and must be a positive multiple of unit; an empty spec means last=def.
// Alignment of from/to and the maximum length are checked by
// Reader.CheckRange.
func (sp RangeSpec) Resolve(now time.Time, unit, def time.Duration) (Range, error) {
	if !sp.HasLast && sp.From.IsZero() && sp.To.IsZero() {
		sp.Last, sp.HasLast = def, true
	}
	if sp.HasLast {
		if sp.Last <= 0 || sp.Last%unit != 0 {
			return Range{}, Invalidf("last %s must be a positive whole number of %s windows", FormatDuration(sp.Last), FormatDuration(unit))
		}
		to := ceilTime(now, unit)
		return Range{From: to.Add(-sp.Last), To: to}, nil
	}
	if sp.From.IsZero() || sp.To.IsZero() {
		return Range{}, Invalidf("from and to must be given together")
	}
	return Range{From: sp.From.UTC(), To: sp.To.UTC()}, nil
}

// ParseRange parses the last/from/to parameters of the HTTP API with 1m
// granularity and DefaultLast; see RangeSpec.Resolve.
func ParseRange(last, from, to string, now time.Time) (Range, error) {
	sp, err := ParseRangeSpec(last, from, to)
	if err != nil {
		return Range{}, err
	}
	return sp.Resolve(now, time.Minute, DefaultLast)
}

// Limits bound what one query may ask for.
type Limits struct {
	// MaxN is the largest n of a top query.
	MaxN int
	// MaxRange is the longest range of a query.
	MaxRange time.Duration
	// MaxPoints is the largest number of points of one series.
	MaxPoints int
}

// checkRange validates an absolute range against the finest window and
// the longest range.
func checkRange(r Range, finest, maxRange time.Duration) error {
	if r.From.IsZero() || r.To.IsZero() {
		return Invalidf("from and to must be given together")
	}
	if !r.To.After(r.From) {
		return Invalidf("to %s must be after from %s", FormatTime(r.To), FormatTime(r.From))
	}
	if !Aligned(r.From, finest) {
		return Invalidf("from %s is not aligned to %s windows", r.From.UTC().Format(time.RFC3339Nano), FormatDuration(finest))
	}
	if !Aligned(r.To, finest) {
		return Invalidf("to %s is not aligned to %s windows", r.To.UTC().Format(time.RFC3339Nano), FormatDuration(finest))
	}
	if d := r.To.Sub(r.From); d > maxRange {
		return Invalidf("range of %s is longer than the maximum of %s", FormatDuration(d), FormatDuration(maxRange))
	}
	return nil
}

// checkStep validates a series step over r and returns the number of points.
func checkStep(r Range, step, finest time.Duration, maxPoints int) (int, error) {
	if step <= 0 || step%finest != 0 {
		return 0, Invalidf("step %s must be a positive multiple of %s", FormatDuration(step), FormatDuration(finest))
	}
	span := r.Duration()
	points := int64(span / step)
	if span%step != 0 {
		points++
	}
	if points > int64(maxPoints) {
		return 0, Invalidf("range %s with step %s gives %d points, more than the maximum of %d", FormatDuration(span), FormatDuration(step), points, maxPoints)
	}
	return int(points), nil
}

// ceilTime rounds t up to a multiple of unit since the Unix epoch.
func ceilTime(t time.Time, unit time.Duration) time.Time {
	t = t.UTC()
	fl := FloorTime(t, unit)
	if fl.Equal(t) {
		return t
	}
	return fl.Add(unit)
}

// FloorTime rounds t down to a multiple of unit (whole seconds) since the
// Unix epoch.
func FloorTime(t time.Time, unit time.Duration) time.Time {
	u := int64(unit / time.Second)
	sec := t.Unix()
	return time.Unix(floorDiv(sec, u)*u, 0).UTC()
}

// Aligned reports whether t is a whole multiple of unit (whole seconds)
// since the epoch.
func Aligned(t time.Time, unit time.Duration) bool {
	return t.Nanosecond() == 0 && mod(t.Unix(), int64(unit/time.Second)) == 0
}

func mod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

func floorDiv(a, b int64) int64 { return (a - mod(a, b)) / b }

// FormatTime writes t as RFC 3339 in UTC, the form of every answer.
func FormatTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// ParseDuration is time.ParseDuration plus a leading whole number of days
// ("7d", "1d12h").
func ParseDuration(s string) (time.Duration, error) {
	neg := false
	rest := s
	if strings.HasPrefix(rest, "-") || strings.HasPrefix(rest, "+") {
		neg = rest[0] == '-'
		rest = rest[1:]
	}
	var days int64
	if i := strings.IndexByte(rest, 'd'); i >= 0 {
		n, err := strconv.ParseInt(rest[:i], 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("bad days in %q", s)
		}
		days = n
		rest = rest[i+1:]
	}
	var d time.Duration
	if rest != "" {
		var err error
		if d, err = time.ParseDuration(rest); err != nil {
			return 0, fmt.Errorf("duration %q: %w", s, err)
		}
		if d < 0 {
			return 0, fmt.Errorf("bad duration %q", s)
		}
	} else if days == 0 && !strings.Contains(s, "d") {
		return 0, fmt.Errorf("empty duration")
	}
	const day = 24 * time.Hour
	if days > int64((math.MaxInt64-d)/day) {
		return 0, fmt.Errorf("duration %q is too large", s)
	}
	d += time.Duration(days) * day
	if neg {
		d = -d
	}
	return d, nil
}

// FormatDuration writes whole days as "7d" and drops zero trailing units
// ("1h", "5m", "1m30s").
func FormatDuration(d time.Duration) string {
	const day = 24 * time.Hour
	if d > 0 && d%day == 0 {
		return strconv.FormatInt(int64(d/day), 10) + "d"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// segment is a run of whole windows of one resolution: [from, to) in unix
// seconds, every window of resolution res.
type segment struct {
	res      int
	from, to int64
}

// decompose splits [from, to) (aligned to sizes[0]) into the coarsest
// windows: windows of the finest resolution up to the first boundary of the
// next one, and so on, recursively. sizes are window lengths in seconds,
// ascending, each dividing the next. Segments come out in time order.
func decompose(from, to int64, sizes []int64) []segment {
	var out []segment
	var rec func(from, to int64, level int)
	rec = func(from, to int64, level int) {
		if from >= to {
			return
		}
		if level == 0 {
			out = append(out, segment{res: 0, from: from, to: to})
			return
		}
		s := sizes[level]
		a := from + mod(-from, s) // ceil
		b := to - mod(to, s)      // floor
		if a >= b {
			rec(from, to, level-1)
			return
		}
		rec(from, a, level-1)
		out = append(out, segment{res: level, from: a, to: b})
		rec(b, to, level-1)
	}
	rec(from, to, len(sizes)-1)
	return out
}
