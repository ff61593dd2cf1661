package query

import (
	"errors"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/internal/obs"
	"github.com/logtally/logtally/internal/windows"
)

// HTTP answers. Times are RFC 3339 UTC, IPs canonical. Every count comes
// with the IP's (or the range's) class counters; count stays the requests
// (or, in a top answer, the ranked class) for older clients.
type (
	countersJSON struct {
		Requests     uint64 `json:"requests"`
		Status4xx    uint64 `json:"status_4xx"`
		Status5xx    uint64 `json:"status_5xx"`
		AuthFailures uint64 `json:"auth_failures"`
		Bytes        uint64 `json:"bytes"`
	}
	topJSON struct {
		From  string     `json:"from"`
		To    string     `json:"to"`
		Class string     `json:"class"`
		Items []itemJSON `json:"items"`
	}
	itemJSON struct {
		IP    string `json:"ip"`
		Count uint64 `json:"count"`
		countersJSON
	}
	seriesJSON struct {
		IP    string `json:"ip"`
		From  string `json:"from"`
		To    string `json:"to"`
		Step  string `json:"step"`
		Count uint64 `json:"count"`
		countersJSON
		Series []pointJSON `json:"series"`
	}
	pointJSON struct {
		Start string `json:"start"`
		Count uint64 `json:"count"`
		countersJSON
	}
	totalsJSON struct {
		From        string `json:"from"`
		To          string `json:"to"`
		Requests    uint64 `json:"requests"`
		DistinctIPs uint64 `json:"distinct_ips"`
		DeadLetters uint64 `json:"dead_letters"`
		Late        uint64 `json:"late"`
		Status4xx   uint64 `json:"status_4xx"`
		Status5xx   uint64 `json:"status_5xx"`
		AuthFails   uint64 `json:"auth_failures"`
		Bytes       uint64 `json:"bytes"`
		LostBatches uint64 `json:"lost_batches"`
	}
)

func countersToJSON(c counts.Counters) countersJSON {
	return countersJSON{Requests: c.Requests, Status4xx: c.Status4xx, Status5xx: c.Status5xx, AuthFailures: c.AuthFailures, Bytes: c.Bytes}
}

// registerHTTP adds the JSON API:
//
//	GET /api/v1/top?n=10&class=requests|status=4xx&last=5m | from=&to= [&cidr=][&asn=][&country=] [&by=<field>]
//	GET /api/v1/top?by=prefix[&bits=24&bits6=64] | by=asn | by=country (geo.go)
//	GET /api/v1/ips/{ip}?last=…|from=&to=&step=1m
//	GET /api/v1/totals?last=…|from=&to=
//
// Without last/from/to the range is the last query.default-last (15m).
func (s *Service) registerHTTP(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/top", s.handleTop)
	mux.HandleFunc("GET /api/v1/ips/{ip}", s.handleSeries)
	mux.HandleFunc("GET /api/v1/totals", s.handleTotals)
	s.registerDashboard(mux) // dashboard.go: /, /ui/, series, dead letters, SSE watches
}

// httpRange reads last/from/to.
func (s *Service) httpRange(r *http.Request) (windows.Range, error) {
	q := r.URL.Query()
	sp, err := windows.ParseRangeSpec(q.Get("last"), q.Get("from"), q.Get("to"))
	if err != nil {
		return windows.Range{}, err
	}
	return sp.Resolve(s.now(), s.finest, s.cfg.DefaultLast)
}

// httpN reads n (default 10).
func (s *Service) httpN(r *http.Request) (int, error) {
	v := r.URL.Query().Get("n")
	if v == "" {
		return 10, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, windows.Invalidf("n %q is not a whole number between 1 and %d", v, s.cfg.MaxN)
	}
	if n < 1 || n > s.cfg.MaxN {
		return 0, windows.Invalidf("n must be between 1 and %d, got %d", s.cfg.MaxN, n)
	}
	return n, nil
}

// httpStep reads step (default the finest window).
func (s *Service) httpStep(r *http.Request) (time.Duration, error) {
	v := r.URL.Query().Get("step")
	if v == "" {
		return s.finest, nil
	}
	step, err := windows.ParseDuration(v)
	if err != nil {
		return 0, windows.Invalidf("step %q is not a duration such as 1m, 5m or 1h", v)
	}
	return step, nil
}

// parseClass reads a class name; empty means requests.
func parseClass(v string) (counts.Class, error) {
	if v == "" {
		return counts.Requests, nil
	}
	c, err := counts.ParseClass(v)
	if err != nil {
		return 0, windows.Invalidf("class: %w", err)
	}
	return c, nil
}

// topQuery reads n, class (or its alias status, filters.go), cidr, asn
// and country. The geo filter's Keep
// remembers lookups: a query that runs more than once (a watch) takes
// tq.Keep = geo.keep(…) anew each time.
func (s *Service) topQuery(r *http.Request) (windows.TopQuery, *geoFilter, error) {
	q := r.URL.Query()
	n, err := s.httpN(r)
	if err != nil {
		return windows.TopQuery{}, nil, err
	}
	tq := windows.TopQuery{N: n}
	if tq.Class, err = httpClass(q, "ip"); err != nil {
		return windows.TopQuery{}, nil, err
	}
	if err = refusePath(q, "ip"); err != nil {
		return windows.TopQuery{}, nil, err
	}
	if q.Has("cidr") {
		if tq.Prefix, err = parseCIDR(q.Get("cidr")); err != nil {
			return windows.TopQuery{}, nil, err
		}
	}
	geo, err := s.parseGeoFilter(q)
	if err != nil {
		return windows.TopQuery{}, nil, err
	}
	tq.Keep = geo.keep(s.geo.Load())
	return tq, geo, nil
}

// handleTop is GET /api/v1/top: the top n by class, with cidr=<prefix>
// only the IPs inside the prefix, with asn= or country= only those of an
// ASN or a country. by=prefix, asn and country rank networks and groups
// (geo.go), the other by= the fields beyond the IP (values.go).
func (s *Service) handleTop(w http.ResponseWriter, r *http.Request) {
	var err error
	q := r.URL.Query()
	op := "top"
	switch {
	case q.Has("asn") || q.Has("country"):
		op = "top_geo"
	case q.Has("cidr"):
		op = "top_cidr"
	}
	switch by := q.Get("by"); by {
	case "", "ip":
	case "prefix":
		s.handleTopPrefixes(w, r)
		return
	case "asn", "country":
		s.handleTopGroups(w, r, by)
		return
	default:
		s.handleTopValues(w, r, by)
		return
	}
	defer func(start time.Time) { s.observe(op, "http", start, err) }(time.Now())
	tq, _, err := s.topQuery(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	rg, err := s.httpRange(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	res, err := s.top(r, rg, tq)
	if err != nil {
		writeErr(w, err)
		return
	}
	obs.WriteJSON(w, http.StatusOK, topToJSON(res))
}

func (s *Service) top(r *http.Request, rg windows.Range, tq windows.TopQuery) (windows.TopResult, error) {
	if err := s.waitStarted(); err != nil {
		return windows.TopResult{}, err
	}
	return s.reader.Top(r.Context(), rg, tq)
}

// waitStarted refuses queries once the service stopped.
func (s *Service) waitStarted() error {
	if s.stopped.Load() {
		return windows.Unavailable("query service is stopped", nil)
	}
	return nil
}

func topToJSON(res windows.TopResult) topJSON {
	out := topJSON{From: windows.FormatTime(res.Range.From), To: windows.FormatTime(res.Range.To), Class: res.Class.String(), Items: make([]itemJSON, len(res.Items))}
	for i, it := range res.Items {
		out.Items[i] = itemJSON{IP: it.IP.String(), Count: it.Count, countersJSON: countersToJSON(it.Counters)}
	}
	return out
}

func (s *Service) handleSeries(w http.ResponseWriter, r *http.Request) {
	var err error
	defer func(start time.Time) { s.observe("series", "http", start, err) }(time.Now())
	ip, err := parseIP(r.PathValue("ip"))
	if err != nil {
		writeErr(w, err)
		return
	}
	step, err := s.httpStep(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	rg, err := s.httpRange(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	if err = s.waitStarted(); err != nil {
		writeErr(w, err)
		return
	}
	res, err := s.reader.Series(r.Context(), ip, rg, step)
	if err != nil {
		writeErr(w, err)
		return
	}
	out := seriesJSON{
		IP:           res.IP.String(),
		From:         windows.FormatTime(res.Range.From),
		To:           windows.FormatTime(res.Range.To),
		Step:         windows.FormatDuration(res.Step),
		Count:        res.Counters.Requests,
		countersJSON: countersToJSON(res.Counters),
		Series:       pointsToJSON(res.Series),
	}
	obs.WriteJSON(w, http.StatusOK, out)
}

func pointsToJSON(pts []windows.SeriesPoint) []pointJSON {
	out := make([]pointJSON, len(pts))
	for i, p := range pts {
		out[i] = pointJSON{Start: windows.FormatTime(p.Start), Count: p.Counters.Requests, countersJSON: countersToJSON(p.Counters)}
	}
	return out
}

func (s *Service) handleTotals(w http.ResponseWriter, r *http.Request) {
	var err error
	defer func(start time.Time) { s.observe("totals", "http", start, err) }(time.Now())
	rg, err := s.httpRange(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	if err = s.waitStarted(); err != nil {
		writeErr(w, err)
		return
	}
	res, err := s.reader.Totals(r.Context(), rg)
	if err != nil {
		writeErr(w, err)
		return
	}
	obs.WriteJSON(w, http.StatusOK, totalsToJSON(res))
}

func totalsToJSON(res windows.TotalsResult) totalsJSON {
	return totalsJSON{
		From:        windows.FormatTime(res.Range.From),
		To:          windows.FormatTime(res.Range.To),
		Requests:    res.Counters.Requests,
		DistinctIPs: res.DistinctIPs,
		DeadLetters: res.DeadLetters,
		Late:        res.Late,
		Status4xx:   res.Counters.Status4xx,
		Status5xx:   res.Counters.Status5xx,
		AuthFails:   res.Counters.AuthFailures,
		Bytes:       res.Counters.Bytes,
		LostBatches: res.LostBatches,
	}
}

// parseIP parses a client-given IP: zone dropped, IPv4-mapped unmapped.
func parseIP(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, windows.Invalidf("ip %q is not an IP address", s)
	}
	return a.WithZone("").Unmap(), nil
}

// parseCIDR reads a prefix such as 203.0.113.0/24 or 2001:db8::/32; host
// bits are dropped (203.0.113.7/24 means 203.0.113.0/24). An IPv4-mapped
// IPv6 prefix is the IPv4 prefix it maps, as IPs are counted unmapped.
func parseCIDR(v string) (netip.Prefix, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return netip.Prefix{}, windows.Invalidf("cidr is empty; give a prefix such as 203.0.113.0/24 or 2001:db8::/32")
	}
	p, err := netip.ParsePrefix(v)
	if err != nil {
		return netip.Prefix{}, windows.Invalidf("cidr %q is not a prefix such as 203.0.113.0/24 or 2001:db8::/32", v)
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// writeErr maps errors: bad input 400, NATS trouble or a stopped service
// 503, anything else 500.
func writeErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, windows.ErrInvalidArgument):
		obs.WriteError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, windows.ErrUnavailable):
		obs.WriteError(w, http.StatusServiceUnavailable, err.Error())
	default:
		obs.WriteError(w, http.StatusInternalServerError, err.Error())
	}
}
