package windows

import (
	"net/netip"
	"testing"

	"github.com/logtally/logtally/internal/counts"
)

// scanEnd: past it in run order, every address ranks after worst.
func TestScanEnd(t *testing.T) {
	for worst, end := range map[string]string{
		"10.0.0.7":    "10.0.0.7",
		"2001:db8::1": "2001:db8::1",
		"::1":         "255.255.255.255", // IPv4 sorts after ::1 in runs, before it in answers
		"::fffe:1:2":  "255.255.255.255",
	} {
		w := counts.Pack(netip.MustParseAddr(worst))
		if got := counts.Unpack(*scanEnd(&w)).String(); got != end {
			t.Errorf("scanEnd(%s) = %s, want %s", worst, got, end)
		}
	}
}
