package query

import (
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/internal/geoip"
	"github.com/logtally/logtally/internal/obs"
	"github.com/logtally/logtally/internal/windows"
)

// Network rollups of /api/v1/top (docs/geoip.md):
//
//	by=prefix&bits=24&bits6=64  networks, exactly (windows.Reader.TopPrefixes)
//	by=asn, by=country          groups of IPs by GeoIP (windows.TopGroups)
//	asn=, country=              keep only the IPs of an ASN or a country
//	                            (by=ip, prefix, asn, country)
//
// The IPs without an ASN or a country (private addresses, networks the
// database does not know) are the unknown group: ASN 0, country "--".

// unknownCountry is the country of IPs the database has none for.
const unknownCountry = "--"

type (
	prefixesJSON struct {
		From  string           `json:"from"`
		To    string           `json:"to"`
		By    string           `json:"by"`
		Class string           `json:"class"`
		Bits  int              `json:"bits"`
		Bits6 int              `json:"bits6"`
		Items []prefixItemJSON `json:"items"`
	}
	prefixItemJSON struct {
		Prefix string `json:"prefix"`
		Count  uint64 `json:"count"`
		IPs    uint64 `json:"ips"`
		countersJSON
	}
	// groupsJSON is the answer of by=asn and by=country. Without the
	// database Configured is false, Note says which flag to set and
	// nothing else is filled in.
	groupsJSON[T any] struct {
		From       string `json:"from"`
		To         string `json:"to"`
		By         string `json:"by"`
		Class      string `json:"class"`
		Configured bool   `json:"configured"`
		Note       string `json:"note,omitempty"`
		Items      []T    `json:"items"`
		// Unknown is the IPs without a group, listed among the items or not.
		Unknown *unknownJSON `json:"unknown,omitempty"`
		// Other is the ranked class over the groups not listed; Total the
		// counters of every IP, IPs their number, Groups the number of
		// known groups they fell in.
		Other  uint64        `json:"other"`
		Total  *countersJSON `json:"total,omitempty"`
		IPs    uint64        `json:"ips"`
		Groups int           `json:"groups"`
	}
	asnItemJSON struct {
		ASN   uint32 `json:"asn"`
		Org   string `json:"org"`
		Count uint64 `json:"count"`
		IPs   uint64 `json:"ips"`
		countersJSON
	}
	countryItemJSON struct {
		Country string `json:"country"`
		Count   uint64 `json:"count"`
		IPs     uint64 `json:"ips"`
		countersJSON
	}
	unknownJSON struct {
		Count uint64 `json:"count"`
		IPs   uint64 `json:"ips"`
		countersJSON
	}
)

// openGeoIP opens the configured databases (none configured is fine).
func (s *Service) openGeoIP() (*geoip.DB, error) {
	db, err := geoip.Open(s.cfg.GeoIP.ASNDB, s.cfg.GeoIP.CountryDB)
	if err != nil {
		return nil, err
	}
	for _, info := range db.Infos() {
		name := "country"
		if info.Path == s.cfg.GeoIP.ASNDB {
			name = "asn"
		}
		s.metrics.geoBuild.WithLabelValues(name).Set(float64(info.Build.Unix()))
		s.log.Info("geoip database opened", "db", name, "path", info.Path, "type", info.Type, "built", info.Build.Format(time.DateOnly))
	}
	return db, nil
}

// geoFilter is the asn= and country= parameters: only the IPs of that
// ASN and that country (0 and "--": the IPs without one).
type geoFilter struct {
	asn        uint32
	hasASN     bool
	country    string
	hasCountry bool
}

// parseGeoFilter reads asn= and country=; nil when neither is given. A
// filter whose database is not configured is refused.
func (s *Service) parseGeoFilter(q url.Values) (*geoFilter, error) {
	if !q.Has("asn") && !q.Has("country") {
		return nil, nil
	}
	db := s.geo.Load()
	f := &geoFilter{}
	if q.Has("asn") {
		v := strings.TrimSpace(q.Get("asn"))
		n, err := strconv.ParseUint(strings.TrimPrefix(strings.ToUpper(v), "AS"), 10, 32)
		if err != nil {
			return nil, windows.Invalidf("asn %q is not an AS number such as 64500 or AS64500 (0: the IPs without one)", v)
		}
		if !db.HasASN() {
			return nil, windows.Invalidf("asn= needs an ASN database: start the query target with -geoip.asn-db set to a GeoLite2-ASN or DB-IP ASN lite .mmdb file")
		}
		f.asn, f.hasASN = uint32(n), true
	}
	if q.Has("country") {
		v := strings.ToUpper(strings.TrimSpace(q.Get("country")))
		if !validCountry(v) {
			return nil, windows.Invalidf("country %q is not an ISO 3166-1 alpha-2 code such as DE or US (--: the IPs without one)", q.Get("country"))
		}
		if !db.HasCountry() {
			return nil, windows.Invalidf("country= needs a country database: start the query target with -geoip.country-db set to a GeoLite2-Country or DB-IP country lite .mmdb file")
		}
		f.country, f.hasCountry = v, true
	}
	return f, nil
}

func validCountry(v string) bool {
	if v == unknownCountry {
		return true
	}
	return len(v) == 2 && v[0] >= 'A' && v[0] <= 'Z' && v[1] >= 'A' && v[1] <= 'Z'
}

// keep is the filter as a windows Keep function, with lookups of its own
// (each query calls keep anew: the lookups remember the last network).
func (f *geoFilter) keep(db *geoip.DB) func(netip.Addr) bool {
	if f == nil {
		return nil
	}
	al, cl := db.NewASNLookup(), db.NewCountryLookup()
	return func(a netip.Addr) bool {
		if f.hasASN {
			if n, _, _ := al.ASN(a); n != f.asn {
				return false
			}
		}
		if f.hasCountry {
			c, ok := cl.Country(a)
			if !ok {
				c = unknownCountry
			}
			if c != f.country {
				return false
			}
		}
		return true
	}
}

// parseBits reads a prefix length parameter.
func parseBits(q url.Values, name string, def, lo, hi int) (int, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, windows.Invalidf("%s %q is not a prefix length between %d and %d", name, v, lo, hi)
	}
	return n, nil
}

// clientQuery is what by=prefix, asn and country read besides their own
// parameters: n, class, cidr, the geo filter and the range.
type clientQuery struct {
	n      int
	class  counts.Class
	within netip.Prefix
	geo    *geoFilter
	rg     windows.Range
}

func (s *Service) clientQuery(r *http.Request) (clientQuery, error) {
	q := r.URL.Query()
	var cq clientQuery
	var err error
	if cq.n, err = s.httpN(r); err != nil {
		return cq, err
	}
	if cq.class, err = httpClass(q, q.Get("by")); err != nil {
		return cq, err
	}
	if err = refusePath(q, q.Get("by")); err != nil {
		return cq, err
	}
	if q.Has("cidr") {
		if cq.within, err = parseCIDR(q.Get("cidr")); err != nil {
			return cq, err
		}
	}
	if cq.rg, err = s.httpRange(r); err != nil {
		return cq, err
	}
	if cq.geo, err = s.parseGeoFilter(q); err != nil {
		return cq, err
	}
	return cq, s.waitStarted()
}

// handleTopPrefixes is by=prefix: the top networks of bits (IPv4) and
// bits6 (IPv6) bits.
func (s *Service) handleTopPrefixes(w http.ResponseWriter, r *http.Request) {
	var err error
	defer func(start time.Time) { s.observe("top_prefix", "http", start, err) }(time.Now())
	q := r.URL.Query()
	bits, err := parseBits(q, "bits", 24, 8, 32)
	if err != nil {
		writeErr(w, err)
		return
	}
	bits6, err := parseBits(q, "bits6", 64, 16, 128)
	if err != nil {
		writeErr(w, err)
		return
	}
	cq, err := s.clientQuery(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	res, err := s.reader.TopPrefixes(r.Context(), cq.rg, windows.PrefixQuery{
		N: cq.n, Class: cq.class, V4Bits: bits, V6Bits: bits6, Within: cq.within, Keep: cq.geo.keep(s.geo.Load()),
	})
	if err != nil {
		writeErr(w, err)
		return
	}
	out := prefixesJSON{From: windows.FormatTime(res.Range.From), To: windows.FormatTime(res.Range.To), By: "prefix", Class: res.Class.String(),
		Bits: bits, Bits6: bits6, Items: make([]prefixItemJSON, len(res.Items))}
	for i, it := range res.Items {
		out.Items[i] = prefixItemJSON{Prefix: it.Prefix.String(), Count: it.Count, IPs: it.IPs, countersJSON: countersToJSON(it.Counters)}
	}
	obs.WriteJSON(w, http.StatusOK, out)
}

// handleTopGroups is by=asn and by=country.
func (s *Service) handleTopGroups(w http.ResponseWriter, r *http.Request, by string) {
	var err error
	defer func(start time.Time) { s.observe("top_"+by, "http", start, err) }(time.Now())
	cq, err := s.clientQuery(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	db := s.geo.Load()
	if by == "asn" {
		if !db.HasASN() {
			obs.WriteJSON(w, http.StatusOK, notConfigured[asnItemJSON](cq, by, "by=asn needs an ASN database: start the query target with -geoip.asn-db set to a GeoLite2-ASN or DB-IP ASN lite .mmdb file (docs/geoip.md)"))
			return
		}
		l := db.NewASNLookup()
		orgs := map[uint32]string{}
		last := uint32(0)
		var res windows.GroupResult[uint32]
		res, err = windows.TopGroups(r.Context(), s.reader, cq.rg, windows.GroupQuery[uint32]{
			N: cq.n, Class: cq.class, Within: cq.within, Keep: cq.geo.keep(db),
			Group: func(a netip.Addr) (uint32, bool) {
				n, org, ok := l.ASN(a)
				if !ok {
					return 0, false
				}
				if n != last {
					if _, seen := orgs[n]; !seen {
						orgs[n] = org
					}
					last = n
				}
				return n, true
			},
		})
		if err != nil {
			writeErr(w, err)
			return
		}
		out := groupsToJSON(res, by, func(g windows.GroupCount[uint32]) asnItemJSON {
			return asnItemJSON{ASN: g.Key, Org: orgs[g.Key], Count: g.Count, IPs: g.IPs, countersJSON: countersToJSON(g.Counters)}
		})
		obs.WriteJSON(w, http.StatusOK, out)
		return
	}
	if !db.HasCountry() {
		obs.WriteJSON(w, http.StatusOK, notConfigured[countryItemJSON](cq, by, "by=country needs a country database: start the query target with -geoip.country-db set to a GeoLite2-Country or DB-IP country lite .mmdb file (docs/geoip.md)"))
		return
	}
	l := db.NewCountryLookup()
	var res windows.GroupResult[string]
	res, err = windows.TopGroups(r.Context(), s.reader, cq.rg, windows.GroupQuery[string]{
		N: cq.n, Class: cq.class, Within: cq.within, Keep: cq.geo.keep(db), Group: l.Country,
	})
	if err != nil {
		writeErr(w, err)
		return
	}
	out := groupsToJSON(res, by, func(g windows.GroupCount[string]) countryItemJSON {
		c := g.Key
		if !g.Known {
			c = unknownCountry
		}
		return countryItemJSON{Country: c, Count: g.Count, IPs: g.IPs, countersJSON: countersToJSON(g.Counters)}
	})
	obs.WriteJSON(w, http.StatusOK, out)
}

func notConfigured[T any](cq clientQuery, by, note string) groupsJSON[T] {
	return groupsJSON[T]{From: windows.FormatTime(cq.rg.From), To: windows.FormatTime(cq.rg.To), By: by, Class: cq.class.String(), Note: note, Items: []T{}}
}

func groupsToJSON[K string | uint32, T any](res windows.GroupResult[K], by string, item func(windows.GroupCount[K]) T) groupsJSON[T] {
	total := countersToJSON(res.Total)
	out := groupsJSON[T]{From: windows.FormatTime(res.Range.From), To: windows.FormatTime(res.Range.To), By: by, Class: res.Class.String(),
		Configured: true, Items: make([]T, len(res.Items)), Other: res.Other, Total: &total, IPs: res.IPs, Groups: res.Groups,
		Unknown: &unknownJSON{Count: res.Unknown.Count, IPs: res.Unknown.IPs, countersJSON: countersToJSON(res.Unknown.Counters)}}
	for i, g := range res.Items {
		out.Items[i] = item(g)
	}
	return out
}
