package format

import (
	"bytes"
	"fmt"
	"net/netip"
	"time"
)

// field splits the field at i and parses it as an address.
func field(line []byte, i int) (f []byte, addr netip.Addr, ok bool, next int) {
	f, next = nextField(line, i)
	addr, ok = parseAddr(f)
	return f, addr, ok, next
}

// errNoDate is returned when a line has no "[date]" where an access log has
// one. Auto treats it as "not an access log" and moves on; in explicit
// modes it is reported as is.
var errNoDate = fmt.Errorf("%w: no [date] after host, ident and user fields", ErrMalformed)

// parseAccess parses
//
//	host ident authuser [date] "request" status bytes ["referer" "user-agent" ...]
//
// given the already split and parsed host field (addr, ok) and the index i
// of the field after it; a vhost prefix, if any, precedes host. Everything
// after the date is optional (a truncated line still yields IP and time),
// but a field that is present must be well formed. Fields beyond the user
// agent (nginx formats often append timings) are ignored.
func (p *Parser) parseAccess(line, host []byte, addr netip.Addr, ok bool, i int, received time.Time, rec *Record) error {
	if !ok {
		if len(host) == 0 {
			return fmt.Errorf("%w: missing host field", ErrNoClientIP)
		}
		return fmt.Errorf("%w: host field %s", ErrBadIP, q(host))
	}
	// ident and authuser are normally both present ("- -"), but some
	// hand-rolled nginx formats drop one or both.
	for k := 0; k < 2 && i < len(line) && line[i] != '['; k++ {
		_, i = nextField(line, i)
	}
	if i >= len(line) || line[i] != '[' {
		return errNoDate
	}
	end := bytes.IndexByte(line[i:], ']')
	if end < 0 {
		return errNoDate
	}
	raw := line[i+1 : i+end]
	t, ok := parseCLFTime(raw)
	if !ok {
		return fmt.Errorf("%w: %s", ErrBadTimestamp, q(raw))
	}
	if err := p.checkTime(t, received, raw); err != nil {
		return err
	}
	rec.Addr, rec.Time = addr, t

	i = skipBlanks(line, i+end+1)
	if i >= len(line) {
		return nil
	}
	if line[i] != '"' {
		return fmt.Errorf("%w: request is not quoted at %s", ErrMalformed, q(line[i:]))
	}
	req, i, ok := scanQuoted(line, i)
	if !ok {
		return fmt.Errorf("%w: unterminated request %s", ErrMalformed, q(line[i:]))
	}
	rec.Method, rec.Path = splitRequest(req)

	var f []byte
	if f, i = nextField(line, i); len(f) == 0 {
		return nil
	}
	if rec.Status, ok = parseStatus(f); !ok {
		return fmt.Errorf("%w: bad status %s", ErrMalformed, q(f))
	}
	rec.AuthFailure = AuthFailureStatus(rec.Status)
	if f, i = nextField(line, i); len(f) == 0 {
		return nil
	}
	if rec.Size, ok = parseSize(f); !ok {
		return fmt.Errorf("%w: bad size %s", ErrMalformed, q(f))
	}
	if i >= len(line) || line[i] != '"' {
		return nil
	}
	start := i
	if _, i, ok = scanQuoted(line, i); !ok {
		return fmt.Errorf("%w: unterminated referer %s", ErrMalformed, q(line[start:]))
	}
	i = skipBlanks(line, i)
	if i >= len(line) || line[i] != '"' {
		return nil
	}
	start = i
	ua, _, ok := scanQuoted(line, i)
	if !ok {
		return fmt.Errorf("%w: unterminated user agent %s", ErrMalformed, q(line[start:]))
	}
	if len(ua) > 0 && !(len(ua) == 1 && ua[0] == '-') {
		rec.UserAgent = ua
	}
	return nil
}

func skipBlanks(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	return i
}

// scanQuoted returns the contents of the double-quoted string starting at
// b[i] and the index after its closing quote. A quote preceded by an odd
// number of backslashes is escaped (Apache writes `\"` and `\\`; nginx
// writes `\x22`, which needs no special handling). On failure next is i.
func scanQuoted(b []byte, i int) (content []byte, next int, ok bool) {
	start := i + 1
	for j := start; j <= len(b); {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return nil, i, false
		}
		k += j
		n := 0
		for m := k - 1; m >= start && b[m] == '\\'; m-- {
			n++
		}
		if n%2 == 0 {
			return b[start:k], k + 1, true
		}
		j = k + 1
	}
	return nil, i, false
}

// splitRequest splits `GET /path HTTP/1.1` into method and path. Anything
// that is not shaped like a request line (TLS handshakes escaped as
// `\x16\x03...`, "-", scanners' junk) yields nil, nil: the line is still
// worth counting by IP and time.
func splitRequest(r []byte) (method, path []byte) {
	sp := bytes.IndexByte(r, ' ')
	if sp <= 0 || sp > 32 {
		return nil, nil
	}
	for _, c := range r[:sp] {
		if !(c >= 'A' && c <= 'Z') && c != '-' && c != '_' {
			return nil, nil
		}
	}
	rest := r[sp+1:]
	if j := bytes.LastIndexByte(rest, ' '); j >= 0 && bytes.HasPrefix(rest[j+1:], []byte("HTTP/")) {
		rest = rest[:j]
	}
	if len(rest) == 0 {
		return nil, nil
	}
	return r[:sp], rest
}

func parseStatus(f []byte) (uint32, bool) {
	if len(f) == 1 && f[0] == '-' {
		return 0, true
	}
	if len(f) == 0 || len(f) > 3 {
		return 0, false
	}
	var v uint32
	for _, c := range f {
		if !isDigit(c) {
			return 0, false
		}
		v = v*10 + uint32(c-'0')
	}
	return v, true
}

func parseSize(f []byte) (uint64, bool) {
	if len(f) == 1 && f[0] == '-' {
		return 0, true
	}
	return parseUint(f)
}

func parseUint(f []byte) (uint64, bool) {
	if len(f) == 0 || len(f) > 20 {
		return 0, false
	}
	var v uint64
	for _, c := range f {
		if !isDigit(c) {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}
