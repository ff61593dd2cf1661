// Package geoiptest writes small MaxMind DB files for tests, in the
// formats of GeoLite2-ASN and GeoLite2-Country, with
// github.com/maxmind/mmdbwriter.
package geoiptest

import (
	"cmp"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// ASN is one network of an ASN database.
type ASN struct {
	Network string // 192.0.2.0/24, 2001:db8::/32
	Number  uint32
	Org     string
}

// Country is one network of a country database. Registered, when set, is
// written as registered_country instead of country.
type Country struct {
	Network    string
	ISOCode    string
	Registered bool
}

// WriteASN writes an IPv6 database (IPv4 networks in its IPv4 subtree, as
// GeoLite2 files hold them) of the networks to a file in dir and returns
// its path. Nested networks are allowed: the more specific one wins, as
// with a longest-prefix match.
func WriteASN(t testing.TB, dir string, nets []ASN) string {
	t.Helper()
	tree := newTree(t, "GeoLite2-ASN")
	sortBySize(t, nets, func(n ASN) string { return n.Network })
	for _, n := range nets {
		insert(t, tree, n.Network, mmdbtype.Map{
			"autonomous_system_number":       mmdbtype.Uint32(n.Number),
			"autonomous_system_organization": mmdbtype.String(n.Org),
		})
	}
	return write(t, tree, filepath.Join(dir, "asn.mmdb"))
}

// WriteCountry writes a country database; see WriteASN.
func WriteCountry(t testing.TB, dir string, nets []Country) string {
	t.Helper()
	tree := newTree(t, "GeoLite2-Country")
	sortBySize(t, nets, func(n Country) string { return n.Network })
	for _, n := range nets {
		key := mmdbtype.String("country")
		if n.Registered {
			key = "registered_country"
		}
		insert(t, tree, n.Network, mmdbtype.Map{key: mmdbtype.Map{"iso_code": mmdbtype.String(n.ISOCode)}})
	}
	return write(t, tree, filepath.Join(dir, "country.mmdb"))
}

func newTree(t testing.TB, dbType string) *mmdbwriter.Tree {
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType: dbType,
		RecordSize:   24,
		// Tests use the documentation and private ranges.
		IncludeReservedNetworks: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// sortBySize orders networks from the widest to the most specific, so that
// a nested network is inserted after (and replaces its part of) the one
// around it.
func sortBySize[N any](t testing.TB, nets []N, network func(N) string) {
	slices.SortStableFunc(nets, func(a, b N) int {
		return cmp.Compare(mustPrefix(t, network(a)).Bits()+v4Offset(t, network(a)), mustPrefix(t, network(b)).Bits()+v4Offset(t, network(b)))
	})
}

func v4Offset(t testing.TB, s string) int {
	if mustPrefix(t, s).Addr().Is4() {
		return 96
	}
	return 0
}

func mustPrefix(t testing.TB, s string) netip.Prefix {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// insert adds an IPv4 network as a 4-byte net.IPNet, which mmdbwriter
// puts in the IPv4 subtree (::/96, aliased from ::ffff:0:0/96) where
// readers look IPv4 addresses up.
func insert(t testing.TB, tree *mmdbwriter.Tree, network string, rec mmdbtype.Map) {
	t.Helper()
	_, n, err := net.ParseCIDR(network)
	if err != nil {
		t.Fatal(err)
	}
	if err := tree.Insert(n, rec); err != nil {
		t.Fatalf("insert %s: %v", network, err)
	}
}

func write(t testing.TB, tree *mmdbwriter.Tree, path string) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tree.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}
