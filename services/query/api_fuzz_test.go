package query

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/logtally/logtally/internal/geoip/geoiptest"
)

// apiPaths are the endpoints FuzzQueryAPI sends parameters to; {ip} takes
// the fuzzed path segment.
var apiPaths = []string{
	"/api/v1/top", "/api/v1/ips/{ip}", "/api/v1/totals", "/api/v1/series",
	"/api/v1/dead-letters", "/api/v1/watch/top", "/api/v1/watch/overview",
}

// FuzzQueryAPI sends arbitrary query strings (n, last, from, to, step,
// cidr, class, status, by, path, bits, bits6, asn, country, anything) and IP path segments to every HTTP endpoint of a running
// query service with data in it. Every answer must be 200 or a 4xx with a
// JSON error message: never a 5xx, a panic or a hang.
func FuzzQueryAPI(f *testing.F) {
	for _, s := range []struct {
		path uint8
		ip   string
		q    string
	}{
		{0, "", "n=10&last=5m"}, {0, "", "n=1000000000000000000"}, {0, "", "n=-1"}, {0, "", "cidr=10.0.0.0/8&n=5"},
		{0, "", "cidr=fe80::1%25eth0/64"}, {0, "", "last=876000h"}, {0, "", "from=2026-11-24T10:00:00Z&to=2126-11-24T10:00:00Z"},
		{1, "203.0.113.7", "step=1h&last=1d"}, {1, "fe80::1%eth0", "last=5m"}, {1, "::ffff:1.2.3.4", "step=0s"},
		{1, "1.2.3.4", "step=99999999h"}, {2, "", "from=2026-11-24T11:00:00Z&to=2026-11-24T10:00:00Z"},
		{3, "", "step=1m&last=1h"}, {4, "", "n=99999999999"}, {5, "", "n=3&cidr=::/0"}, {6, "", "last=1e9h"},
		{0, "", "last=5m&last=6m&n=1&n=2"}, {2, "", "last=%00"}, {0, "", "n=%ff%fe"},
		{0, "", "n=3&from=2026-11-24T09:00:00Z&to=2026-11-24T11:00:00Z"}, {1, "10.0.1.1", "from=2026-11-24T09:00:00Z&to=2026-11-24T11:00:00Z&step=5m"},
		{0, "", "class=4xx&n=3"}, {0, "", "class=bytes&cidr=10.0.0.0/8&n=2"}, {0, "", "class=%00"}, {5, "", "class=auth_failure&n=1"}, {0, "", "class=requests&class=5xx"},
		{0, "", "status=4xx&n=3"}, {0, "", "status=404"}, {0, "", "status=4xx&class=5xx"}, {0, "", "status=5XX&class=5xx"}, {0, "", "status="},
		{0, "", "by=status&status=5xx&n=2"}, {0, "", "by=path&status=404"}, {0, "", "by=path&path=/api/"}, {0, "", "path=%00"}, {5, "", "status=4xx&n=1"},
		{0, "", "by=prefix&bits=16&bits6=48&n=5"}, {0, "", "by=prefix&bits=33"}, {0, "", "by=prefix&bits6=-1&cidr=::/0"}, {0, "", "by=prefix&asn=64500&country=de"},
		{0, "", "by=asn&n=3&class=bytes"}, {0, "", "by=country&cidr=10.0.0.0/16&asn=0"}, {0, "", "by=asn&country=--"}, {0, "", "asn=AS64500&n=2"},
		{0, "", "asn=99999999999"}, {0, "", "country=%00%00"}, {0, "", "country=de&cidr=10.0.1.0/24"}, {5, "", "asn=64500&n=3"}, {5, "", "country=XX"},
	} {
		f.Add(s.path, s.ip, s.q)
	}
	dir := f.TempDir()
	asnDB := geoiptest.WriteASN(f, dir, []geoiptest.ASN{
		{Network: "10.0.0.0/16", Number: 64500, Org: "Example"}, {Network: "10.0.1.0/26", Number: 64501, Org: "Small"}, {Network: "2001:db8::/32", Number: 64510, Org: "V6"},
	})
	countryDB := geoiptest.WriteCountry(f, dir, []geoiptest.Country{{Network: "10.0.0.0/15", ISOCode: "DE"}, {Network: "2001:db8::/48", ISOCode: "FR"}})
	e := newEnv(f, 4, func(c *Config) { c.GeoIP.ASNDB, c.GeoIP.CountryDB = asnDB, countryDB })
	base := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	var d data
	for i := range 300 {
		ip := netip.AddrFrom4([4]byte{10, 0, byte(i % 7), byte(i % 13)})
		if i%5 == 0 {
			ip = netip.MustParseAddr("2001:db8::" + string(rune('a'+i%6)))
		}
		d.requests = append(d.requests, event{ip: ip, t: base.Add(time.Duration(i) * 17 * time.Second)})
	}
	e.put(e.windows(d))
	h := e.svc.deps.Mux

	f.Fuzz(func(t *testing.T, which uint8, ip, rawQuery string) {
		path := apiPaths[int(which)%len(apiPaths)]
		path = strings.Replace(path, "{ip}", url.PathEscape(ip), 1)
		u, err := url.Parse(path + "?" + rawQuery)
		if err != nil {
			return // not a request a client could send
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if strings.Contains(path, "/watch/") {
			// Streams run until the client leaves; checking the parameters
			// happens before the first event, so leave at once.
			cancel()
		}
		req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
		req.URL = u
		req.RequestURI = u.RequestURI()
		if _, pattern := h.Handler(req); pattern == "" {
			return // no route (an empty or dot segment): the mux's own 404 or redirect
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch {
		case rec.Code == http.StatusOK:
		case rec.Code >= 400 && rec.Code < 500:
			var body struct {
				Error string `json:"error"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error == "" {
				t.Fatalf("GET %s: %d without a JSON error message: %q", u, rec.Code, rec.Body.String())
			}
		default:
			t.Fatalf("GET %s: %d %q", u, rec.Code, rec.Body.String())
		}
	})
}
