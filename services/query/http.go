package query

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/logtally/logtally/internal/obs"
)

// HTTP answers. Times are RFC 3339 UTC, IPs canonical.
type (
	topJSON struct {
		From  string     `json:"from"`
		To    string     `json:"to"`
		Items []itemJSON `json:"items"`
	}
	itemJSON struct {
		IP    string `json:"ip"`
		Count uint64 `json:"count"`
	}
	seriesJSON struct {
		IP     string      `json:"ip"`
		From   string      `json:"from"`
		To     string      `json:"to"`
		Step   string      `json:"step"`
		Count  uint64      `json:"count"`
		Series []pointJSON `json:"series"`
	}
	pointJSON struct {
		Start string `json:"start"`
		Count uint64 `json:"count"`
	}
	totalsJSON struct {
		From        string `json:"from"`
		To          string `json:"to"`
		Requests    uint64 `json:"requests"`
		DistinctIPs uint64 `json:"distinct_ips"`
		DeadLetters uint64 `json:"dead_letters"`
		Late        uint64 `json:"late"`
	}
)

// registerHTTP adds the JSON API:
//
//	GET /api/v1/top?n=10&last=5m | from=&to=
//	GET /api/v1/ips/{ip}?last=…|from=&to=&step=1m
//	GET /api/v1/totals?last=…|from=&to=
//
// Without last/from/to the range is the last query.default-last (15m).
func (s *Service) registerHTTP(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/top", s.handleTopOrCIDR) // handleTop, or top within ?cidr=
	mux.HandleFunc("GET /api/v1/ips/{ip}", s.handleSeries)
	mux.HandleFunc("GET /api/v1/totals", s.handleTotals)
	s.registerDashboard(mux) // dashboard.go: /, /ui/, series, dead letters, SSE watches
}

// httpRange reads last/from/to.
func (s *Service) httpRange(r *http.Request) (Range, error) {
	q := r.URL.Query()
	sp, err := ParseRangeSpec(q.Get("last"), q.Get("from"), q.Get("to"))
	if err != nil {
		return Range{}, err
	}
	return sp.Resolve(s.now(), s.finest, s.cfg.DefaultLast)
}

func (s *Service) handleTop(w http.ResponseWriter, r *http.Request) {
	var err error
	defer func(start time.Time) { s.observe("top", "http", start, err) }(time.Now())
	n := 10
	if v := r.URL.Query().Get("n"); v != "" {
		n, err = strconv.Atoi(v)
		if err != nil {
			err = invalidf("n %q is not a whole number between 1 and %d", v, s.cfg.MaxN)
			writeErr(w, err)
			return
		}
	}
	rg, err := s.httpRange(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	res, err := s.Top(r.Context(), rg, n)
	if err != nil {
		writeErr(w, err)
		return
	}
	out := topJSON{From: fmtTime(res.Range.From), To: fmtTime(res.Range.To), Items: make([]itemJSON, len(res.Items))}
	for i, it := range res.Items {
		out.Items[i] = itemJSON{IP: it.IP.String(), Count: it.Count}
	}
	obs.WriteJSON(w, http.StatusOK, out)
}

func (s *Service) handleSeries(w http.ResponseWriter, r *http.Request) {
	var err error
	defer func(start time.Time) { s.observe("series", "http", start, err) }(time.Now())
	ip, err := parseIP(r.PathValue("ip"))
	if err != nil {
		writeErr(w, err)
		return
	}
	step := s.finest
	if v := r.URL.Query().Get("step"); v != "" {
		step, err = parseDuration(v)
		if err != nil {
			err = invalidf("step %q is not a duration such as 1m, 5m or 1h", v)
			writeErr(w, err)
			return
		}
	}
	rg, err := s.httpRange(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	res, err := s.Series(r.Context(), ip, rg, step)
	if err != nil {
		writeErr(w, err)
		return
	}
	out := seriesJSON{
		IP:     res.IP.String(),
		From:   fmtTime(res.Range.From),
		To:     fmtTime(res.Range.To),
		Step:   formatDuration(res.Step),
		Count:  res.Count,
		Series: make([]pointJSON, len(res.Series)),
	}
	for i, p := range res.Series {
		out.Series[i] = pointJSON{Start: fmtTime(p.Start), Count: p.Count}
	}
	obs.WriteJSON(w, http.StatusOK, out)
}

func (s *Service) handleTotals(w http.ResponseWriter, r *http.Request) {
	var err error
	defer func(start time.Time) { s.observe("totals", "http", start, err) }(time.Now())
	rg, err := s.httpRange(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	res, err := s.Totals(r.Context(), rg)
	if err != nil {
		writeErr(w, err)
		return
	}
	obs.WriteJSON(w, http.StatusOK, totalsJSON{
		From:        fmtTime(res.Range.From),
		To:          fmtTime(res.Range.To),
		Requests:    res.Requests,
		DistinctIPs: res.DistinctIPs,
		DeadLetters: res.DeadLetters,
		Late:        res.Late,
	})
}

// writeErr maps engine errors: bad input 400, NATS trouble or a stopped
// service 503, anything else 500.
func writeErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrInvalidArgument):
		obs.WriteError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, ErrUnavailable):
		obs.WriteError(w, http.StatusServiceUnavailable, err.Error())
	default:
		obs.WriteError(w, http.StatusInternalServerError, err.Error())
	}
}
