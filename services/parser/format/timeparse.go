package format

import "time"

// Hand-written timestamp parsers: time.Parse costs several hundred ns and
// allocates on error, which is most of the per-line budget, and it does not
// reject "31/Feb" consistently with what we want.

func monthOf(b []byte) int {
	if len(b) < 3 {
		return 0
	}
	switch string(b[:3]) {
	case "Jan":
		return 1
	case "Feb":
		return 2
	case "Mar":
		return 3
	case "Apr":
		return 4
	case "May":
		return 5
	case "Jun":
		return 6
	case "Jul":
		return 7
	case "Aug":
		return 8
	case "Sep":
		return 9
	case "Oct":
		return 10
	case "Nov":
		return 11
	case "Dec":
		return 12
	}
	return 0
}

func isLeap(y int) bool { return y%4 == 0 && (y%100 != 0 || y%400 == 0) }

func daysIn(m, y int) int {
	switch m {
	case 2:
		if isLeap(y) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// num parses exactly n ASCII digits at b[i:].
func num(b []byte, i, n int) (int, bool) {
	if i < 0 || i+n > len(b) {
		return 0, false
	}
	v := 0
	for _, c := range b[i : i+n] {
		if !isDigit(c) {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

// civil converts a proleptic Gregorian date-time (not validated; out-of-range
// days roll over) to UTC. Days-from-civil after Howard Hinnant, which avoids
// time.Date's normalisation and location work.
func civil(y, m, d, hh, mm, ss, ns int, offsetSec int) time.Time {
	if m <= 2 {
		y--
	}
	era := y
	if era < 0 {
		era -= 399
	}
	era /= 400
	yoe := y - era*400
	mp := m + 9
	if m > 2 {
		mp = m - 3
	}
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	days := int64(era)*146097 + int64(doe) - 719468
	sec := days*86400 + int64(hh*3600+mm*60+ss) - int64(offsetSec)
	return time.Unix(sec, int64(ns)).UTC()
}

func validClock(hh, mm, ss int) bool { return hh < 24 && mm < 60 && ss < 60 }

// fraction parses ".ddd" at b[i:], returning nanoseconds and the index after
// it. Digits beyond nanosecond precision are accepted and ignored.
func fraction(b []byte, i int) (ns, next int, ok bool) {
	if i >= len(b) || (b[i] != '.' && b[i] != ',') {
		return 0, i, true
	}
	i++
	start := i
	scale := 100000000
	for i < len(b) && isDigit(b[i]) {
		ns += int(b[i]-'0') * scale
		scale /= 10
		i++
	}
	return ns, i, i > start
}

// parseCLFTime parses the contents of the CLF brackets,
// "10/Oct/2000:13:55:36 -0700", optionally with fractional seconds.
// Bracketed ISO 8601 timestamps, used by some custom log formats, are
// accepted too.
func parseCLFTime(b []byte) (time.Time, bool) {
	if len(b) >= 5 && b[4] == '-' {
		return parseISO(b)
	}
	if len(b) < 20 || b[2] != '/' || b[6] != '/' || b[11] != ':' || b[14] != ':' || b[17] != ':' {
		return time.Time{}, false
	}
	d, ok1 := num(b, 0, 2)
	m := monthOf(b[3:6])
	y, ok2 := num(b, 7, 4)
	hh, ok3 := num(b, 12, 2)
	mm, ok4 := num(b, 15, 2)
	ss, ok5 := num(b, 18, 2)
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || m == 0 || y == 0 || d < 1 || d > daysIn(m, y) || !validClock(hh, mm, ss) {
		return time.Time{}, false
	}
	ns, i, ok := fraction(b, 20)
	if !ok {
		return time.Time{}, false
	}
	off := 0
	if i < len(b) {
		if b[i] != ' ' {
			return time.Time{}, false
		}
		if off, ok = zoneOffset(b[i+1:]); !ok {
			return time.Time{}, false
		}
	}
	return civil(y, m, d, hh, mm, ss, ns, off), true
}

// zoneOffset parses a whole "Z", "+hh:mm" or "+hhmm" into seconds east.
func zoneOffset(b []byte) (int, bool) {
	if len(b) == 1 && (b[0] == 'Z' || b[0] == 'z') {
		return 0, true
	}
	if (len(b) != 5 && len(b) != 6) || (b[0] != '+' && b[0] != '-') {
		return 0, false
	}
	hh, ok1 := num(b, 1, 2)
	mi := 3
	if len(b) == 6 {
		if b[3] != ':' {
			return 0, false
		}
		mi = 4
	}
	mm, ok2 := num(b, mi, 2)
	if !ok1 || !ok2 || hh > 23 || mm > 59 {
		return 0, false
	}
	off := hh*3600 + mm*60
	if b[0] == '-' {
		off = -off
	}
	return off, true
}

// parseISO parses an RFC 3339 timestamp (the syslog and JSON flavour of
// ISO 8601): "2026-11-24T10:00:00[.frac](Z|±hh:mm|±hhmm)". A ' ' separator
// is accepted, and a missing zone means UTC.
func parseISO(b []byte) (time.Time, bool) {
	if len(b) < 19 || b[4] != '-' || b[7] != '-' || b[13] != ':' || b[16] != ':' {
		return time.Time{}, false
	}
	if c := b[10]; c != 'T' && c != 't' && c != ' ' {
		return time.Time{}, false
	}
	y, ok1 := num(b, 0, 4)
	m, ok2 := num(b, 5, 2)
	d, ok3 := num(b, 8, 2)
	hh, ok4 := num(b, 11, 2)
	mm, ok5 := num(b, 14, 2)
	ss, ok6 := num(b, 17, 2)
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 || y == 0 || m < 1 || m > 12 || d < 1 || d > daysIn(m, y) || !validClock(hh, mm, ss) {
		return time.Time{}, false
	}
	ns, i, ok := fraction(b, 19)
	if !ok {
		return time.Time{}, false
	}
	off := 0
	if i < len(b) {
		if off, ok = zoneOffset(b[i:]); !ok {
			return time.Time{}, false
		}
	}
	return civil(y, m, d, hh, mm, ss, ns, off), true
}

// looksISOTime reports whether b starts like an RFC 3339 timestamp with a
// 'T' separator (the rsyslog file format). The space-separated variant is
// left out because plenty of application logs start with one and are not
// syslog.
func looksISOTime(b []byte) bool {
	return len(b) >= 20 && isDigit(b[0]) && isDigit(b[3]) && b[4] == '-' && b[7] == '-' && (b[10] == 'T' || b[10] == 't') && b[13] == ':'
}

// looksBSDTime reports whether b starts with an RFC 3164 "Mmm dd hh:mm"
// timestamp (day possibly space-padded).
func looksBSDTime(b []byte) bool {
	if len(b) < 15 || b[3] != ' ' || monthOf(b) == 0 {
		return false
	}
	i := 4
	if b[i] == ' ' {
		i++
	}
	for i < len(b) && i < 7 && isDigit(b[i]) {
		i++
	}
	return i < len(b) && b[i] == ' ' && isDigit(b[i-1])
}
