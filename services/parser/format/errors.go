package format

import (
	"errors"
	"strconv"
	"unicode/utf8"
)

// Sentinel errors. Every error returned by Parse wraps exactly one of these,
// so callers can classify dead letters with errors.Is while the full error
// text (sentinel plus a short excerpt of the offending input) is what users
// see as the reason.
var (
	ErrEmptyLine       = errors.New("empty line")
	ErrInvalidUTF8     = errors.New("invalid UTF-8")
	ErrBinary          = errors.New("binary data (NUL byte)")
	ErrNoClientIP      = errors.New("no client IP")
	ErrBadIP           = errors.New("bad IP address")
	ErrBadTimestamp    = errors.New("bad timestamp")
	ErrFutureTimestamp = errors.New("timestamp in the future")
	ErrMalformed       = errors.New("malformed access-log line")
	ErrBadSyslog       = errors.New("malformed syslog message")
	ErrBadJSON         = errors.New("invalid JSON")
)

// maxQuote bounds the excerpt of input copied into an error: reasons are
// shown to users and stored with dead letters, so a 1 MiB line must not
// produce a 1 MiB reason.
const maxQuote = 64

// q quotes at most maxQuote bytes of b for an error message, cutting on a
// rune boundary so the excerpt stays readable.
func q(b []byte) string {
	if len(b) <= maxQuote {
		return strconv.Quote(string(b))
	}
	n := maxQuote
	for n > 0 && !utf8.RuneStart(b[n]) {
		n--
	}
	return strconv.Quote(string(b[:n])) + "…"
}
