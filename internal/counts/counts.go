// Package counts holds the layout of the counts buckets: window keys, the
// partition hash shared by parser and query, and the packed WindowState value.
package counts

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
	"google.golang.org/protobuf/proto"
)

// AddrLen is the packed size of one IP in record batches and window values.
const AddrLen = 16

// Partition maps an IP to one of n partitions (FNV-1a over the 16-byte form).
// The function is part of the storage format: changing it reshuffles every
// partition.
func Partition(a [AddrLen]byte, n int) int {
	h := uint64(14695981039346656037)
	for _, b := range a {
		h ^= uint64(b)
		h *= 1099511628211
	}
	return int(h % uint64(n))
}

// Pack returns the 16-byte form of an address (IPv4 as ::ffff:a.b.c.d, zone dropped).
func Pack(a netip.Addr) [AddrLen]byte { return a.Unmap().As16() }

// Unpack turns a 16-byte form back into its canonical address.
func Unpack(b [AddrLen]byte) netip.Addr { return netip.AddrFrom16(b).Unmap() }

// Key is the KV key of a window: "<unix seconds of window start>.<partition>".
func Key(start time.Time, partition int) string {
	return strconv.FormatInt(start.Unix(), 10) + "." + strconv.Itoa(partition)
}

// ParseKey splits a window key.
func ParseKey(key string) (time.Time, int, error) {
	ts, ps, ok := strings.Cut(key, ".")
	if !ok {
		return time.Time{}, 0, fmt.Errorf("window key %q: missing partition", key)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("window key %q: %w", key, err)
	}
	p, err := strconv.Atoi(ps)
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("window key %q: %w", key, err)
	}
	return time.Unix(sec, 0).UTC(), p, nil
}

// Window is the decoded value of one window key.
type Window struct {
	LastSeq     uint64
	Counts      map[[AddrLen]byte]uint64
	DeadLetters uint64
	Late        uint64
}

// NewWindow returns an empty window.
func NewWindow() *Window { return &Window{Counts: make(map[[AddrLen]byte]uint64)} }

// Total is the number of requests in the window.
func (w *Window) Total() uint64 {
	var n uint64
	for _, c := range w.Counts {
		n += c
	}
	return n
}

// Marshal encodes the window. Entries are in map order: readers must not
// assume any order (sorting here cost more than anything else in a flush).
func (w *Window) Marshal() ([]byte, error) {
	st := &logtallyv1.WindowState{
		LastSeq:     w.LastSeq,
		Addrs:       make([]byte, 0, len(w.Counts)*AddrLen),
		Counts:      make([]uint64, 0, len(w.Counts)),
		DeadLetters: w.DeadLetters,
		Late:        w.Late,
	}
	for k, c := range w.Counts {
		st.Addrs = append(st.Addrs, k[:]...)
		st.Counts = append(st.Counts, c)
	}
	return proto.Marshal(st)
}

// Unmarshal decodes a window value.
func Unmarshal(b []byte) (*Window, error) {
	var st logtallyv1.WindowState
	if err := proto.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("decode window: %w", err)
	}
	if len(st.Addrs) != len(st.Counts)*AddrLen {
		return nil, fmt.Errorf("decode window: %d address bytes for %d counts", len(st.Addrs), len(st.Counts))
	}
	w := &Window{
		LastSeq:     st.LastSeq,
		Counts:      make(map[[AddrLen]byte]uint64, len(st.Counts)),
		DeadLetters: st.DeadLetters,
		Late:        st.Late,
	}
	for i, c := range st.Counts {
		w.Counts[[AddrLen]byte(st.Addrs[i*AddrLen:(i+1)*AddrLen])] = c
	}
	return w, nil
}
