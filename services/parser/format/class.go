package format

import (
	"bytes"
	"strings"
)

// The classes below are what the combiner counts per (minute, client IP)
// besides the lines themselves. They live here, next to the parsers, so that
// every format classifies a line the same way and the rules have one place
// with tests.

// Status4xx reports whether status is an HTTP client error (400–499). A
// line without a status (0) is in no status class.
func Status4xx(status uint32) bool { return status >= 400 && status <= 499 }

// Status5xx reports whether status is an HTTP server error (500–599).
func Status5xx(status uint32) bool { return status >= 500 && status <= 599 }

// AuthFailureStatus reports whether an access-log status means a failed or
// missing authentication: 401 Unauthorized and 407 Proxy Authentication
// Required. 403 is not one: it is an authorisation answer that says nothing
// about credentials.
func AuthFailureStatus(status uint32) bool { return status == 401 || status == 407 }

// authPhrases make a syslog message an authentication failure; see
// AuthFailureMessage for where each comes from.
var authPhrases = [...]string{
	"Failed password for",
	"Failed publickey for",
	"Failed keyboard-interactive",
	"Invalid user",
	"invalid user",
	"authentication failure",
	"Connection closed by authenticating user",
	"Disconnected from invalid user",
	"maximum authentication attempts exceeded",
	"Too many authentication failures",
}

// The matcher runs on every syslog line, and most are not authentication
// failures. bytes.Index compares at every position when the needle's first
// byte is common or the message short (three anchor scans with it cost
// ~80 ns a line, a quarter of parsing it, and ten bytes.Contains twice
// that), while bytes.IndexByte scans 32 bytes at a time. So each phrase is
// found through a rare byte of an anchor it contains ('F' of "Failed ", 'v'
// of "nvalid user", 'c' of "authenticat"), and only where that byte occurs
// are the phrases holding the anchor compared (BenchmarkAuthFailureMessage
// against BenchmarkAuthFailureContains).
var authAnchors = [...]struct {
	text string
	key  int // index in text of the byte searched for
}{{"Failed ", 0}, {"nvalid user", 1}, {"authenticat", 8}}

// authCandidate is a phrase and the index in it of its anchor's key byte.
type authCandidate struct {
	phrase string
	key    int
}

// authByAnchor[i] lists the phrases containing authAnchors[i].
var authByAnchor = func() (out [len(authAnchors)][]authCandidate) {
	for _, p := range authPhrases {
		found := false
		for i, a := range authAnchors {
			if off := strings.Index(p, a.text); off >= 0 {
				out[i] = append(out[i], authCandidate{p, off + a.key})
				found = true
				break
			}
		}
		if !found {
			panic("format: auth failure phrase " + p + " contains no anchor")
		}
	}
	return out
}()

// AuthFailureMessage reports whether a syslog MSG (what follows the header,
// the tag included) contains, case-sensitively, one of:
//
//   - "Failed password for", "Failed publickey for", "Failed
//     keyboard-interactive" (sshd; also "Failed password for invalid user")
//   - "Invalid user", "invalid user" (sshd; also "Failed none for invalid
//     user", "Disconnected from invalid user", "Connection closed by invalid
//     user")
//   - "authentication failure" (PAM: "pam_unix(sshd:auth): authentication
//     failure; ... rhost=1.2.3.4"; also "Too many authentication failures")
//   - "Connection closed by authenticating user",
//     "maximum authentication attempts exceeded" (sshd)
//
// One attempt may log several such lines ("Invalid user x" and then
// "Connection closed by invalid user x"): the class counts lines, like the
// status classes, not attempts.
func AuthFailureMessage(msg []byte) bool {
	for i := range authAnchors {
		c := authAnchors[i].text[authAnchors[i].key]
		for off := 0; off < len(msg); {
			j := bytes.IndexByte(msg[off:], c)
			if j < 0 {
				break
			}
			j += off
			for _, cand := range authByAnchor[i] {
				if s := j - cand.key; s >= 0 && len(msg)-s >= len(cand.phrase) && string(msg[s:s+len(cand.phrase)]) == cand.phrase {
					return true
				}
			}
			off = j + 1
		}
	}
	return false
}

// Event is what a syslog line reports about a login, counted per window
// as the "event" field.
type Event uint8

// The events. EventNone is every other line.
const (
	EventNone Event = iota
	EventAuthFailure
	EventInvalidUser
	EventAuthSuccess
)

func (e Event) String() string {
	switch e {
	case EventAuthFailure:
		return "auth_failure"
	case EventInvalidUser:
		return "invalid_user"
	case EventAuthSuccess:
		return "auth_success"
	}
	return ""
}

// successPhrases make a syslog message a successful login: sshd's
// "Accepted password for", "Accepted publickey for" and
// "Accepted keyboard-interactive/pam for".
var successPhrase = []byte("Accepted ")

// MessageEvent classifies a syslog MSG whose AuthFailureMessage is
// failed: an unknown account ("Invalid user", sshd) is invalid_user, any
// other failure auth_failure, "Accepted … for" auth_success.
func MessageEvent(msg []byte, failed bool) Event {
	if failed {
		if bytes.Contains(msg, []byte("nvalid user")) {
			return EventInvalidUser
		}
		return EventAuthFailure
	}
	if i := bytes.Index(msg, successPhrase); i >= 0 && bytes.Contains(msg[i:], []byte(" for ")) {
		return EventAuthSuccess
	}
	return EventNone
}
