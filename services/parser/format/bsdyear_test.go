package format

import (
	"errors"
	"testing"
	"time"
)

// RFC 3164 dates have no year: the year is the one that makes the date the
// most recent not in the future of the receive time, within
// bsdFutureTolerance.
func TestBSDYear(t *testing.T) {
	at := func(y int, m time.Month, d, hh, mm, ss int) time.Time {
		return time.Date(y, m, d, hh, mm, ss, 0, time.UTC)
	}
	cases := []struct {
		name     string
		stamp    string
		received time.Time
		want     time.Time // zero: bad timestamp
	}{
		{"same day", "Dec  2 07:30:00", at(2026, 12, 2, 7, 30, 5), at(2026, 12, 2, 7, 30, 0)},
		{"New Year: Dec 31 line received Jan 1 00:00:05 is last year's", "Dec 31 23:59:59", at(2027, 1, 1, 0, 0, 5), at(2026, 12, 31, 23, 59, 59)},
		{"New Year: Jan 1 line a minute ahead of Dec 31 is next year's", "Jan  1 00:00:30", at(2026, 12, 31, 23, 59, 30), at(2027, 1, 1, 0, 0, 30)},
		{"New Year: Jan 1 line from UTC+14 received Dec 31 10:30 UTC", "Jan  1 00:29:00", at(2026, 12, 31, 10, 30, 0), at(2027, 1, 1, 0, 29, 0)},
		{"New Year: Jan 1 line received Jan 1 is this year's", "Jan  1 00:00:01", at(2027, 1, 1, 0, 0, 5), at(2027, 1, 1, 0, 0, 1)},
		{"New Year: Dec 31 line received Dec 31", "Dec 31 23:59:59", at(2026, 12, 31, 23, 59, 59), at(2026, 12, 31, 23, 59, 59)},
		{"replayed backlog: Dec 30 received Dec 28 is a year back", "Dec 30 12:00:00", at(2026, 12, 28, 12, 0, 0), at(2025, 12, 30, 12, 0, 0)},
		{"just inside the tolerance", "Dec  2 22:00:00", at(2026, 12, 2, 7, 0, 0), at(2026, 12, 2, 22, 0, 0)},
		{"just past the tolerance", "Dec  2 22:00:01", at(2026, 12, 2, 7, 0, 0), at(2025, 12, 2, 22, 0, 1)},
		{"April date received in March is last year's", "Apr 10 08:00:00", at(2027, 3, 15, 12, 0, 0), at(2026, 4, 10, 8, 0, 0)},
		{"March date received in April is this year's", "Mar 27 06:25:00", at(2027, 4, 20, 12, 0, 0), at(2027, 3, 27, 6, 25, 0)},
		{"a day ago", "Dec  1 07:30:00", at(2026, 12, 2, 7, 30, 0), at(2026, 12, 1, 7, 30, 0)},
		{"Feb 29 in a leap year", "Feb 29 10:00:00", at(2028, 3, 1, 0, 0, 0), at(2028, 2, 29, 10, 0, 0)},
		{"Feb 29 just ahead on Feb 28 of a leap year", "Feb 29 00:30:00", at(2028, 2, 28, 23, 0, 0), at(2028, 2, 29, 0, 30, 0)},
		{"Feb 29 received in a common year is the last leap day", "Feb 29 10:00:00", at(2027, 3, 1, 0, 0, 0), at(2024, 2, 29, 10, 0, 0)},
		{"Feb 29 received in January of a leap year", "Feb 29 10:00:00", at(2028, 1, 15, 0, 0, 0), at(2024, 2, 29, 10, 0, 0)},
		{"Feb 29 across the common century year 2100", "Feb 29 10:00:00", at(2103, 6, 1, 0, 0, 0), at(2096, 2, 29, 10, 0, 0)},
		{"Feb 30 never exists", "Feb 30 10:00:00", at(2028, 3, 1, 0, 0, 0), time.Time{}},
		{"explicit year is kept past the tolerance", "Dec 29 2026 06:00:00", at(2026, 12, 28, 12, 0, 0), at(2026, 12, 29, 6, 0, 0)},
		{"explicit year Feb 29 of a common year", "Feb 29 2027 10:00:00", at(2027, 3, 1, 0, 0, 0), time.Time{}},
	}
	p := New(Options{})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, n, err := parseBSDTime([]byte(tc.stamp+" host sshd[1]: x"), tc.received)
			if tc.want.IsZero() {
				if !errors.Is(err, ErrBadTimestamp) {
					t.Fatalf("got %v, %v; want a bad timestamp", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(tc.want) || n != len(tc.stamp) {
				t.Fatalf("got %v (%d bytes), want %v (%d bytes)", got, n, tc.want, len(tc.stamp))
			}
			// The same through Parse, for a line of both syslog shapes.
			for _, line := range []string{"<38>" + tc.stamp + " host sshd[1]: Failed password for root from 203.0.113.7 port 22 ssh2",
				tc.stamp + " host sshd[1]: Failed password for root from 203.0.113.7 port 22 ssh2"} {
				var rec Record
				if err := p.Parse([]byte(line), Auto, tc.received, &rec); err != nil {
					t.Fatalf("Parse(%q): %v", line, err)
				}
				if !rec.Time.Equal(tc.want) || !rec.AuthFailure {
					t.Fatalf("Parse(%q): time %v auth %v, want %v and an auth failure", line, rec.Time, rec.AuthFailure, tc.want)
				}
			}
		})
	}
}

// The tolerance must stay under the parser's default future bound, or a
// date the year rule puts ahead would be dead-lettered.
func TestBSDToleranceBelowMaxFuture(t *testing.T) {
	if bsdFutureTolerance >= DefaultMaxFuture {
		t.Fatalf("bsdFutureTolerance %v >= DefaultMaxFuture %v", bsdFutureTolerance, DefaultMaxFuture)
	}
	if bsdFutureTolerance < 14*time.Hour {
		t.Fatalf("bsdFutureTolerance %v does not cover senders at UTC+14:00", bsdFutureTolerance)
	}
}
