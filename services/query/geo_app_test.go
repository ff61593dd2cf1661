package query_test

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/logtally/logtally/internal/app"
	"github.com/logtally/logtally/internal/apptest"
	"github.com/logtally/logtally/internal/geoip/geoiptest"
)

// The reference's own tables: the databases are written from them, and
// the reference maps IPs to ASNs and countries by a longest-prefix match
// over them, without the geoip package. Nested networks (a /26 inside a
// /24, a /64 inside a /48) and IPs in none are on purpose.
var (
	refASNs = []geoiptest.ASN{
		{Network: "198.51.100.0/24", Number: 64500, Org: "Example Transit"},
		{Network: "198.51.100.64/26", Number: 64501, Org: "Small Net"},
		{Network: "203.0.113.0/24", Number: 64502, Org: "Example Hosting"},
		{Network: "192.0.2.0/25", Number: 64503, Org: "Half Net"},
		{Network: "172.16.0.0/12", Number: 64504, Org: "Wide Net"},
		{Network: "2001:db8:a::/48", Number: 64510, Org: "V6 A"},
		{Network: "2001:db8:b::/48", Number: 64511, Org: "V6 B"},
		{Network: "2001:db8:b:1::/64", Number: 64512, Org: "V6 Nested"},
	}
	refCountries = []geoiptest.Country{
		{Network: "198.51.100.0/24", ISOCode: "DE"},
		{Network: "203.0.113.0/25", ISOCode: "FR"},
		{Network: "203.0.113.128/25", ISOCode: "NL"},
		{Network: "192.0.2.0/24", ISOCode: "US"},
		{Network: "172.16.0.0/15", ISOCode: "JP"},
		{Network: "2001:db8:a::/48", ISOCode: "DE"},
		{Network: "2001:db8:b::/48", ISOCode: "SE"},
	}
)

// longest returns the index of the most specific network of nets that
// holds ip, or -1.
func longest(ip netip.Addr, n int, network func(int) string) int {
	best, bits := -1, -1
	for i := range n {
		p := netip.MustParsePrefix(network(i))
		if p.Contains(ip) && p.Bits() > bits {
			best, bits = i, p.Bits()
		}
	}
	return best
}

func refASN(ip netip.Addr) (uint32, string) {
	if i := longest(ip, len(refASNs), func(i int) string { return refASNs[i].Network }); i >= 0 {
		return refASNs[i].Number, refASNs[i].Org
	}
	return 0, ""
}

func refCountry(ip netip.Addr) string {
	if i := longest(ip, len(refCountries), func(i int) string { return refCountries[i].Network }); i >= 0 {
		return refCountries[i].ISOCode
	}
	return "--"
}

// geoItem is an item of any of the answers (ip, prefix, asn, country).
type geoItem struct {
	IP          string `json:"ip"`
	Prefix      string `json:"prefix"`
	ASN         uint32 `json:"asn"`
	Org         string `json:"org"`
	Country     string `json:"country"`
	Count       uint64 `json:"count"`
	IPs         uint64 `json:"ips"`
	Requests    uint64 `json:"requests"`
	Status4xx   uint64 `json:"status_4xx"`
	Status5xx   uint64 `json:"status_5xx"`
	AuthFailure uint64 `json:"auth_failures"`
	Bytes       uint64 `json:"bytes"`
}

type geoAnswer struct {
	By         string    `json:"by"`
	Class      string    `json:"class"`
	Configured bool      `json:"configured"`
	Note       string    `json:"note"`
	Bits       int       `json:"bits"`
	Bits6      int       `json:"bits6"`
	Items      []geoItem `json:"items"`
	Unknown    *geoItem  `json:"unknown"`
	Other      uint64    `json:"other"`
	Total      *geoItem  `json:"total"`
	IPs        uint64    `json:"ips"`
	Groups     int       `json:"groups"`
	Error      string    `json:"error"`
}

func getGeo(t *testing.T, base, q string) (geoAnswer, int) {
	t.Helper()
	resp, err := http.Get(base + q)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var v geoAnswer
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v in %q", q, err, b)
	}
	return v, resp.StatusCode
}

// refIP is the reference's counters of one IP.
type refIP struct {
	ip netip.Addr
	refCounters
}

func (c *refCounters) get(class string) uint64 {
	switch class {
	case "4xx":
		return c.S4xx
	case "5xx":
		return c.S5xx
	case "auth_failure":
		return c.Auth
	case "bytes":
		return c.Bytes
	}
	return c.Requests
}

func (c *refCounters) add(o refCounters) {
	c.Requests += o.Requests
	c.S4xx += o.S4xx
	c.S5xx += o.S5xx
	c.Auth += o.Auth
	c.Bytes += o.Bytes
}

// refGroup is one key of a reference ranking (an IP, a network, an ASN, a
// country) with its counters and IPs.
type refGroup struct {
	key     string
	order   func(a, b *refGroup) int // tie break
	unknown bool
	c       refCounters
	ips     uint64
	asn     uint32
	org     string
}

// rank sums the reference's IPs that keep accepts under key and ranks the
// keys as the answers do: count descending, then the tie break.
func rank(ips []refIP, class string, n int, keep func(netip.Addr) bool, key func(netip.Addr) *refGroup) (items []*refGroup, total refCounters, nIPs uint64) {
	groups := map[string]*refGroup{}
	for _, r := range ips {
		if keep != nil && !keep(r.ip) {
			continue
		}
		total.add(r.refCounters)
		nIPs++
		g := key(r.ip)
		if have := groups[g.key]; have != nil {
			g = have
		} else {
			groups[g.key] = g
		}
		g.c.add(r.refCounters)
		g.ips++
	}
	for _, g := range groups {
		if g.c.get(class) > 0 {
			items = append(items, g)
		}
	}
	slices.SortFunc(items, func(a, b *refGroup) int {
		if c := cmp.Compare(b.c.get(class), a.c.get(class)); c != 0 {
			return c
		}
		return a.order(a, b)
	})
	return items[:min(n, len(items))], total, nIPs
}

func byAddr(a, b *refGroup) int {
	return netip.MustParsePrefix(a.key).Addr().Compare(netip.MustParsePrefix(b.key).Addr())
}

func knownFirst(keyCmp func(a, b *refGroup) int) func(a, b *refGroup) int {
	return func(a, b *refGroup) int {
		if a.unknown != b.unknown {
			if a.unknown {
				return 1
			}
			return -1
		}
		return keyCmp(a, b)
	}
}

func checkItem(t *testing.T, q string, i int, got geoItem, want *refGroup, class string) {
	t.Helper()
	c := want.c
	if got.Count != c.get(class) || got.Requests != c.Requests || got.Status4xx != c.S4xx || got.Status5xx != c.S5xx ||
		got.AuthFailure != c.Auth || got.Bytes != c.Bytes || (got.IP == "" && got.IPs != want.ips) {
		t.Fatalf("%s: item %d %+v, want %s %+v (%d IPs)", q, i, got, want.key, c, want.ips)
	}
}

// Networks, ASNs and countries through the whole pipeline: lines from
// many IPv4 and IPv6 clients go in over TCP, and every rollup of
// /api/v1/top must equal a reference counted from the same lines.
func TestGeoRollupsMatchReference(t *testing.T) {
	dir := t.TempDir()
	asnDB := geoiptest.WriteASN(t, dir, slices.Clone(refASNs))
	countryDB := geoiptest.WriteCountry(t, dir, slices.Clone(refCountries))
	a := apptest.Start(t, "-parser.partitions=4", "-geoip.asn-db="+asnDB, "-geoip.country-db="+countryDB)

	rnd := rand.New(rand.NewPCG(3, 14))
	pools := []func() string{
		func() string { return fmt.Sprintf("198.51.100.%d", rnd.IntN(256)) },
		func() string { return fmt.Sprintf("203.0.113.%d", rnd.IntN(256)) },
		func() string { return fmt.Sprintf("192.0.2.%d", rnd.IntN(256)) },
		func() string { return fmt.Sprintf("172.%d.%d.%d", 16+rnd.IntN(3), rnd.IntN(4), rnd.IntN(256)) },
		func() string { return fmt.Sprintf("10.9.%d.%d", rnd.IntN(4), rnd.IntN(256)) },
		func() string { return fmt.Sprintf("2001:db8:a:%x::%x", rnd.IntN(4), rnd.IntN(300)) },
		func() string { return fmt.Sprintf("2001:db8:b:%x::%x", rnd.IntN(3), rnd.IntN(300)) },
		func() string { return fmt.Sprintf("2001:db8:c::%x", rnd.IntN(200)) },
	}
	weights := []int{5, 3, 2, 4, 2, 3, 2, 1}
	statuses := []int{200, 200, 200, 301, 404, 401, 500}
	now := time.Now().UTC().Truncate(time.Second)
	stamp := now.Format("02/Jan/2006:15:04:05 -0700")
	ref := map[netip.Addr]*refCounters{}
	c, err := net.Dial("tcp", a.Ingest.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(c)
	const lines = 6000
	for range lines {
		k := rnd.IntN(22)
		pool := 0
		for k >= weights[pool] {
			k -= weights[pool]
			pool++
		}
		ip := netip.MustParseAddr(pools[pool]())
		st, size := statuses[rnd.IntN(len(statuses))], uint64(rnd.IntN(9000))
		fmt.Fprintf(w, "%s - - [%s] \"GET / HTTP/1.1\" %d %d \"-\" \"curl/8.5.0\"\n", ip, stamp, st, size)
		r := ref[ip]
		if r == nil {
			r = &refCounters{}
			ref[ip] = r
		}
		r.add(refCounters{Requests: 1, Bytes: size})
		switch {
		case st == 401:
			r.S4xx++
			r.Auth++
		case st >= 400 && st < 500:
			r.S4xx++
		case st >= 500:
			r.S5xx++
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	var ips []refIP
	for ip, c := range ref {
		ips = append(ips, refIP{ip, *c})
	}

	from := now.Truncate(time.Minute)
	rq := "from=" + url.QueryEscape(from.Format(time.RFC3339)) + "&to=" + url.QueryEscape(from.Add(time.Minute).Format(time.RFC3339))
	base := "http://" + a.HTTPAddr().String()
	apptest.Eventually(t, "all lines counted", 30*time.Second, func() bool {
		resp, err := http.Get(base + "/api/v1/totals?" + rq)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var tot struct {
			Requests uint64 `json:"requests"`
		}
		return json.NewDecoder(resp.Body).Decode(&tot) == nil && tot.Requests == lines
	})

	classes := []string{"requests", "4xx", "bytes"}
	prefixKey := func(bits, bits6 int) func(netip.Addr) *refGroup {
		return func(ip netip.Addr) *refGroup {
			b := bits6
			if ip.Is4() {
				b = bits
			}
			p, _ := ip.Prefix(b)
			return &refGroup{key: p.String(), order: byAddr}
		}
	}
	asnKey := func(ip netip.Addr) *refGroup {
		n, org := refASN(ip)
		return &refGroup{key: fmt.Sprint(n), unknown: n == 0, asn: n, org: org,
			order: knownFirst(func(a, b *refGroup) int { return cmp.Compare(a.asn, b.asn) })}
	}
	countryKey := func(ip netip.Addr) *refGroup {
		cc := refCountry(ip)
		return &refGroup{key: cc, unknown: cc == "--", order: knownFirst(func(a, b *refGroup) int { return cmp.Compare(a.key, b.key) })}
	}
	ipKey := func(ip netip.Addr) *refGroup {
		return &refGroup{key: netip.PrefixFrom(ip, ip.BitLen()).String(), order: byAddr}
	}
	compare := func(q, class string, n int, keep func(netip.Addr) bool, key func(netip.Addr) *refGroup, label func(geoItem) string) geoAnswer {
		t.Helper()
		got, code := getGeo(t, base, q)
		if code != 200 {
			t.Fatalf("%s: HTTP %d %s", q, code, got.Error)
		}
		want, total, nIPs := rank(ips, class, n, keep, key)
		if len(got.Items) != len(want) || got.Class != class {
			t.Fatalf("%s: %d items, want %d: %+v", q, len(got.Items), len(want), got.Items)
		}
		if len(want) == 0 {
			t.Fatalf("%s: the reference has no items: a test without teeth", q)
		}
		for i, g := range want {
			if l := label(got.Items[i]); l != g.key {
				t.Fatalf("%s: item %d is %s, want %s (%+v)", q, i, l, g.key, got.Items[i])
			}
			checkItem(t, q, i, got.Items[i], g, class)
			if g.org != got.Items[i].Org {
				t.Fatalf("%s: item %d org %q, want %q", q, i, got.Items[i].Org, g.org)
			}
		}
		if got.Total != nil {
			var listed uint64
			for _, g := range want {
				listed += g.c.get(class)
			}
			tot := &refGroup{key: "total", c: total, ips: nIPs}
			checkItem(t, q+" total", 0, geoItem{Count: total.get(class), IPs: got.IPs, Requests: got.Total.Requests, Status4xx: got.Total.Status4xx,
				Status5xx: got.Total.Status5xx, AuthFailure: got.Total.AuthFailure, Bytes: got.Total.Bytes}, tot, class)
			if got.Other != total.get(class)-listed {
				t.Fatalf("%s: other %d, want %d", q, got.Other, total.get(class)-listed)
			}
		}
		return got
	}
	prefixLabel := func(it geoItem) string { return it.Prefix }
	asnLabel := func(it geoItem) string { return fmt.Sprint(it.ASN) }
	countryLabel := func(it geoItem) string { return it.Country }
	ipLabel := func(it geoItem) string {
		ip, err := netip.ParseAddr(it.IP)
		if err != nil {
			return "bad ip " + it.IP
		}
		return netip.PrefixFrom(ip, ip.BitLen()).String()
	}
	in := func(p string) func(netip.Addr) bool { return netip.MustParsePrefix(p).Contains }
	ofASN := func(n uint32) func(netip.Addr) bool {
		return func(ip netip.Addr) bool { a, _ := refASN(ip); return a == n }
	}
	ofCountry := func(cc string) func(netip.Addr) bool {
		return func(ip netip.Addr) bool { return refCountry(ip) == cc }
	}
	and := func(f, g func(netip.Addr) bool) func(netip.Addr) bool {
		return func(ip netip.Addr) bool { return f(ip) && g(ip) }
	}

	for _, class := range classes {
		for _, n := range []int{3, 1000} {
			// Networks: /24 and /64 (the defaults), /16 and /48.
			got := compare(fmt.Sprintf("/api/v1/top?by=prefix&class=%s&n=%d&%s", class, n, rq), class, n, nil, prefixKey(24, 64), prefixLabel)
			if got.Bits != 24 || got.Bits6 != 64 || got.By != "prefix" {
				t.Fatalf("by=prefix answered bits %d bits6 %d by %q", got.Bits, got.Bits6, got.By)
			}
			compare(fmt.Sprintf("/api/v1/top?by=prefix&bits=16&bits6=48&class=%s&n=%d&%s", class, n, rq), class, n, nil, prefixKey(16, 48), prefixLabel)
			compare(fmt.Sprintf("/api/v1/top?by=prefix&bits=28&cidr=198.51.100.0/24&class=%s&n=%d&%s", class, n, rq), class, n, in("198.51.100.0/24"), prefixKey(28, 64), prefixLabel)
			// ASNs and countries, the unknown group ranked among them.
			got = compare(fmt.Sprintf("/api/v1/top?by=asn&class=%s&n=%d&%s", class, n, rq), class, n, nil, asnKey, asnLabel)
			if !got.Configured || got.By != "asn" || got.Unknown == nil {
				t.Fatalf("by=asn: %+v", got)
			}
			_, _, unknownIPs := rank(ips, class, 1, ofASN(0), asnKey)
			if got.Unknown.IPs != unknownIPs || got.Groups != 8 {
				t.Fatalf("by=asn: unknown %+v (want %d IPs), %d groups (want 8)", got.Unknown, unknownIPs, got.Groups)
			}
			compare(fmt.Sprintf("/api/v1/top?by=country&class=%s&n=%d&%s", class, n, rq), class, n, nil, countryKey, countryLabel)
			compare(fmt.Sprintf("/api/v1/top?by=asn&cidr=2001:db8::/32&class=%s&n=%d&%s", class, n, rq), class, n, in("2001:db8::/32"), asnKey, asnLabel)
			compare(fmt.Sprintf("/api/v1/top?by=asn&country=DE&class=%s&n=%d&%s", class, n, rq), class, n, ofCountry("DE"), asnKey, asnLabel)
			// Filters of by=ip and by=prefix.
			compare(fmt.Sprintf("/api/v1/top?asn=64500&class=%s&n=%d&%s", class, n, rq), class, n, ofASN(64500), ipKey, ipLabel)
			compare(fmt.Sprintf("/api/v1/top?by=ip&asn=AS64512&class=%s&n=%d&%s", class, n, rq), class, n, ofASN(64512), ipKey, ipLabel)
			compare(fmt.Sprintf("/api/v1/top?asn=0&class=%s&n=%d&%s", class, n, rq), class, n, ofASN(0), ipKey, ipLabel)
			compare(fmt.Sprintf("/api/v1/top?country=jp&cidr=172.16.0.0/12&class=%s&n=%d&%s", class, n, rq), class, n, and(ofCountry("JP"), in("172.16.0.0/12")), ipKey, ipLabel)
			compare(fmt.Sprintf("/api/v1/top?by=prefix&asn=64500&class=%s&n=%d&%s", class, n, rq), class, n, ofASN(64500), prefixKey(24, 64), prefixLabel)
			compare(fmt.Sprintf("/api/v1/top?by=prefix&bits=16&country=--&class=%s&n=%d&%s", class, n, rq), class, n, ofCountry("--"), prefixKey(16, 64), prefixLabel)
			compare(fmt.Sprintf("/api/v1/top?by=prefix&bits6=48&asn=64511&country=SE&class=%s&n=%d&%s", class, n, rq), class, n, and(ofASN(64511), ofCountry("SE")), prefixKey(24, 48), prefixLabel)
		}
	}
	for _, q := range []string{
		"/api/v1/top?by=prefix&bits=7", "/api/v1/top?by=prefix&bits=33", "/api/v1/top?by=prefix&bits6=15", "/api/v1/top?by=prefix&bits6=129",
		"/api/v1/top?by=prefix&bits=x", "/api/v1/top?asn=x", "/api/v1/top?asn=4294967296", "/api/v1/top?country=DEU", "/api/v1/top?by=asn&country=1",
		"/api/v1/top?by=path&asn=1", "/api/v1/top?by=country&cidr=nope", "/api/v1/top?by=asn&n=0",
	} {
		got, code := getGeo(t, base, q+"&"+rq)
		if code != 400 || got.Error == "" {
			t.Fatalf("%s: HTTP %d %+v, want 400 with a message", q, code, got)
		}
	}
}

// Without -geoip flags by=asn and by=country answer that they are not
// configured (200, no items), filters are refused with the flag to set,
// and by=prefix works.
func TestGeoNotConfigured(t *testing.T) {
	a := apptest.Start(t, "-parser.partitions=2")
	now := time.Now().UTC()
	apptest.SendAccessLines(t, a.Ingest.TCPAddr(), now, 3, "198.51.100.7", "2001:db8::1")
	base := "http://" + a.HTTPAddr().String()
	apptest.Eventually(t, "lines counted", 30*time.Second, func() bool {
		got, code := getGeo(t, base, "/api/v1/top?by=prefix&last=5m")
		return code == 200 && len(got.Items) == 2 && got.Items[0].Count == 3
	})
	got, _ := getGeo(t, base, "/api/v1/top?by=prefix&last=5m")
	if got.Items[0].Prefix != "198.51.100.0/24" || got.Items[0].IPs != 1 || got.Items[1].Prefix != "2001:db8::/64" {
		t.Fatalf("by=prefix: %+v", got.Items)
	}
	for by, flag := range map[string]string{"asn": "-geoip.asn-db", "country": "-geoip.country-db"} {
		got, code := getGeo(t, base, "/api/v1/top?by="+by+"&last=5m")
		if code != 200 || got.Configured || len(got.Items) != 0 || !strings.Contains(got.Note, flag) || got.By != by {
			t.Fatalf("by=%s without a database: HTTP %d %+v", by, code, got)
		}
	}
	for q, flag := range map[string]string{"asn=64500": "-geoip.asn-db", "by=prefix&country=DE": "-geoip.country-db", "by=ip&asn=1&country=DE": "-geoip.asn-db"} {
		got, code := getGeo(t, base, "/api/v1/top?"+q+"&last=5m")
		if code != 400 || !strings.Contains(got.Error, flag) {
			t.Fatalf("%s without a database: HTTP %d %+v", q, code, got)
		}
	}
}

// A damaged, missing or wrong database is a startup error that names the
// flag and the file; nothing crashes.
func TestGeoBadDatabaseFailsStartup(t *testing.T) {
	dir := t.TempDir()
	good := geoiptest.WriteASN(t, dir, slices.Clone(refASNs))
	b, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	corrupt := filepath.Join(dir, "corrupt.mmdb")
	if err := os.WriteFile(corrupt, b[:len(b)/3], 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "GeoLite2-Country.mmdb")
	for _, c := range []struct{ flag, want string }{
		{"-geoip.asn-db=" + corrupt, "geoip.asn-db " + corrupt + ": not a MaxMind DB"},
		{"-geoip.country-db=" + missing, "geoip.country-db " + missing + ": cannot read"},
		{"-geoip.country-db=" + good, "is an ASN database, not a country one"},
	} {
		a, err := app.New(apptest.Config(t, "-target=query", c.flag), apptest.Logger("logtally"))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err = a.Start(ctx)
		cancel()
		sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
		_ = a.Stop(sctx)
		scancel()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%s: start error %v, want one saying %q", c.flag, err, c.want)
		}
	}
}
