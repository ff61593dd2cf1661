// Package geoip maps client IPs to their autonomous system (ASN and
// organisation) and country with MaxMind DB files: GeoLite2-ASN and
// GeoLite2-Country (or GeoIP2), and the DB-IP lite files of the same
// format. Lookups read the memory-mapped files and are safe for concurrent
// use; a file is opened once (no reload). docs/geoip.md has the flags and
// where to get the files.
package geoip

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oschwald/maxminddb-golang/v2"
)

// Config names the database files; an empty path leaves that database
// out.
type Config struct {
	// ASNDB is a GeoLite2-ASN format file (autonomous_system_number,
	// autonomous_system_organization).
	ASNDB string `yaml:"asn_db"`
	// CountryDB is a GeoLite2-Country format file (country.iso_code);
	// City files hold the same field and work too.
	CountryDB string `yaml:"country_db"`
}

// RegisterFlags registers -geoip.asn-db and -geoip.country-db.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.StringVar(&c.ASNDB, "geoip.asn-db", "", "GeoLite2-ASN (or DB-IP ASN lite) .mmdb file: enables by=asn and asn= of /api/v1/top")
	f.StringVar(&c.CountryDB, "geoip.country-db", "", "GeoLite2-Country (or DB-IP country lite) .mmdb file: enables by=country and country= of /api/v1/top")
}

// Validate checks the configuration (the files are read by Open).
func (c *Config) Validate() error {
	if c.ASNDB != "" && c.ASNDB == c.CountryDB {
		return fmt.Errorf("geoip.asn-db and geoip.country-db name the same file %s: an ASN and a country database are different files", c.ASNDB)
	}
	return nil
}

// DB is the opened databases. The zero DB (and a nil *DB) has none: every
// lookup answers not found.
type DB struct {
	// mu keeps Close from unmapping a file under a lookup.
	mu           sync.RWMutex
	asn, country *maxminddb.Reader
	asnInfo      Info
	countryInfo  Info
	errs         atomic.Uint64
}

// Info describes an opened file.
type Info struct {
	Path  string
	Type  string // the file's database_type, such as GeoLite2-ASN
	Build time.Time
}

// Open opens the ASN database at asnPath and the country database at
// countryPath; either may be empty (not configured). A missing, unreadable
// or corrupt file, or a file of the other kind, is an error naming the
// flag and the path.
func Open(asnPath, countryPath string) (*DB, error) {
	db := &DB{}
	var err error
	if asnPath != "" {
		if db.asn, db.asnInfo, err = open("geoip.asn-db", asnPath, kindASN); err != nil {
			return nil, err
		}
	}
	if countryPath != "" {
		if db.country, db.countryInfo, err = open("geoip.country-db", countryPath, kindCountry); err != nil {
			_ = db.Close()
			return nil, err
		}
	}
	return db, nil
}

type kind int

const (
	kindASN kind = iota
	kindCountry
)

// open opens one file and checks that it is of the kind asked: a file of
// the other kind would open fine and answer "unknown" for every IP.
func open(flagName, path string, k kind) (*maxminddb.Reader, Info, error) {
	r, err := maxminddb.Open(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return nil, Info{}, fmt.Errorf("%s %s: cannot read the database: %w", flagName, path, err)
		}
		return nil, Info{}, fmt.Errorf("%s %s: not a MaxMind DB (.mmdb) file, or a damaged one: %w", flagName, path, err)
	}
	info := Info{Path: path, Type: r.Metadata.DatabaseType, Build: r.Metadata.BuildTime().UTC()}
	t := strings.ToLower(info.Type)
	switch {
	case k == kindASN && (strings.Contains(t, "country") || strings.Contains(t, "city")):
		err = fmt.Errorf("%s %s: database type %q is a country database, not an ASN one (GeoLite2-ASN or DB-IP ASN lite)", flagName, path, info.Type)
	case k == kindCountry && strings.Contains(t, "asn"):
		err = fmt.Errorf("%s %s: database type %q is an ASN database, not a country one (GeoLite2-Country or DB-IP country lite)", flagName, path, info.Type)
	}
	if err == nil {
		// A probe decodes one record of the expected shape: a file whose
		// tree or data section is damaged fails here, at startup.
		probe := netip.MustParseAddr("1.1.1.1")
		if r.Metadata.IPVersion == 6 {
			probe = netip.MustParseAddr("2001:4860::1")
		}
		var rec any = &asnRecord{}
		if k == kindCountry {
			rec = &countryRecord{}
		}
		if derr := r.Lookup(probe).Decode(rec); derr != nil {
			err = fmt.Errorf("%s %s: corrupt database, or records not of the %s format: %w", flagName, path, map[kind]string{kindASN: "GeoLite2-ASN", kindCountry: "GeoLite2-Country"}[k], derr)
		}
	}
	if err != nil {
		_ = r.Close()
		return nil, Info{}, err
	}
	return r, info, nil
}

type asnRecord struct {
	Number uint32 `maxminddb:"autonomous_system_number"`
	Org    string `maxminddb:"autonomous_system_organization"`
}

type countryRecord struct {
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	// Networks without a located country (anycast, some satellite and
	// EU-wide blocks) may carry only the country they are registered in.
	Registered struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"registered_country"`
}

// HasASN reports whether an ASN database is configured.
func (db *DB) HasASN() bool { return db != nil && db.asnInfo.Path != "" }

// HasCountry reports whether a country database is configured.
func (db *DB) HasCountry() bool { return db != nil && db.countryInfo.Path != "" }

// Infos describes the open files.
func (db *DB) Infos() []Info {
	var out []Info
	if db.HasASN() {
		out = append(out, db.asnInfo)
	}
	if db.HasCountry() {
		out = append(out, db.countryInfo)
	}
	return out
}

// LookupErrors counts lookups that failed (a damaged record, an IPv6
// address in an IPv4-only file); they answer not found.
func (db *DB) LookupErrors() uint64 {
	if db == nil {
		return 0
	}
	return db.errs.Load()
}

// ASN returns the autonomous system of addr: its number and organisation;
// ok is false when the database has none for it (or is not configured).
func (db *DB) ASN(addr netip.Addr) (number uint32, org string, ok bool) {
	number, org, ok, _ = db.ASNNetwork(addr)
	return number, org, ok
}

// ASNNetwork is ASN, with the network the answer holds for: every address
// in it has the same answer.
func (db *DB) ASNNetwork(addr netip.Addr) (number uint32, org string, ok bool, network netip.Prefix) {
	if db == nil {
		return 0, "", false, netip.Prefix{}
	}
	db.mu.RLock()
	defer db.mu.RUnlock()
	if db.asn == nil {
		return 0, "", false, netip.Prefix{}
	}
	res := db.asn.Lookup(addr.Unmap())
	if err := res.Err(); err != nil {
		db.errs.Add(1)
		return 0, "", false, netip.Prefix{}
	}
	network = res.Prefix()
	if !res.Found() {
		return 0, "", false, network
	}
	var rec asnRecord
	if err := res.Decode(&rec); err != nil {
		db.errs.Add(1)
		return 0, "", false, netip.Prefix{}
	}
	return rec.Number, rec.Org, rec.Number != 0, network
}

// Country returns the ISO 3166-1 alpha-2 code of the country of addr
// (where it is located, else where its network is registered); ok is
// false when the database has none for it (or is not configured).
func (db *DB) Country(addr netip.Addr) (isoCode string, ok bool) {
	isoCode, ok, _ = db.CountryNetwork(addr)
	return isoCode, ok
}

// CountryNetwork is Country, with the network the answer holds for.
func (db *DB) CountryNetwork(addr netip.Addr) (isoCode string, ok bool, network netip.Prefix) {
	if db == nil {
		return "", false, netip.Prefix{}
	}
	db.mu.RLock()
	defer db.mu.RUnlock()
	if db.country == nil {
		return "", false, netip.Prefix{}
	}
	res := db.country.Lookup(addr.Unmap())
	if err := res.Err(); err != nil {
		db.errs.Add(1)
		return "", false, netip.Prefix{}
	}
	network = res.Prefix()
	if !res.Found() {
		return "", false, network
	}
	var rec countryRecord
	if err := res.Decode(&rec); err != nil {
		db.errs.Add(1)
		return "", false, netip.Prefix{}
	}
	code := rec.Country.ISOCode
	if code == "" {
		code = rec.Registered.ISOCode
	}
	return code, code != "", network
}

// Close releases the files; lookups after it answer not found.
func (db *DB) Close() error {
	if db == nil {
		return nil
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	var errs []error
	if db.asn != nil {
		errs = append(errs, db.asn.Close())
		db.asn = nil
	}
	if db.country != nil {
		errs = append(errs, db.country.Close())
		db.country = nil
	}
	return errors.Join(errs...)
}

// ASNLookup looks up addresses that come in address order (a scan of the
// windows): an address inside the network of the previous answer gets it
// again without a lookup. Not safe for concurrent use.
type ASNLookup struct {
	db     *DB
	net    netip.Prefix
	number uint32
	org    string
	ok     bool
}

// NewASNLookup starts a sequential ASN lookup.
func (db *DB) NewASNLookup() *ASNLookup { return &ASNLookup{db: db} }

// ASN is DB.ASN.
func (l *ASNLookup) ASN(addr netip.Addr) (number uint32, org string, ok bool) {
	addr = addr.Unmap()
	if !l.net.IsValid() || !l.net.Contains(addr) {
		l.number, l.org, l.ok, l.net = l.db.ASNNetwork(addr)
	}
	return l.number, l.org, l.ok
}

// CountryLookup is ASNLookup for countries.
type CountryLookup struct {
	db   *DB
	net  netip.Prefix
	code string
	ok   bool
}

// NewCountryLookup starts a sequential country lookup.
func (db *DB) NewCountryLookup() *CountryLookup { return &CountryLookup{db: db} }

// Country is DB.Country.
func (l *CountryLookup) Country(addr netip.Addr) (isoCode string, ok bool) {
	addr = addr.Unmap()
	if !l.net.IsValid() || !l.net.Contains(addr) {
		l.code, l.ok, l.net = l.db.CountryNetwork(addr)
	}
	return l.code, l.ok
}
