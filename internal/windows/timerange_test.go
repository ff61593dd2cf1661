package windows

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func TestDecompose(t *testing.T) {
	sizes := []int64{60, 3600}
	u := func(s string) int64 { return at(s).Unix() }
	got := decompose(u("2026-11-24T09:57:00Z"), u("2026-11-24T12:03:00Z"), sizes)
	want := []segment{
		{0, u("2026-11-24T09:57:00Z"), u("2026-11-24T10:00:00Z")},
		{1, u("2026-11-24T10:00:00Z"), u("2026-11-24T12:00:00Z")},
		{0, u("2026-11-24T12:00:00Z"), u("2026-11-24T12:03:00Z")},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v want %v", got, want)
	}
	if got := decompose(u("2026-11-24T10:13:00Z"), u("2026-11-24T11:00:00Z"), sizes); len(got) != 1 || got[0].res != 0 {
		t.Fatalf("within an hour: %v", got)
	}
	// Three levels: 1m, 1h, 1d.
	got = decompose(u("2026-11-23T23:58:00Z"), u("2026-11-26T01:02:00Z"), []int64{60, 3600, 86400})
	want = []segment{
		{0, u("2026-11-23T23:58:00Z"), u("2026-11-24T00:00:00Z")},
		{2, u("2026-11-24T00:00:00Z"), u("2026-11-26T00:00:00Z")},
		{1, u("2026-11-26T00:00:00Z"), u("2026-11-26T01:00:00Z")},
		{0, u("2026-11-26T01:00:00Z"), u("2026-11-26T01:02:00Z")},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("3 levels: got %v want %v", got, want)
	}
}

func TestParseRange(t *testing.T) {
	now := at("2026-11-24T10:00:10Z")
	r, err := ParseRange("5m", "", "", now)
	if err != nil || !r.To.Equal(at("2026-11-24T10:01:00Z")) || r.Duration() != 5*time.Minute {
		t.Fatalf("%v %v", r, err)
	}
	r, err = ParseRange("7d", "", "", at("2026-11-24T10:00:00Z"))
	if err != nil || !r.To.Equal(at("2026-11-24T10:00:00Z")) || r.Duration() != 7*24*time.Hour {
		t.Fatalf("%v %v", r, err)
	}
	r, err = ParseRange("", "", "", now)
	if err != nil || r.Duration() != DefaultLast {
		t.Fatalf("default: %v %v", r, err)
	}
	for _, bad := range [][3]string{{"90s", "", ""}, {"-1d", "", ""}, {"", "2026-11-24T10:00:00Z", ""}, {"x", "", ""}} {
		if _, err := ParseRange(bad[0], bad[1], bad[2], now); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	for in, want := range map[string]time.Duration{"1d": 24 * time.Hour, "1d12h": 36 * time.Hour, "90m": 90 * time.Minute, "-5m": -5 * time.Minute} {
		if d, err := ParseDuration(in); err != nil || d != want {
			t.Errorf("ParseDuration(%q) = %v, %v", in, d, err)
		}
	}
	if _, err := ParseDuration("999999999d"); err == nil {
		t.Error("overflow accepted")
	}
	for d, want := range map[time.Duration]string{400 * 24 * time.Hour: "400d", time.Hour: "1h", 90 * time.Second: "1m30s", 5 * time.Minute: "5m", 90 * time.Minute: "1h30m"} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q want %q", d, got, want)
		}
	}
}

// FuzzParseRange: any user input, through the same parsing and checks as
// the API, gives either a valid aligned range or an invalid-argument error,
// never a panic or another kind of error.
func FuzzParseRange(f *testing.F) {
	for _, s := range [][3]string{
		{"5m", "", ""}, {"", "2026-11-24T10:00:00Z", "2026-11-24T11:00:00Z"}, {"90s", "", ""},
		{"-5m", "", ""}, {"1d", "", ""}, {"876000h", "", ""}, {"", "2026-11-24T10:00:30Z", "x"},
		{"", "0001-01-01T00:00:00Z", "9999-12-31T23:59:00Z"}, {"1e9h", "", ""},
	} {
		f.Add(s[0], s[1], s[2])
	}
	now := time.Date(2026, 11, 24, 10, 7, 13, 0, time.UTC)
	lim := DefaultConfig().Limits
	f.Fuzz(func(t *testing.T, last, from, to string) {
		r, err := ParseRange(last, from, to, now)
		if err == nil {
			err = checkRange(r, time.Minute, lim.MaxRange)
		}
		if err == nil {
			_, err = checkStep(r, time.Minute, time.Minute, 1<<62)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("error of another kind for user input: %v", err)
			}
			return
		}
		if !r.To.After(r.From) || !Aligned(r.From, time.Minute) || !Aligned(r.To, time.Minute) || r.Duration() > lim.MaxRange {
			t.Fatalf("accepted a bad range %s", r)
		}
	})
}
