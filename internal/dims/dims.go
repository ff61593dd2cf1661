// Package dims is the key format of the windows that count the fields
// beyond the client IP: HTTP status, method, path, virtual host, user-agent
// family and OS, syslog program and event kind.
//
// Those windows use the storage of the per-IP windows unchanged
// (internal/counts): an entry is 16 bytes and the class counters. Here the
// 16 bytes are a field value:
//
//	byte 0      the field (Status, Method, ...), so that the values of one
//	            field are one contiguous key range (Range)
//	byte 1      0: the value is inline in bytes 2–15, zero padded (values of
//	            at most 14 bytes without a zero byte: status codes, methods,
//	            most programs, browsers and short paths);
//	            1: bytes 2–15 are the first 14 bytes of SHA-256 of the value,
//	            whose text is kept in the names bucket under NameKey
//	bytes 2–15  the value or its hash
//
// A key never starts with ten zero bytes and 0xffff, so it is never read as
// an IPv4-mapped address by code that shares the entry format. The hash is
// SHA-256, not a faster one, because paths and user agents are chosen by
// whoever sends requests: 112 bits of a cryptographic hash keep anyone from
// making two values count as one.
package dims

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"

	"github.com/logtally/logtally/internal/counts"
)

// Dim is a counted field.
type Dim byte

// The fields. Their numbers are part of the storage format.
const (
	Status  Dim = 1 // HTTP status code, "404"
	Method  Dim = 2 // HTTP method, "GET"
	Path    Dim = 3 // request path, query string dropped unless kept
	VHost   Dim = 4 // virtual host (vhost format, JSON host fields)
	UA      Dim = 5 // user-agent family: browser, bot or tool ("Chrome", "Googlebot", "curl")
	OS      Dim = 6 // operating system family of the user agent
	Program Dim = 7 // syslog program (the tag: "sshd")
	Event   Dim = 8 // event kind of a syslog line ("auth_failure", "invalid_user", "auth_success")
)

// All lists every field in storage order.
var All = []Dim{Status, Method, Path, VHost, UA, OS, Program, Event}

var names = map[Dim]string{
	Status: "status", Method: "method", Path: "path", VHost: "vhost",
	UA: "ua", OS: "os", Program: "program", Event: "event",
}

// Valid reports whether d is one of the counted fields.
func (d Dim) Valid() bool {
	_, ok := names[d]
	return ok
}

func (d Dim) String() string {
	if n, ok := names[d]; ok {
		return n
	}
	return fmt.Sprintf("dim(%d)", byte(d))
}

// Parse returns the field called name.
func Parse(name string) (Dim, error) {
	for d, n := range names {
		if n == name {
			return d, nil
		}
	}
	return 0, fmt.Errorf("%w: %q (want one of %s)", ErrUnknownDim, name, strings.Join(Names(), ", "))
}

// Names returns the field names in storage order.
func Names() []string {
	out := make([]string, len(All))
	for i, d := range All {
		out[i] = d.String()
	}
	return out
}

// Key encodings (byte 1).
const (
	inline = 0
	hashed = 1
	other  = 0xff
)

// OtherKey is the entry of field d that sums the values a closed window
// did not keep (see the aggregator's -aggregator.dims.top-k).
func OtherKey(d Dim) (k [counts.AddrLen]byte) {
	k[0], k[1] = byte(d), other
	return k
}

// IsOther reports whether k is an OtherKey.
func IsOther(k [counts.AddrLen]byte) bool { return k[1] == other }

// Values returns the prefixes holding the keys of field d's values, inline
// and hashed, without its other entry.
func Values(d Dim) []netip.Prefix {
	var a, b [16]byte
	a[0], b[0], b[1] = byte(d), byte(d), hashed
	return []netip.Prefix{netip.PrefixFrom(netip.AddrFrom16(a), 16), netip.PrefixFrom(netip.AddrFrom16(b), 16)}
}

// InlineMax is the longest value kept in the key itself.
const InlineMax = counts.AddrLen - 2

// MaxValueBytes bounds the text kept for a value: longer values are cut
// to it (and to a UTF-8 boundary) before they are keyed, so a 64 KiB
// request line becomes a 1 KiB path.
const MaxValueBytes = 1024

// Key returns the key of value v of field d. Hashed reports that the text
// must be kept in the names bucket to be shown.
func Key(d Dim, v []byte) (k [counts.AddrLen]byte, isHashed bool) {
	k[0] = byte(d)
	if len(v) <= InlineMax && bytes.IndexByte(v, 0) < 0 {
		copy(k[2:], v)
		return k, false
	}
	k[1] = hashed
	sum := sha256.Sum256(v)
	copy(k[2:], sum[:])
	return k, true
}

// Decode returns the field of a key and, for an inline value, its text.
// For a hashed one text is empty and isHashed true: look it up with
// NameKey.
func Decode(k [counts.AddrLen]byte) (d Dim, text string, isHashed bool) {
	d = Dim(k[0])
	if k[1] == hashed {
		return d, "", true
	}
	v := k[2:]
	n := len(v)
	for n > 0 && v[n-1] == 0 {
		n--
	}
	return d, string(v[:n]), false
}

// NameKey is the names-bucket key of a hashed key: hex of bytes 0 and 2–15.
func NameKey(k [counts.AddrLen]byte) string {
	var b [counts.AddrLen - 1]byte
	b[0] = k[0]
	copy(b[1:], k[2:])
	return hex.EncodeToString(b[:])
}

// ParseNameKey is the inverse of NameKey.
func ParseNameKey(s string) (k [counts.AddrLen]byte, ok bool) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != counts.AddrLen-1 {
		return k, false
	}
	k[0], k[1] = b[0], hashed
	copy(k[2:], b[1:])
	return k, true
}

// Range is the prefix holding every key of field d, in the address form
// the windows reader filters by (counts.Unpack).
func Range(d Dim) netip.Prefix {
	var a [16]byte
	a[0] = byte(d)
	return netip.PrefixFrom(netip.AddrFrom16(a), 8)
}

// Partition is the partition of a key, as for addresses.
func Partition(k [counts.AddrLen]byte, n int) int { return counts.Partition(k, n) }
