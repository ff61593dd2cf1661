package query

import (
	"embed"
	"io/fs"
	"net/http"
	"time"

	"github.com/logtally/logtally/internal/obs"
	"github.com/logtally/logtally/internal/windows"
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
	From  string `json:"from"`
	To    string `json:"to"`
	Step  string `json:"step"`
	Count uint64 `json:"count"`
	countersJSON
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
	mux.HandleFunc("GET /api/v1/watch/fields", s.handleWatchFields)
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

func totalSeriesToJSON(res windows.TotalSeriesResult) totalSeriesJSON {
	return totalSeriesJSON{
		From:         windows.FormatTime(res.Range.From),
		To:           windows.FormatTime(res.Range.To),
		Step:         windows.FormatDuration(res.Step),
		Count:        res.Counters.Requests,
		countersJSON: countersToJSON(res.Counters),
		Series:       pointsToJSON(res.Series),
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
	if err = s.waitStarted(); err != nil {
		writeErr(w, err)
		return
	}
	res, err := s.reader.TotalSeries(r.Context(), rg, step)
	if err != nil {
		writeErr(w, err)
		return
	}
	obs.WriteJSON(w, http.StatusOK, totalSeriesToJSON(res))
}
