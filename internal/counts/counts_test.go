package counts

import (
	"net/netip"
	"testing"
	"time"
)

// The partition of an IP is part of the storage format: these values must
// never change, or stored windows would be read from the wrong partition.
func TestPartitionIsStable(t *testing.T) {
	// Expected values computed independently (FNV-1a 64 over the 16-byte form
	// in Python), not by the function under test.
	fixed := map[string]int{"203.0.113.7": 12, "198.51.100.4": 20, "2001:db8::1": 20, "10.0.0.1": 30}
	for ip, p := range fixed {
		if got := Partition(Pack(netip.MustParseAddr(ip)), 32); got != p {
			t.Errorf("Partition(%s, 32) = %d, want %d (the hash is part of the storage format)", ip, got, p)
		}
	}
	if Partition(Pack(netip.MustParseAddr("::ffff:203.0.113.7")), 32) != 12 {
		t.Fatal("an IPv4-mapped address must land with its IPv4 form")
	}
}

func TestKeyRoundTrip(t *testing.T) {
	start := time.Date(2026, 11, 24, 10, 5, 0, 0, time.UTC)
	k := Key(start, 17)
	if k != "1795514700.17" {
		t.Fatalf("key %q", k)
	}
	got, p, err := ParseKey(k)
	if err != nil || !got.Equal(start) || p != 17 {
		t.Fatalf("ParseKey(%q) = %v %d %v", k, got, p, err)
	}
	for _, bad := range []string{"", "123", "x.1", "1.y"} {
		if _, _, err := ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) accepted", bad)
		}
	}
}
