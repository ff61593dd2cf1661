package query

import (
	"context"
	"embed"
	"io/fs"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/internal/obs"
)

// The dashboard: a single page (ui/index.html) with a hand-written SVG
// renderer (ui/app.js), embedded so the binary serves it offline. It reads
// the JSON API and is kept current by the Server-Sent Events endpoints of
// sse.go.

//go:embed ui
var uiFiles embed.FS

// uiFS is the ui folder as the root of the asset file system.
var uiFS = func() fs.FS {
	sub, err := fs.Sub(uiFiles, "ui")
	if err != nil {
		panic(err)
	}
	return sub
}()

// uiCSP keeps the page to its own scripts, styles and API: data shown on it
// (IPs, dead-letter lines) is only ever set as text.
const uiCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Total-series answer of GET /api/v1/series.
type totalSeriesJSON struct {
	From   string      `json:"from"`
	To     string      `json:"to"`
	Step   string      `json:"step"`
	Count  uint64      `json:"count"`
	Series []pointJSON `json:"series"`
}

// registerDashboard adds the dashboard page, its assets and the calls only
// it needs:
//
//	GET /                      the dashboard
//	GET /ui/…                  its assets
//	GET /api/v1/series?last=…|from=&to=&step=1m   requests of all IPs per step
//	GET /api/v1/dead-letters?n=50                 latest rejected lines
//	GET /api/v1/watch/top?…                       SSE, one top answer per change
//	GET /api/v1/watch/overview?…&step=            SSE, totals and series per change
func (s *Service) registerDashboard(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", s.handleIndex)
	assets := http.StripPrefix("/ui/", http.FileServerFS(uiFS))
	mux.Handle("GET /ui/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", uiCSP)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-cache")
		assets.ServeHTTP(w, r)
	}))
	mux.HandleFunc("GET /api/v1/series", s.handleTotalSeries)
	mux.HandleFunc("GET /api/v1/dead-letters", s.handleDeadLetters)
	mux.HandleFunc("GET /api/v1/watch/top", s.handleWatchTop)
	mux.HandleFunc("GET /api/v1/watch/overview", s.handleWatchOverview)
}

func (s *Service) handleIndex(w http.ResponseWriter, r *http.Request) {
	b, err := fs.ReadFile(uiFS, "index.html")
	if err != nil {
		obs.WriteError(w, http.StatusInternalServerError, "dashboard not built in")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", uiCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// handleTopOrCIDR is GET /api/v1/top: with cidr=<prefix> the top n of the
// IPs inside the prefix (same answer shape), otherwise handleTop.
func (s *Service) handleTopOrCIDR(w http.ResponseWriter, r *http.Request) {
	if !r.URL.Query().Has("cidr") {
		s.handleTop(w, r)
		return
	}
	var err error
	defer func(start time.Time) { s.observe("top_cidr", "http", start, err) }(time.Now())
	prefix, err := parseCIDR(r.URL.Query().Get("cidr"))
	if err != nil {
		writeErr(w, err)
		return
	}
	n, err := s.httpN(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	rg, err := s.httpRange(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	res, err := s.TopPrefix(r.Context(), rg, n, prefix)
	if err != nil {
		writeErr(w, err)
		return
	}
	obs.WriteJSON(w, http.StatusOK, topToJSON(res))
}

// httpN reads n (default 10); the range check is the engine's.
func (s *Service) httpN(r *http.Request) (int, error) {
	v := r.URL.Query().Get("n")
	if v == "" {
		return 10, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, invalidf("n %q is not a whole number between 1 and %d", v, s.cfg.MaxN)
	}
	if n < 1 || n > s.cfg.MaxN {
		return 0, invalidf("n must be between 1 and %d, got %d", s.cfg.MaxN, n)
	}
	return n, nil
}

// httpStep reads step (default the finest window).
func (s *Service) httpStep(r *http.Request) (time.Duration, error) {
	v := r.URL.Query().Get("step")
	if v == "" {
		return s.finest, nil
	}
	step, err := parseDuration(v)
	if err != nil {
		return 0, invalidf("step %q is not a duration such as 1m, 5m or 1h", v)
	}
	return step, nil
}

func topToJSON(res TopResult) topJSON {
	out := topJSON{From: fmtTime(res.Range.From), To: fmtTime(res.Range.To), Items: make([]itemJSON, len(res.Items))}
	for i, it := range res.Items {
		out.Items[i] = itemJSON{IP: it.IP.String(), Count: it.Count}
	}
	return out
}

func totalSeriesToJSON(res TotalSeriesResult) totalSeriesJSON {
	out := totalSeriesJSON{
		From:   fmtTime(res.Range.From),
		To:     fmtTime(res.Range.To),
		Step:   formatDuration(res.Step),
		Count:  res.Count,
		Series: make([]pointJSON, len(res.Series)),
	}
	for i, p := range res.Series {
		out.Series[i] = pointJSON{Start: fmtTime(p.Start), Count: p.Count}
	}
	return out
}

func totalsToJSON(res TotalsResult) totalsJSON {
	return totalsJSON{
		From:        fmtTime(res.Range.From),
		To:          fmtTime(res.Range.To),
		Requests:    res.Requests,
		DistinctIPs: res.DistinctIPs,
		DeadLetters: res.DeadLetters,
		Late:        res.Late,
	}
}

func (s *Service) handleTotalSeries(w http.ResponseWriter, r *http.Request) {
	var err error
	defer func(start time.Time) { s.observe("total_series", "http", start, err) }(time.Now())
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
	res, err := s.TotalSeries(r.Context(), rg, step)
	if err != nil {
		writeErr(w, err)
		return
	}
	obs.WriteJSON(w, http.StatusOK, totalSeriesToJSON(res))
}

// parseCIDR reads a prefix such as 203.0.113.0/24 or 2001:db8::/32; host
// bits are dropped (203.0.113.7/24 means 203.0.113.0/24). An IPv4-mapped
// IPv6 prefix is the IPv4 prefix it maps, as IPs are counted unmapped.
func parseCIDR(v string) (netip.Prefix, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return netip.Prefix{}, invalidf("cidr is empty; give a prefix such as 203.0.113.0/24 or 2001:db8::/32")
	}
	p, err := netip.ParsePrefix(v)
	if err != nil {
		return netip.Prefix{}, invalidf("cidr %q is not a prefix such as 203.0.113.0/24 or 2001:db8::/32", v)
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// packedPrefix is a prefix in the packed 16-byte form of counts.Pack. Like
// netip.Prefix.Contains, an IPv6 prefix (even ::/0) holds no IPv4 address.
type packedPrefix struct {
	addr [counts.AddrLen]byte
	bits int
	v4   bool
}

func newPackedPrefix(p netip.Prefix) packedPrefix {
	pp := packedPrefix{addr: counts.Pack(p.Addr()), bits: p.Bits(), v4: p.Addr().Is4()}
	if pp.v4 {
		pp.bits += 96
	}
	return pp
}

func (pp *packedPrefix) contains(a *[counts.AddrLen]byte) bool {
	if isV4(a) != pp.v4 {
		return false
	}
	full := pp.bits / 8
	for i := range full {
		if a[i] != pp.addr[i] {
			return false
		}
	}
	if rem := pp.bits % 8; rem != 0 {
		mask := byte(0xff << (8 - rem))
		return a[full]&mask == pp.addr[full]&mask
	}
	return true
}

// TopPrefix returns the n IPs inside prefix with the most requests in r,
// ranked like Top. The filter applies before the top n is taken, so the
// answer is exact.
func (s *Service) TopPrefix(ctx context.Context, r Range, n int, prefix netip.Prefix) (TopResult, error) {
	if !prefix.IsValid() {
		return TopResult{}, invalidf("cidr is not a valid prefix")
	}
	pp := newPackedPrefix(prefix.Masked())
	return s.topOf(ctx, r, n, pp.contains)
}

// TotalSeriesResult is the answer of TotalSeries: the requests of every IP
// per step, like SeriesResult without the IP.
type TotalSeriesResult struct {
	Range  Range
	Step   time.Duration
	Count  uint64
	Series []SeriesPoint
}

// TotalSeries returns the requests of all IPs in r, in total and per step.
// Every point is the exact sum, over every partition, of the coarsest
// windows that tile [start, start+step), as in Series.
func (s *Service) TotalSeries(ctx context.Context, r Range, step time.Duration) (TotalSeriesResult, error) {
	if err := s.checkRange(r); err != nil {
		return TotalSeriesResult{}, err
	}
	if step <= 0 || step%s.finest != 0 {
		return TotalSeriesResult{}, invalidf("step %s must be a positive multiple of %s", formatDuration(step), formatDuration(s.finest))
	}
	span := r.Duration()
	points := int64(span / step)
	if span%step != 0 {
		points++
	}
	if points > int64(s.cfg.MaxPoints) {
		return TotalSeriesResult{}, invalidf("range %s with step %s gives %d points, more than the maximum of %d", formatDuration(span), formatDuration(step), points, s.cfg.MaxPoints)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if err := s.waitReady(ctx); err != nil {
		return TotalSeriesResult{}, err
	}
	from, to, st := r.From.Unix(), r.To.Unix(), int64(step/time.Second)
	var keys []cacheKey
	var owner []int // point of each key
	res := TotalSeriesResult{Range: r, Step: step, Series: make([]SeriesPoint, points)}
	for i := range res.Series {
		pf := from + int64(i)*st
		pt := min(pf+st, to)
		res.Series[i].Start = time.Unix(pf, 0).UTC()
		for _, seg := range decompose(pf, pt, s.sizes) {
			n := len(keys)
			keys = s.indexes[seg.res].collect(seg, -1, keys)
			for range len(keys) - n {
				owner = append(owner, i)
			}
		}
	}
	ws, err := s.loadAll(ctx, keys)
	if err != nil {
		return TotalSeriesResult{}, err
	}
	for k, w := range ws {
		res.Series[owner[k]].Count += w.total
		res.Count += w.total
	}
	return res, nil
}
