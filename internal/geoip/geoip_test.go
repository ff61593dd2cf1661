package geoip_test

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/logtally/logtally/internal/geoip"
	"github.com/logtally/logtally/internal/geoip/geoiptest"
)

var asnNets = []geoiptest.ASN{
	{Network: "198.51.100.0/24", Number: 64500, Org: "Example Transit"},
	{Network: "198.51.100.64/26", Number: 64501, Org: "Smaller Than A /24"},
	{Network: "203.0.113.0/24", Number: 64502, Org: "Example Hosting"},
	{Network: "10.0.0.0/8", Number: 64503, Org: "Private Example"},
	{Network: "2001:db8::/32", Number: 64510, Org: "IPv6 Example"},
	{Network: "2001:db8:1::/48", Number: 64511, Org: "IPv6 Nested"},
}

var countryNets = []geoiptest.Country{
	{Network: "198.51.100.0/24", ISOCode: "DE"},
	{Network: "203.0.113.0/25", ISOCode: "FR"},
	{Network: "203.0.113.128/25", ISOCode: "EU", Registered: true},
	{Network: "2001:db8::/32", ISOCode: "JP"},
}

func openTest(t *testing.T) *geoip.DB {
	t.Helper()
	dir := t.TempDir()
	db, err := geoip.Open(geoiptest.WriteASN(t, dir, slices.Clone(asnNets)), geoiptest.WriteCountry(t, dir, slices.Clone(countryNets)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func TestLookups(t *testing.T) {
	db := openTest(t)
	if !db.HasASN() || !db.HasCountry() || len(db.Infos()) != 2 || db.Infos()[0].Type != "GeoLite2-ASN" {
		t.Fatalf("infos %+v", db.Infos())
	}
	for _, c := range []struct {
		ip      string
		asn     uint32
		org     string
		country string
	}{
		{"198.51.100.1", 64500, "Example Transit", "DE"},
		{"198.51.100.64", 64501, "Smaller Than A /24", "DE"},
		{"198.51.100.127", 64501, "Smaller Than A /24", "DE"},
		{"198.51.100.128", 64500, "Example Transit", "DE"},
		{"::ffff:198.51.100.200", 64500, "Example Transit", "DE"},
		{"203.0.113.7", 64502, "Example Hosting", "FR"},
		{"203.0.113.200", 64502, "Example Hosting", "EU"}, // registered_country only
		{"10.1.2.3", 64503, "Private Example", ""},
		{"2001:db8::1", 64510, "IPv6 Example", "JP"},
		{"2001:db8:1::5", 64511, "IPv6 Nested", "JP"},
		{"2001:db9::1", 0, "", ""},
		{"192.0.2.1", 0, "", ""},
		{"::1", 0, "", ""},
	} {
		a := netip.MustParseAddr(c.ip)
		n, org, ok := db.ASN(a)
		if n != c.asn || org != c.org || ok != (c.asn != 0) {
			t.Errorf("ASN(%s) = %d %q %v, want %d %q", c.ip, n, org, ok, c.asn, c.org)
		}
		cc, ok := db.Country(a)
		if cc != c.country || ok != (c.country != "") {
			t.Errorf("Country(%s) = %q %v, want %q", c.ip, cc, ok, c.country)
		}
	}
	if db.LookupErrors() != 0 {
		t.Fatalf("%d lookup errors", db.LookupErrors())
	}
}

// A sequential lookup of addresses in address order answers as a lookup
// of each: the network it remembers never covers an address of another
// answer, nested networks and gaps included.
func TestSequentialLookupsMatch(t *testing.T) {
	db := openTest(t)
	rng := rand.New(rand.NewPCG(1, 2))
	var addrs []netip.Addr
	for _, p := range []string{"198.51.100.0/23", "203.0.113.0/24", "10.0.0.0/7", "2001:db8::/31", "::/120"} {
		pr := netip.MustParsePrefix(p)
		for range 3000 {
			b := pr.Addr().As16()
			if pr.Addr().Is4() {
				b = netip.AddrFrom4(pr.Addr().As4()).As16()
			}
			bits := pr.Bits()
			if pr.Addr().Is4() {
				bits += 96
			}
			for i := bits; i < 128; i++ {
				if rng.IntN(2) == 1 {
					b[i/8] |= 0x80 >> (i % 8)
				}
			}
			addrs = append(addrs, netip.AddrFrom16(b).Unmap())
		}
	}
	slices.SortFunc(addrs, func(a, b netip.Addr) int { return a.Compare(b) })
	al, cl := db.NewASNLookup(), db.NewCountryLookup()
	for _, a := range addrs {
		n1, o1, ok1 := db.ASN(a)
		n2, o2, ok2 := al.ASN(a)
		if n1 != n2 || o1 != o2 || ok1 != ok2 {
			t.Fatalf("%s: sequential ASN %d %q %v, direct %d %q %v", a, n2, o2, ok2, n1, o1, ok1)
		}
		c1, ok1 := db.Country(a)
		c2, ok2 := cl.Country(a)
		if c1 != c2 || ok1 != ok2 {
			t.Fatalf("%s: sequential country %q %v, direct %q %v", a, c2, ok2, c1, ok1)
		}
	}
}

func TestNotConfigured(t *testing.T) {
	db, err := geoip.Open("", "")
	if err != nil {
		t.Fatal(err)
	}
	var nilDB *geoip.DB
	for _, d := range []*geoip.DB{db, nilDB} {
		if d.HasASN() || d.HasCountry() {
			t.Fatal("configured")
		}
		if _, _, ok := d.ASN(netip.MustParseAddr("1.2.3.4")); ok {
			t.Fatal("ASN found")
		}
		if _, ok := d.Country(netip.MustParseAddr("1.2.3.4")); ok {
			t.Fatal("country found")
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// Missing, empty, corrupt and truncated files and files of the other kind
// are errors that name the flag and the file.
func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	asn := geoiptest.WriteASN(t, dir, slices.Clone(asnNets))
	country := geoiptest.WriteCountry(t, dir, slices.Clone(countryNets))
	good, err := os.ReadFile(asn)
	if err != nil {
		t.Fatal(err)
	}
	file := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	garbage := make([]byte, 4096)
	for i := range garbage {
		garbage[i] = byte(i * 7)
	}
	missing := filepath.Join(dir, "GeoLite2-ASN.mmdb")
	for _, c := range []struct {
		asn, country string
		want         string
	}{
		{missing, "", "geoip.asn-db " + missing + ": cannot read"},
		{dir, "", "geoip.asn-db " + dir + ": cannot read"},
		{"", missing, "geoip.country-db " + missing},
		{file("empty.mmdb", nil), "", "not a MaxMind DB (.mmdb) file"},
		{file("garbage.mmdb", garbage), "", "invalid MaxMind DB file"},
		{file("truncated.mmdb", good[:len(good)/2]), "", "geoip.asn-db"},
		{"", file("text.mmdb", []byte("this is not a database\n")), "geoip.country-db"},
		{country, "", "is a country database, not an ASN one"},
		{"", asn, "is an ASN database, not a country one"},
	} {
		db, err := geoip.Open(c.asn, c.country)
		if err == nil {
			db.Close()
			t.Errorf("Open(%q, %q): no error", c.asn, c.country)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open(%q, %q): %v, want it to say %q", c.asn, c.country, err, c.want)
		}
	}
	if _, err := geoip.Open(missing, ""); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v does not wrap fs.ErrNotExist", err)
	}
	cfg := geoip.Config{ASNDB: asn, CountryDB: asn}
	if err := cfg.Validate(); err == nil {
		t.Error("the same file for both: no error")
	}
}

// benchDB is a database the size of GeoLite2-ASN's IPv4 part: 200k
// networks of /16 to /28.
func benchDB(b *testing.B) (*geoip.DB, []netip.Addr) {
	rng := rand.New(rand.NewPCG(3, 4))
	var nets []geoiptest.ASN
	seen := map[netip.Prefix]bool{}
	for len(nets) < 200_000 {
		a := netip.AddrFrom4([4]byte{byte(1 + rng.IntN(220)), byte(rng.IntN(256)), byte(rng.IntN(256)), 0})
		p, _ := a.Prefix(16 + rng.IntN(13))
		if seen[p] {
			continue
		}
		seen[p] = true
		nets = append(nets, geoiptest.ASN{Network: p.String(), Number: uint32(1 + rng.IntN(80_000)), Org: fmt.Sprintf("Org %d", rng.IntN(80_000))})
	}
	dir := b.TempDir()
	db, err := geoip.Open(geoiptest.WriteASN(b, dir, nets), "")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	addrs := make([]netip.Addr, 1<<20)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{byte(1 + rng.IntN(220)), byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256))})
	}
	slices.SortFunc(addrs, func(a, b netip.Addr) int { return a.Compare(b) })
	return db, addrs
}

// BenchmarkLookupASN: one lookup and decode per address.
func BenchmarkLookupASN(b *testing.B) {
	db, addrs := benchDB(b)
	i := 0
	for b.Loop() {
		db.ASN(addrs[i%len(addrs)])
		i++
	}
}

// BenchmarkLookupASNSequential: addresses in address order, as a scan of
// the windows passes them (1M random IPv4 addresses: ~16 per /24).
func BenchmarkLookupASNSequential(b *testing.B) {
	db, addrs := benchDB(b)
	l := db.NewASNLookup()
	i := 0
	for b.Loop() {
		l.ASN(addrs[i%len(addrs)])
		i++
	}
}
