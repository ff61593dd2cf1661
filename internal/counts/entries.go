package counts

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"slices"
)

// Class names one of the counters every window keeps per IP.
type Class int

// The classes, in the order of Counters' fields and of a head's bounds.
const (
	Requests Class = iota
	Status4xx
	Status5xx
	AuthFailures
	Bytes
	NumClasses
)

var classNames = [NumClasses]string{"requests", "4xx", "5xx", "auth_failure", "bytes"}

// String is the name used by the API (`class=4xx`).
func (c Class) String() string {
	if c < 0 || c >= NumClasses {
		return fmt.Sprintf("class(%d)", int(c))
	}
	return classNames[c]
}

// ParseClass reads a class name as the API writes it.
func ParseClass(s string) (Class, error) {
	for i, n := range classNames {
		if s == n {
			return Class(i), nil
		}
	}
	return 0, fmt.Errorf("%w %q: want one of requests, 4xx, 5xx, auth_failure, bytes", ErrUnknownClass, s)
}

// Counters are what a window holds per IP.
type Counters struct {
	Requests     uint64
	Status4xx    uint64
	Status5xx    uint64
	AuthFailures uint64
	Bytes        uint64
}

// Add adds o to c. Bytes saturate at the largest uint64 instead of
// wrapping: sizes come from the logs, and a forged one must not turn a
// flood into a small number. (The other counters count lines.)
func (c *Counters) Add(o Counters) {
	c.Requests += o.Requests
	c.Status4xx += o.Status4xx
	c.Status5xx += o.Status5xx
	c.AuthFailures += o.AuthFailures
	if sum, carry := bits.Add64(c.Bytes, o.Bytes, 0); carry != 0 {
		c.Bytes = math.MaxUint64
	} else {
		c.Bytes = sum
	}
}

// Get returns the counter of one class.
func (c *Counters) Get(k Class) uint64 {
	switch k {
	case Requests:
		return c.Requests
	case Status4xx:
		return c.Status4xx
	case Status5xx:
		return c.Status5xx
	case AuthFailures:
		return c.AuthFailures
	case Bytes:
		return c.Bytes
	}
	return 0
}

// IsZero reports whether every counter is zero.
func (c *Counters) IsZero() bool { return *c == Counters{} }

// Entry is one IP of a window with its counters.
type Entry struct {
	Addr [AddrLen]byte
	Counters
}

// CompareAddr orders packed addresses bytewise, the order of every run.
func CompareAddr(a, b *[AddrLen]byte) int { return bytes.Compare(a[:], b[:]) }

// The entry encoding, used inline in a manifest and in chunks:
//
//	uvarint n
//	n times: shared byte (0..16: leading bytes equal to the previous
//	         address), the remaining 16-shared address bytes, a flags byte
//	         (bit i set: class i+1 is present), uvarint requests, then one
//	         uvarint per present class in class order.
//
// Addresses are strictly increasing. Front coding makes an IPv4 entry about
// 6-9 bytes instead of 56 in memory: runs of sorted IPv4-mapped addresses
// share their first 12 bytes and usually more.
const (
	flag4xx = 1 << iota
	flag5xx
	flagAuth
	flagBytes
	flagsAll = flag4xx | flag5xx | flagAuth | flagBytes
)

// MaxEntrySize bounds the encoded size of one entry.
const MaxEntrySize = 1 + AddrLen + 1 + 5*binary.MaxVarintLen64

// AppendEntry appends e, encoded after prev (nil for the first entry of a
// sequence), to b. The caller keeps the order and writes the count.
func AppendEntry(b []byte, prev *[AddrLen]byte, e *Entry) []byte {
	shared := 0
	if prev != nil {
		for shared < AddrLen && prev[shared] == e.Addr[shared] {
			shared++
		}
	}
	b = append(b, byte(shared))
	b = append(b, e.Addr[shared:]...)
	var flags byte
	if e.Status4xx != 0 {
		flags |= flag4xx
	}
	if e.Status5xx != 0 {
		flags |= flag5xx
	}
	if e.AuthFailures != 0 {
		flags |= flagAuth
	}
	if e.Bytes != 0 {
		flags |= flagBytes
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, e.Requests)
	if flags&flag4xx != 0 {
		b = binary.AppendUvarint(b, e.Status4xx)
	}
	if flags&flag5xx != 0 {
		b = binary.AppendUvarint(b, e.Status5xx)
	}
	if flags&flagAuth != 0 {
		b = binary.AppendUvarint(b, e.AuthFailures)
	}
	if flags&flagBytes != 0 {
		b = binary.AppendUvarint(b, e.Bytes)
	}
	return b
}

// EncodeEntries encodes sorted entries.
func EncodeEntries(es []Entry) []byte {
	b := make([]byte, 0, 8+len(es)*10)
	return AppendEntries(b, es)
}

// AppendEntries appends the encoding of sorted entries to b.
func AppendEntries(b []byte, es []Entry) []byte {
	b = binary.AppendUvarint(b, uint64(len(es)))
	var prev *[AddrLen]byte
	for i := range es {
		b = AppendEntry(b, prev, &es[i])
		prev = &es[i].Addr
	}
	return b
}

// EntriesLen returns the number of entries an encoding holds without
// decoding it.
func EntriesLen(b []byte) (int, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 {
		return 0, fmt.Errorf("%w: entry count", ErrCorrupt)
	}
	// Every entry takes at least 3 bytes (shared, flags, requests).
	if n > uint64(len(b)-k)/3 {
		return 0, fmt.Errorf("%w: %d entries in %d bytes", ErrCorrupt, n, len(b))
	}
	return int(n), nil
}

// DecodeEntries appends the entries of an encoding to dst. It checks
// everything a corrupt or hostile value could get wrong: counts, lengths,
// the order of addresses and trailing bytes.
func DecodeEntries(dst []Entry, b []byte) ([]Entry, error) {
	n, err := EntriesLen(b)
	if err != nil {
		return dst, err
	}
	_, k := binary.Uvarint(b)
	b = b[k:]
	dst = slices.Grow(dst, n)
	base := len(dst)
	var prev [AddrLen]byte
	for i := 0; i < n; i++ {
		if len(b) < 1 {
			return dst[:base], fmt.Errorf("%w: entry %d truncated", ErrCorrupt, i)
		}
		shared := int(b[0])
		if shared > AddrLen || (i == 0 && shared != 0) {
			return dst[:base], fmt.Errorf("%w: entry %d shares %d address bytes", ErrCorrupt, i, shared)
		}
		b = b[1:]
		rest := AddrLen - shared
		if len(b) < rest+1 {
			return dst[:base], fmt.Errorf("%w: entry %d truncated", ErrCorrupt, i)
		}
		var e Entry
		copy(e.Addr[:shared], prev[:shared])
		copy(e.Addr[shared:], b[:rest])
		b = b[rest:]
		if i > 0 && CompareAddr(&e.Addr, &prev) <= 0 {
			return dst[:base], fmt.Errorf("%w: entry %d is not after the previous address", ErrCorrupt, i)
		}
		flags := b[0]
		b = b[1:]
		if flags&^flagsAll != 0 {
			return dst[:base], fmt.Errorf("%w: entry %d has flags %#x", ErrCorrupt, i, flags)
		}
		vals := [NumClasses]*uint64{&e.Requests, &e.Status4xx, &e.Status5xx, &e.AuthFailures, &e.Bytes}
		for c := Class(0); c < NumClasses; c++ {
			if c > 0 && flags&(1<<(c-1)) == 0 {
				continue
			}
			v, m := binary.Uvarint(b)
			if m <= 0 {
				return dst[:base], fmt.Errorf("%w: entry %d %s counter", ErrCorrupt, i, c)
			}
			*vals[c] = v
			b = b[m:]
		}
		dst = append(dst, e)
		prev = e.Addr
	}
	if len(b) != 0 {
		return dst[:base], fmt.Errorf("%w: %d bytes after %d entries", ErrCorrupt, len(b), n)
	}
	return dst, nil
}

// SortEntries sorts entries by address.
func SortEntries(es []Entry) {
	slices.SortFunc(es, func(a, b Entry) int { return CompareAddr(&a.Addr, &b.Addr) })
}

// MergeSorted merges two sorted entry slices into dst, adding the counters
// of addresses present in both.
func MergeSorted(dst, a, b []Entry) []Entry {
	dst = slices.Grow(dst, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch c := CompareAddr(&a[i].Addr, &b[j].Addr); {
		case c < 0:
			dst = append(dst, a[i])
			i++
		case c > 0:
			dst = append(dst, b[j])
			j++
		default:
			e := a[i]
			e.Add(b[j].Counters)
			dst = append(dst, e)
			i++
			j++
		}
	}
	dst = append(dst, a[i:]...)
	return append(dst, b[j:]...)
}
