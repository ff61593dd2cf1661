package windows

import (
	"net/netip"
	"testing"

	"github.com/logtally/logtally/internal/counts"
)

// A prefix is an address range in run order; IPv6 prefixes hold no IPv4
// address even where ::ffff:0:0/96 lies inside them.
func TestPrefixRange(t *testing.T) {
	for _, c := range []struct {
		prefix string
		in     []string
		out    []string
	}{
		{"10.1.0.0/16", []string{"10.1.0.0", "10.1.255.255", "::ffff:10.1.9.9"}, []string{"10.2.0.0", "10.0.255.255", "2001:db8::1", "::a01:1"}},
		{"0.0.0.0/0", []string{"0.0.0.0", "255.255.255.255"}, []string{"::1", "::ffff:0:0:0", "2001:db8::"}},
		{"::/0", []string{"::", "::1", "2001:db8::1", "ffff::"}, []string{"10.0.0.1", "0.0.0.0"}},
		{"2001:db8::/32", []string{"2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"}, []string{"2001:db9::", "2001:db7:ffff::"}},
		{"10.0.0.5/32", []string{"10.0.0.5"}, []string{"10.0.0.4", "10.0.0.6"}},
	} {
		pr := newPrefixRange(netip.MustParsePrefix(c.prefix))
		for _, s := range c.in {
			a := counts.Pack(netip.MustParseAddr(s))
			if !pr.contains(&a) {
				t.Errorf("%s does not contain %s", c.prefix, s)
			}
			if counts.CompareAddr(&a, &pr.lo) < 0 || counts.CompareAddr(&a, &pr.hi) > 0 {
				t.Errorf("%s: %s outside [lo, hi]", c.prefix, s)
			}
		}
		for _, s := range c.out {
			a := counts.Pack(netip.MustParseAddr(s))
			if pr.contains(&a) {
				t.Errorf("%s contains %s", c.prefix, s)
			}
		}
	}
}
