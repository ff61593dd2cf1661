// Package format turns one raw log line into a Record: client IP, event time
// and, where the format carries them, request method, path, status, size and
// user agent, plus whether the line is an authentication failure (class.go
// has the class rules the combiner counts).
//
// It knows Common/Combined Log Format (Apache, nginx), the vhost-prefixed
// variant, syslog (RFC 5424 and RFC 3164), JSON lines, and a fallback that
// takes the first IP address found anywhere in the line. Auto picks one of
// these per line.
//
// Auto decides per line, in this order: "<digits" is syslog; "{" is JSON; a
// leading RFC 3164 ("Nov 24 10:00:00") or RFC 3339 ("2026-11-24T10:...")
// timestamp is syslog without PRI (as in /var/log files); a first field that
// is an IP is CLF/combined; a second field that is an IP is vhost-combined;
// anything else, and any access-log-like line without a [date] where one
// belongs, goes to Fallback. Once a structured format is chosen its errors
// are final: Auto never retries a broken JSON or syslog line, or an access
// log line with a bad date, as Fallback.
//
// Byte-slice fields of a Record alias the input line and hold the raw,
// still-escaped bytes as they appear in the log (for example `\x22` or `\"`
// inside a user agent); copy them if the line buffer is reused.
package format

import (
	"bytes"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Format selects how a line is interpreted.
type Format int

const (
	Auto          Format = iota // detect per line
	CLF                         // Common Log Format and Combined; also accepts the vhost-prefixed variant
	VHostCombined               // "vhost[:port] " + combined
	Syslog                      // RFC 5424 or RFC 3164; IP taken from the MSG text
	JSON                        // one JSON object per line
	Fallback                    // first valid IP anywhere in the line
)

var formatNames = [...]string{
	Auto:          "auto",
	CLF:           "clf",
	VHostCombined: "vhost",
	Syslog:        "syslog",
	JSON:          "json",
	Fallback:      "fallback",
}

// String returns the canonical name, which ParseFormat accepts.
func (f Format) String() string {
	if f >= 0 && int(f) < len(formatNames) {
		return formatNames[f]
	}
	return "Format(" + strconv.Itoa(int(f)) + ")"
}

// ParseFormat maps a configuration name to a Format. Names are
// case-insensitive; "" means Auto and "combined" is an alias of CLF.
func ParseFormat(name string) (Format, error) {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "", "auto":
		return Auto, nil
	case "clf", "combined", "common":
		return CLF, nil
	case "vhost", "vhost_combined", "vhost-combined":
		return VHostCombined, nil
	case "syslog":
		return Syslog, nil
	case "json":
		return JSON, nil
	case "fallback":
		return Fallback, nil
	}
	return Auto, fmt.Errorf("unknown log format %q (want auto, clf, combined, vhost, syslog, json or fallback)", name)
}

// Options tunes a Parser. The zero value selects the defaults.
type Options struct {
	// JSONIPFields are JSON keys tried in order for the client IP; "a.b"
	// names key b of the object at key a (and also a flat key "a.b"). A value may be a comma-separated list (X-Forwarded-For); its
	// first element is used.
	JSONIPFields []string
	// JSONTimeFields are JSON keys tried in order for the time, dotted
	// like JSONIPFields.
	JSONTimeFields []string
	// MaxFuture rejects timestamps later than received+MaxFuture. Zero or
	// negative selects the default of 24h.
	MaxFuture time.Duration
}

var (
	// "request.client_ip" and "request.remote_ip" are Caddy's access log.
	defaultJSONIPFields   = []string{"remote_addr", "client_ip", "clientip", "ip", "src_ip", "remote_ip", "x_forwarded_for", "request.client_ip", "request.remote_ip"}
	defaultJSONTimeFields = []string{"time", "timestamp", "@timestamp", "ts", "time_local", "date"}
)

// DefaultMaxFuture is used when Options.MaxFuture is not positive.
const DefaultMaxFuture = 24 * time.Hour

// Record is one parsed line. Byte-slice fields alias the input line.
type Record struct {
	Addr      netip.Addr // canonical: Unmap()-ed, no zone
	Time      time.Time  // UTC; equals received when the line carries no timestamp
	Method    []byte     // nil when absent
	Path      []byte
	Status    uint32 // 0 when absent
	Size      uint64 // 0 when absent or "-"
	UserAgent []byte
	VHost     []byte // virtual host: the vhost format's first field, JSON host fields
	// Program is a syslog line's program (its tag without the pid), Event
	// what the line reports about a login (syslog only, not for access
	// logs carried in syslog).
	Program []byte
	Event   Event
	// AuthFailure marks a failed login: a syslog message that
	// AuthFailureMessage accepts, or an access-log (CLF, JSON) status that
	// AuthFailureStatus accepts. Other formats never set it.
	AuthFailure bool
}

// Parser parses lines. It is immutable after New and safe for concurrent
// use by any number of goroutines.
type Parser struct {
	maxFuture time.Duration
	jsonKeys  *jsonKeys
}

// New returns a Parser for opts; see Options for defaults.
func New(opts Options) *Parser {
	p := &Parser{maxFuture: opts.MaxFuture}
	if p.maxFuture <= 0 {
		p.maxFuture = DefaultMaxFuture
	}
	ipf, tf := opts.JSONIPFields, opts.JSONTimeFields
	if len(ipf) == 0 {
		ipf = defaultJSONIPFields
	}
	if len(tf) == 0 {
		tf = defaultJSONTimeFields
	}
	p.jsonKeys = buildJSONKeys(ipf, tf)
	return p
}

// Parse parses line according to f and stores the result in rec, which is
// reset first. received is when the line arrived; it stands in for lines
// without a timestamp, anchors the year of RFC 3164 timestamps and bounds
// how far in the future a timestamp may be.
//
// received must be a real time (not the zero Time): timestamps more than
// MaxFuture after it are rejected.
//
// On error rec is left zeroed and the error wraps one of the package's
// sentinel errors.
func (p *Parser) Parse(line []byte, f Format, received time.Time, rec *Record) error {
	*rec = Record{}
	line = trimSpace(line)
	if len(line) == 0 {
		return ErrEmptyLine
	}
	if !utf8.Valid(line) {
		return fmt.Errorf("%w at byte %d", ErrInvalidUTF8, invalidUTF8At(line))
	}
	if i := bytes.IndexByte(line, 0); i >= 0 {
		return fmt.Errorf("%w at byte %d", ErrBinary, i)
	}
	received = received.UTC()
	var err error
	switch f {
	case Auto:
		err = p.parseAuto(line, received, rec)
	case CLF:
		err = p.parseCLF(line, received, rec)
	case VHostCombined:
		err = p.parseVHost(line, received, rec)
	case Syslog:
		err = p.parseSyslog(line, received, rec)
	case JSON:
		err = p.parseJSON(line, received, rec)
	case Fallback:
		err = parseFallback(line, received, rec)
	default:
		return fmt.Errorf("format: unknown Format %d", int(f))
	}
	if err != nil {
		*rec = Record{}
	}
	return err
}

// parseAuto picks a format from the first bytes of the line. Structured
// formats win when their shape matches; a line that merely starts like an
// access log but lacks the [date] falls through to Fallback so that no line
// holding an IP address is lost.
func (p *Parser) parseAuto(line []byte, received time.Time, rec *Record) error {
	switch c := line[0]; {
	case c == '<' && len(line) > 1 && isDigit(line[1]):
		return p.parseSyslog(line, received, rec)
	case c == '{':
		return p.parseJSON(line, received, rec)
	case looksBSDTime(line) || looksISOTime(line):
		return p.parseSyslog(line, received, rec)
	}
	host, addr, ok, i := field(line, 0)
	if ok {
		err := p.parseAccess(line, host, addr, ok, i, received, rec)
		if err != errNoDate {
			return err
		}
		*rec = Record{}
	}
	if host, addr, ok, i = field(line, i); ok {
		err := p.parseAccess(line, host, addr, ok, i, received, rec)
		if err == nil {
			setVHost(line, rec) // "<vhost> <client> - - [date] ...", the vhost formats
		}
		if err != errNoDate {
			return err
		}
		*rec = Record{}
	}
	return parseFallback(line, received, rec)
}

// parseCLF implements the CLF format: plain CLF when the first field is an
// address, the vhost-prefixed variant when only the second one is.
func (p *Parser) parseCLF(line []byte, received time.Time, rec *Record) error {
	host, addr, ok, i := field(line, 0)
	if !ok {
		if host2, addr2, ok2, i2 := field(line, i); ok2 {
			if err := p.parseAccess(line, host2, addr2, ok2, i2, received, rec); err != nil {
				return err
			}
			setVHost(line, rec)
			return nil
		}
	}
	return p.parseAccess(line, host, addr, ok, i, received, rec)
}

func (p *Parser) parseVHost(line []byte, received time.Time, rec *Record) error {
	_, i := nextField(line, 0)
	host, addr, ok, i := field(line, i)
	if err := p.parseAccess(line, host, addr, ok, i, received, rec); err != nil {
		return err
	}
	setVHost(line, rec)
	return nil
}

// setVHost takes the first field of an access line whose client is the
// second as its virtual host.
func setVHost(line []byte, rec *Record) {
	if vhost, _ := nextField(line, 0); !isPlaceholder(vhost) {
		rec.VHost = vhost
	}
}

// checkTime applies the MaxFuture bound shared by all formats.
func (p *Parser) checkTime(t, received time.Time, raw []byte) error {
	if t.Sub(received) > p.maxFuture {
		return fmt.Errorf("%w: %s is after received time %s", ErrFutureTimestamp, q(raw), received.Format(time.RFC3339))
	}
	return nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(b)
}

// nextField returns the run of non-blank bytes at or after i and the index
// just past the blanks that follow it.
func nextField(b []byte, i int) (field []byte, next int) {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	start := i
	for i < len(b) && b[i] != ' ' && b[i] != '\t' {
		i++
	}
	field = b[start:i]
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	return field, i
}
