package query

import (
	"errors"
	"testing"
	"time"
)

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
	s := &Service{cfg: DefaultConfig(), finest: time.Minute}
	f.Fuzz(func(t *testing.T, last, from, to string) {
		r, err := ParseRange(last, from, to, now)
		if err == nil {
			err = s.checkRange(r)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("error of another kind for user input: %v", err)
			}
			return
		}
		if !r.To.After(r.From) || !aligned(r.From, time.Minute) || !aligned(r.To, time.Minute) {
			t.Fatalf("accepted a bad range %s", r)
		}
	})
}
