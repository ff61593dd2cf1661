// Package counts is the storage format of logtally's windows, shared by
// every stage: the partition hash, window keys, the per-IP class counters,
// the entry encoding, the manifest and chunks of a window (format 2, with
// format 1 read for upgrades) and the Store that commits a window with
// compare-and-swap in one atomic batch. docs/design.md explains the layout
// and why it is exact.
package counts

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
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
