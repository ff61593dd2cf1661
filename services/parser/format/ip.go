package format

import (
	"bytes"
	"fmt"
	"net/netip"
	"time"
	"unsafe"
)

// parseAddr parses an IPv4 or IPv6 address, optionally in brackets, and
// returns it in canonical form: zone dropped (a zone names an interface on
// the logging host and is meaningless for counting clients) and IPv4-mapped
// IPv6 unmapped so that both spellings count as one client.
func parseAddr(b []byte) (netip.Addr, bool) {
	if len(b) >= 2 && b[0] == '[' && b[len(b)-1] == ']' {
		b = b[1 : len(b)-1]
	}
	if len(b) < 2 || len(b) > 64 {
		return netip.Addr{}, false
	}
	if a, ok := parseIPv4(b); ok {
		return a, true
	}
	if z := bytes.IndexByte(b, '%'); z >= 0 {
		if z == len(b)-1 {
			return netip.Addr{}, false // netip rejects an empty zone
		}
		b = b[:z]
	}
	// Shape check before netip: a failed ParseAddr allocates its error,
	// and free text is full of near-misses (times "10:00:00", MAC
	// addresses). Without "::" IPv6 has 7 colons, or 6 before an IPv4
	// tail; with it, at most 8. No group exceeds 4 hex digits.
	colons, group, double := 0, 0, false
	for i, c := range b {
		switch {
		case c == ':':
			colons++
			group = 0
			if i > 0 && b[i-1] == ':' {
				double = true
			}
		case c == '.' || isDigit(c) || (c|0x20 >= 'a' && c|0x20 <= 'f'):
			if group++; group > 4 && c != '.' && bytes.IndexByte(b[i-group+1:], '.') < 0 {
				return netip.Addr{}, false
			}
		default:
			return netip.Addr{}, false
		}
	}
	if colons > 8 || (!double && colons != 6 && colons != 7) {
		return netip.Addr{}, false
	}
	// netip.ParseAddr only retains its argument in a returned error (which
	// is dropped here) or in a zone (already cut off), so a string view of
	// the caller's bytes is safe and keeps the path allocation-free; a plain
	// string(b) conversion escapes and would allocate per line.
	a, err := netip.ParseAddr(unsafe.String(unsafe.SliceData(b), len(b)))
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// parseIPv4 accepts exactly the dotted-quad syntax netip.ParseAddr accepts
// (no leading zeros, no short forms) without going through a string.
func parseIPv4(b []byte) (netip.Addr, bool) {
	var ip [4]byte
	field, i := 0, 0
	for field < 4 {
		start := i
		v := 0
		for i < len(b) && isDigit(b[i]) {
			v = v*10 + int(b[i]-'0')
			i++
			if i-start > 3 {
				return netip.Addr{}, false
			}
		}
		n := i - start
		if n == 0 || v > 255 || (n > 1 && b[start] == '0') {
			return netip.Addr{}, false
		}
		ip[field] = byte(v)
		field++
		if field < 4 {
			if i >= len(b) || b[i] != '.' {
				return netip.Addr{}, false
			}
			i++
		}
	}
	if i != len(b) {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(ip), true
}

// addrWithPort extends parseAddr to the spellings loggers use for an
// address with a port: "a.b.c.d:port" and "[v6]:port". A bare IPv6 address
// is never split on ':' since its last group would look like a port.
func addrWithPort(b []byte) (netip.Addr, bool) {
	if a, ok := parseAddr(b); ok {
		return a, true
	}
	if len(b) > 0 && b[0] == '[' {
		if j := bytes.IndexByte(b, ']'); j > 0 && (j == len(b)-1 || (b[j+1] == ':' && allDigits(b[j+2:]))) {
			return parseAddr(b[1:j])
		}
		return netip.Addr{}, false
	}
	if j := bytes.IndexByte(b, ':'); j > 0 && bytes.IndexByte(b[j+1:], ':') < 0 && allDigits(b[j+1:]) {
		return parseIPv4(b[:j])
	}
	return netip.Addr{}, false
}

func allDigits(b []byte) bool {
	if len(b) == 0 || len(b) > 5 {
		return false
	}
	for _, c := range b {
		if !isDigit(c) {
			return false
		}
	}
	return true
}

// sep marks bytes that end a token when hunting for an address in free
// text. '/' is deliberately absent so "Chrome/124.0.0.0" stays one token
// (and is rejected), and ':' so IPv6 addresses stay whole.
var sep = func() (t [256]bool) {
	for _, c := range []byte(" \t\r\n[](){}<>\"'=,;|@") {
		t[c] = true
	}
	return t
}()

// firstIP returns the first token of b that is an IP address. Unspecified
// addresses (0.0.0.0, ::) are skipped: in free text they are bind or
// placeholder addresses ("Listening on 0.0.0.0"), never a client.
func firstIP(b []byte) (netip.Addr, bool) {
	for i := 0; i < len(b); {
		for i < len(b) && sep[b[i]] {
			i++
		}
		start := i
		for i < len(b) && !sep[b[i]] {
			i++
		}
		if a, ok := tokenIP(b[start:i]); ok && !a.IsUnspecified() {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// maxToken bounds the length of a free-text token considered as an
// address: the longest IPv6 text form plus a zone and a port.
const maxToken = 70

// tokenIP decides whether a free-text token is an address, tolerating
// sentence punctuation ("from 1.2.3.4." / "1.2.3.4:") and an IPv4 port.
func tokenIP(t []byte) (netip.Addr, bool) {
	if len(t) < 2 || len(t) > maxToken {
		return netip.Addr{}, false
	}
	// Cheap reject: every address starts with a hex digit or ':' and
	// contains '.' or ':'.
	c := t[0]
	if !isDigit(c) && c != ':' && !(c|0x20 >= 'a' && c|0x20 <= 'f') {
		return netip.Addr{}, false
	}
	if bytes.IndexByte(t, '.') < 0 && bytes.IndexByte(t, ':') < 0 {
		return netip.Addr{}, false
	}
	if a, ok := addrWithPort(t); ok {
		return a, true
	}
	u := t
	for len(u) > 0 && (u[len(u)-1] == '.' || u[len(u)-1] == ':') {
		u = u[:len(u)-1]
	}
	if len(u) < len(t) {
		return addrWithPort(u)
	}
	return netip.Addr{}, false
}

func parseFallback(line []byte, received time.Time, rec *Record) error {
	a, ok := firstIP(line)
	if !ok {
		return fmt.Errorf("%w in line %s", ErrNoClientIP, q(line))
	}
	rec.Addr = a
	rec.Time = received
	return nil
}
