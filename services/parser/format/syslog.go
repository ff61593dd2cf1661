package format

import (
	"bytes"
	"fmt"
	"net/netip"
	"time"
)

// Syslog is parsed by hand rather than with go-syslog: only the header
// needs understanding (PRI, timestamp, where MSG starts), real-world RFC
// 3164 senders deviate in ways a strict machine rejects, and the year of a
// 3164 timestamp has to be inferred from the receive time anyway.

// bsdFutureTolerance bounds how far past the receive time an RFC 3164
// timestamp, which has no year, may lie and still be taken as this year's
// (or, just before New Year, next year's); a date further ahead is last
// year's. Like rsyslog, the year is the one that makes the date the most
// recent not in the future, so a replayed backlog — a "Dec 30" line
// received on Dec 28 — lands a year back, not two days ahead.
//
// The tolerance is not a few seconds of clock skew because a 3164
// timestamp is the sender's local wall-clock time without a zone, and
// logtally reads it as UTC: a correct clock east of UTC writes stamps up to
// 14 hours (UTC+14:00, the Line Islands) ahead of the receive time. 15
// hours covers every zone plus an hour of skew; it stays below the
// parser's default max-future bound of 24 hours, so a date the year rule
// puts ahead is still counted, not dead-lettered.
const bsdFutureTolerance = 15 * time.Hour

// bsdMaxYearsBack is how many years back the year search goes: "Feb 29"
// received in a common year is the most recent leap day, up to 8 years
// back across a century year that is not a leap year (2100).
const bsdMaxYearsBack = 8

func (p *Parser) parseSyslog(line []byte, received time.Time, rec *Record) error {
	b := line
	hasPRI := false
	if b[0] == '<' {
		end := bytes.IndexByte(b, '>')
		if end < 2 || end > 4 {
			return fmt.Errorf("%w: bad PRI in %s", ErrBadSyslog, q(line))
		}
		pri, ok := parseUint(b[1:end])
		if !ok || pri > 191 {
			return fmt.Errorf("%w: bad PRI %s", ErrBadSyslog, q(b[:end+1]))
		}
		b = b[end+1:]
		hasPRI = true
	}
	if hasPRI && len(b) >= 2 && b[0] >= '1' && b[0] <= '9' && (b[1] == ' ' || (len(b) >= 3 && isDigit(b[1]) && b[2] == ' ')) {
		return p.parse5424(line, b, received, rec)
	}

	var t time.Time
	switch {
	case looksBSDTime(b):
		var (
			n   int
			err error
		)
		if t, n, err = parseBSDTime(b, received); err != nil {
			return err
		}
		if err := p.checkTime(t, received, b[:n]); err != nil {
			return err
		}
		b = b[n:]
		b = skipHost(b)
	case looksISOTime(b):
		ts, n := nextField(b, 0)
		var ok bool
		if t, ok = parseISO(ts); !ok {
			return fmt.Errorf("%w: %s", ErrBadTimestamp, q(ts))
		}
		if err := p.checkTime(t, received, ts); err != nil {
			return err
		}
		b = skipHost(b[n:])
	case hasPRI:
		// RFC 3164 §4.3.2: a message without a recognisable header is
		// still a message; its time is the receive time.
		t = received
	default:
		return fmt.Errorf("%w: no <PRI> or timestamp at start of %s", ErrBadSyslog, q(line))
	}
	return p.setMsgIP(rec, b, t, received, line)
}

// skipHost drops the HOSTNAME field after a 3164 timestamp so that the
// reporting device's own address is not mistaken for a client. A field
// that looks like a TAG ("sshd[42]:", "kernel:") means the sender omitted
// the hostname, so it is kept as part of the message.
func skipHost(b []byte) []byte {
	f, n := nextField(b, 0)
	if len(f) == 0 || f[len(f)-1] == ':' || bytes.IndexByte(f, '[') >= 0 {
		return b
	}
	return b[n:]
}

// parseBSDTime parses "Mmm dd hh:mm:ss" (also "Mmm  d", "Mmm dd yyyy
// hh:mm:ss" and fractional seconds) and returns the time and the number of
// bytes consumed. Without a year the year is inferred from received (see
// bsdFutureTolerance).
func parseBSDTime(b []byte, received time.Time) (time.Time, int, error) {
	bad := func() (time.Time, int, error) {
		f := b
		if len(f) > 15 {
			f = f[:15]
		}
		return time.Time{}, 0, fmt.Errorf("%w: %s", ErrBadTimestamp, q(f))
	}
	m := monthOf(b)
	i := 4
	if b[i] == ' ' {
		i++
	}
	d := 0
	start := i
	for i < len(b) && isDigit(b[i]) && i-start < 2 {
		d = d*10 + int(b[i]-'0')
		i++
	}
	if i >= len(b) || b[i] != ' ' {
		return bad()
	}
	i++
	y := 0
	if len(b) >= i+5 && isDigit(b[i+2]) && b[i+4] == ' ' {
		var ok bool
		if y, ok = num(b, i, 4); !ok || y == 0 {
			return bad()
		}
		i += 5
	}
	if len(b) < i+8 || b[i+2] != ':' || b[i+5] != ':' {
		return bad()
	}
	hh, ok1 := num(b, i, 2)
	mm, ok2 := num(b, i+3, 2)
	ss, ok3 := num(b, i+6, 2)
	if !ok1 || !ok2 || !ok3 || !validClock(hh, mm, ss) || d < 1 || d > 31 {
		return bad()
	}
	ns, n, ok := fraction(b, i+8)
	if !ok {
		return bad()
	}
	if n < len(b) && b[n] != ' ' {
		// Cisco appends ':' to the timestamp.
		if b[n] != ':' {
			return bad()
		}
		n++
	}
	if y == 0 {
		// The most recent year in which the date exists and is not more
		// than the tolerance past received: usually received's year, the
		// previous one for a date later in the year than received (a
		// December line read in January, a backlog replayed), the next
		// one for a sender whose clock already passed midnight on New
		// Year's Eve.
		for c := received.Year() + 1; c >= received.Year()-bsdMaxYearsBack; c-- {
			if d <= daysIn(m, c) && civil(c, m, d, hh, mm, ss, ns, 0).Sub(received) <= bsdFutureTolerance {
				y = c
				break
			}
		}
		if y == 0 {
			return bad()
		}
	}
	if d > daysIn(m, y) {
		return bad()
	}
	return civil(y, m, d, hh, mm, ss, ns, 0), n, nil
}

// parse5424 parses "<PRI>VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID
// STRUCTURED-DATA [MSG]"; b starts at VERSION.
func (p *Parser) parse5424(line, b []byte, received time.Time, rec *Record) error {
	_, i := nextField(b, 0) // VERSION
	ts, i := nextField(b, i)
	t := received
	if !(len(ts) == 1 && ts[0] == '-') {
		var ok bool
		if t, ok = parseISO(ts); !ok {
			return fmt.Errorf("%w: %s", ErrBadTimestamp, q(ts))
		}
		if err := p.checkTime(t, received, ts); err != nil {
			return err
		}
	}
	var app []byte
	for k := 0; k < 4; k++ { // HOSTNAME APP-NAME PROCID MSGID
		var f []byte
		if f, i = nextField(b, i); len(f) == 0 {
			return fmt.Errorf("%w: truncated RFC 5424 header in %s", ErrBadSyslog, q(line))
		}
		if k == 1 && !isPlaceholder(f) {
			app = f
		}
	}

	switch {
	case i >= len(b):
		return fmt.Errorf("%w: missing structured data in %s", ErrBadSyslog, q(line))
	case b[i] == '-':
		i++
	case b[i] == '[':
		for i < len(b) && b[i] == '[' {
			start := i
			inQuote := false
			for i++; i < len(b); i++ {
				c := b[i]
				if c == '\\' {
					i++
					continue
				}
				if c == '"' {
					inQuote = !inQuote
				} else if c == ']' && !inQuote {
					break
				}
			}
			if i >= len(b) {
				return fmt.Errorf("%w: unterminated structured data %s", ErrBadSyslog, q(b[start:]))
			}
			i++
		}
	default:
		return fmt.Errorf("%w: bad structured data %s", ErrBadSyslog, q(b[i:]))
	}
	if i < len(b) && b[i] != ' ' {
		return fmt.Errorf("%w: bad structured data %s", ErrBadSyslog, q(b[i:]))
	}
	msg := b[i:]
	if err := p.setMsgIP(rec, msg, t, received, line); err != nil {
		return err
	}
	if rec.Program == nil {
		rec.Program = app // RFC 5424 names the program in the header
	}
	return nil
}

// setMsgIP fills rec from a syslog MSG. An access log shipped over syslog
// (nginx's "access_log syslog:", a file forwarded by rsyslog's imfile,
// HAProxy's httplog) is read as such, so that its status and size count
// like those of the same line sent plainly; anything else yields the IP
// found in the text and the header's time t.
func (p *Parser) setMsgIP(rec *Record, msg []byte, t, received time.Time, line []byte) error {
	if p.embeddedAccess(rec, msg, t, received) {
		rec.Program = msgTag(msg)
		return nil
	}
	*rec = Record{}
	a, ok := msgIP(msg)
	if !ok {
		return fmt.Errorf("%w in syslog message %s", ErrNoClientIP, q(line))
	}
	rec.Addr, rec.Time = a, t
	// Only for lines that are counted: a rejected line's class is moot.
	rec.AuthFailure = AuthFailureMessage(msg)
	rec.Program = msgTag(msg)
	rec.Event = MessageEvent(msg, rec.AuthFailure)
	return nil
}

var utf8BOM = []byte("\xef\xbb\xbf")

// msgBody returns the text a program logged: MSG without a leading TAG
// ("nginx:", "haproxy[42]:") or the BOM RFC 5424 allows.
func msgBody(msg []byte) []byte {
	_, body := splitTag(msg)
	return body
}

// splitTag splits a syslog MSG into its program (the TAG without the pid,
// nil when MSG has none) and what the program logged.
func splitTag(msg []byte) (tag, body []byte) {
	msg = bytes.TrimPrefix(trimSpace(msg), utf8BOM)
	f, n := nextField(msg, 0)
	if len(f) < 2 || f[len(f)-1] != ':' {
		return nil, msg
	}
	tag = f[:len(f)-1]
	if j := bytes.IndexByte(tag, '['); j > 0 && tag[len(tag)-1] == ']' {
		tag = tag[:j]
	}
	for _, c := range tag {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || isDigit(c) || c == '-' || c == '_' || c == '.' || c == '/') {
			return nil, msg
		}
	}
	if _, ok := parseAddr(tag); ok {
		return nil, msg
	}
	return tag, msg[n:]
}

// msgTag returns the program of a syslog MSG ("sshd[42]:" is sshd), or
// nil when MSG has no tag.
func msgTag(msg []byte) []byte {
	tag, _ := splitTag(msg)
	return tag
}

// embeddedAccess reads an access log line carried in a syslog MSG: Common
// or Combined Log Format, whose own [date] (it has a UTC offset, which an
// RFC 3164 header lacks) is the event time, or HAProxy's HTTP log format
// ("option httplog"), whose accept date has no offset, so the header's
// time t stays. A MSG of neither shape, or a malformed one, reports false
// and is left to the generic syslog rules.
func (p *Parser) embeddedAccess(rec *Record, msg []byte, t, received time.Time) bool {
	body := msgBody(msg)
	if len(body) == 0 || !(isDigit(body[0]) || body[0] == '[' || isHex(body[0]) || body[0] == ':') {
		return false
	}
	host, addr, ok, i := field(body, 0)
	if ok {
		if p.parseAccess(body, host, addr, ok, i, received, rec) == nil {
			return true
		}
		*rec = Record{}
		return false
	}
	return haproxyHTTP(rec, body, t)
}

func isHex(c byte) bool { return c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// haproxyHTTP parses HAProxy's httplog format (HAProxy 1.x to 3.x):
//
//	%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %CC %CS %tsc %ac/%fc/%bc/%sc/%rc %sq/%bq %hr %hs %{+Q}r
//
// "127.0.0.5:40312 [02/Dec/2026:07:30:00.123] fe fe/<NOSRV> 0/-1/-1/-1/0 404 150 - - PR-- 1/1/0/0/0 0/0 "GET /x HTTP/1.1"".
// The timers field has five parts (the TCP log format has three and no
// status); a status of -1 (no response) and bytes prefixed by "+" (option
// logasap) are accepted.
func haproxyHTTP(rec *Record, b []byte, t time.Time) bool {
	f, i := nextField(b, 0)
	a, ok := addrWithPort(f)
	if !ok {
		return false
	}
	if f, i = nextField(b, i); len(f) < 2 || f[0] != '[' || f[len(f)-1] != ']' {
		return false
	}
	_, i = nextField(b, i) // frontend
	if f, i = nextField(b, i); bytes.IndexByte(f, '/') < 0 {
		return false
	}
	if f, i = nextField(b, i); bytes.Count(f, []byte("/")) != 4 {
		return false
	}
	f, i = nextField(b, i)
	var status uint32
	if !(len(f) == 2 && f[0] == '-' && f[1] == '1') {
		if status, ok = parseStatus(f); !ok || len(f) != 3 {
			return false
		}
	}
	f, _ = nextField(b, i)
	size, ok := parseSize(bytes.TrimPrefix(f, []byte("+")))
	if !ok {
		return false
	}
	*rec = Record{Addr: a, Time: t, Status: status, Size: size, AuthFailure: AuthFailureStatus(status)}
	if j := bytes.LastIndexByte(b, '"'); j > 0 && j == len(b)-1 {
		if k := bytes.LastIndexByte(b[:j], '"'); k >= 0 {
			rec.Method, rec.Path = splitRequest(b[k+1 : j])
		}
	}
	return true
}

// msgIP finds the client address in a syslog MSG. Firewall logs name both
// ends (iptables "SRC=... DST=...", with "MAC=" before them), so SRC= wins;
// otherwise the first address in the text, which for sshd, postfix and
// friends is the peer.
func msgIP(msg []byte) (netip.Addr, bool) {
	for off := 0; ; {
		j := bytes.Index(msg[off:], []byte("SRC="))
		if j < 0 {
			break
		}
		j += off
		if j == 0 || sep[msg[j-1]] {
			// Bounded so that "SRC=SRC=SRC=..." stays linear.
			v := msg[j+4 : min(len(msg), j+4+maxToken+1)]
			for k, c := range v {
				if sep[c] {
					v = v[:k]
					break
				}
			}
			if a, ok := tokenIP(v); ok {
				return a, true
			}
		}
		off = j + 4
	}
	a, ok := firstIP(msg)
	return a, ok
}
