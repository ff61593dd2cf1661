package query

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/logtally/logtally/internal/windows"
)

// Server-Sent Events: the dashboard and `logtally top --watch` keep a
// text/event-stream open and get a new answer pushed whenever a window the
// answer reads changes, as the counts watch reports it (see WatchTop).
//
//	GET /api/v1/watch/top?n=10&last=5m|from=&to=[&class=][&cidr=]
//	    data: {"from","to","class","items":[{"ip","count",…}]}  (as /api/v1/top)
//	GET /api/v1/watch/overview?last=1h|from=&to=&step=1m[&decisions=1]
//	    data: {"totals":{…as /api/v1/totals},"series":{…as /api/v1/series},
//	           "last_minute":{"start","count"}}
//	    with decisions=1 also, at once and whenever the decisions or the
//	    rules file's mode change (never per second: clients count down):
//	    event: decisions
//	    data: {"mode","rules_file","now","total","items":[…as /api/v1/decisions]}
//
// Each event is one line of JSON (the default "message" type unless named)
// with an id counting from 1; comments (": ping") are sent every SSEPing to
// keep proxies from closing an idle stream. Bad parameters get the usual 400
// JSON error before the stream starts; when the service stops, the stream
// ends. The dashboard's decisions ride on its overview stream rather than a
// stream of their own: browsers allow six HTTP/1.1 connections per origin.

// SSEPing is the interval of keep-alive comments on event streams.
var SSEPing = 15 * time.Second

// sseWriteTimeout bounds one write to a client that stopped reading.
const sseWriteTimeout = 30 * time.Second

// sseStream writes events to one client.
type sseStream struct {
	mu      sync.Mutex
	w       http.ResponseWriter
	rc      *http.ResponseController
	started bool
	id      uint64
}

func newSSEStream(w http.ResponseWriter) *sseStream {
	return &sseStream{w: w, rc: http.NewResponseController(w)}
}

// start writes the headers; the caller holds mu.
func (st *sseStream) start() error {
	if st.started {
		return nil
	}
	st.started = true
	h := st.w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache, no-transform")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	st.w.WriteHeader(http.StatusOK)
	_, err := fmt.Fprint(st.w, "retry: 2000\n\n")
	return err
}

// send writes one event of JSON data (the default "message" type).
func (st *sseStream) send(data []byte) error { return st.sendEvent("", data) }

// sendEvent writes one event of JSON data with an event type ("" is the
// default "message"). Several goroutines may send on one stream.
func (st *sseStream) sendEvent(event string, data []byte) error {
	if bytes.ContainsAny(data, "\r\n") || strings.ContainsAny(event, "\r\n") {
		return errors.New("sse: event type and data must be one line")
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	_ = st.rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
	if err := st.start(); err != nil {
		return err
	}
	st.id++
	if event != "" {
		if _, err := fmt.Fprintf(st.w, "event: %s\n", event); err != nil {
			return err
		}
	}
	if _, err := fmt.Fprintf(st.w, "id: %d\ndata: %s\n\n", st.id, data); err != nil {
		return err
	}
	return st.rc.Flush()
}

// ping writes a comment once the stream has started.
func (st *sseStream) ping() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.started {
		return nil
	}
	_ = st.rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
	if _, err := fmt.Fprint(st.w, ": ping\n\n"); err != nil {
		return err
	}
	return st.rc.Flush()
}

// serve runs watch until it ends, pinging meanwhile. An error before the
// first event becomes a JSON error answer; after it the stream just ends.
func (st *sseStream) serve(ctx context.Context, watch func(ctx context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(SSEPing)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if st.ping() != nil {
					cancel()
					return
				}
			}
		}
	}()
	err := watch(ctx)
	st.mu.Lock()
	started := st.started
	st.mu.Unlock()
	if err != nil && !started {
		writeErr(st.w, err)
	}
	return err
}

func (s *Service) handleWatchTop(w http.ResponseWriter, r *http.Request) {
	// Streams are not observed as queries (their duration is the client's),
	// like the gRPC WatchTop.
	q := r.URL.Query()
	tq, geo, err := s.topQuery(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	spec, err := windows.ParseRangeSpec(q.Get("last"), q.Get("from"), q.Get("to"))
	if err != nil {
		writeErr(w, err)
		return
	}
	if err = s.checkSpec(spec); err != nil {
		writeErr(w, err)
		return
	}
	st := newSSEStream(w)
	_ = st.serve(r.Context(), func(ctx context.Context) error {
		return s.watchRange(ctx, spec, func(ctx context.Context, rg windows.Range) ([]byte, error) {
			tq := tq
			tq.Keep = geo.keep(s.geo.Load())
			res, err := s.reader.Top(ctx, rg, tq)
			if err != nil {
				return nil, err
			}
			return json.Marshal(topToJSON(res))
		}, st.send)
	})
}

// overviewJSON is one event of /api/v1/watch/overview.
type overviewJSON struct {
	Totals     totalsJSON      `json:"totals"`
	Series     totalSeriesJSON `json:"series"`
	LastMinute pointJSON       `json:"last_minute"`
}

// overview is the totals and the all-IP series of r, plus the requests of
// the latest complete minute before now (the ingest rate).
func (s *Service) overview(ctx context.Context, r windows.Range, step time.Duration) ([]byte, error) {
	tot, err := s.reader.Totals(ctx, r)
	if err != nil {
		return nil, err
	}
	ser, err := s.reader.TotalSeries(ctx, r, step)
	if err != nil {
		return nil, err
	}
	end := windows.FloorTime(s.now(), s.finest)
	lm, err := s.reader.TotalSeries(ctx, windows.Range{From: end.Add(-s.finest), To: end}, s.finest)
	if err != nil {
		return nil, err
	}
	return json.Marshal(overviewJSON{
		Totals:     totalsToJSON(tot),
		Series:     totalSeriesToJSON(ser),
		LastMinute: pointJSON{Start: windows.FormatTime(lm.Range.From), Count: lm.Counters.Requests, countersJSON: countersToJSON(lm.Counters)},
	})
}

func (s *Service) handleWatchOverview(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	step, err := s.httpStep(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	spec, err := windows.ParseRangeSpec(q.Get("last"), q.Get("from"), q.Get("to"))
	if err != nil {
		writeErr(w, err)
		return
	}
	if err = s.checkSpec(spec); err != nil {
		writeErr(w, err)
		return
	}
	// Check the step against the range once, before the stream starts.
	rg, _ := spec.Resolve(s.now(), s.finest, s.cfg.DefaultLast)
	if err = s.reader.CheckStep(rg, step); err != nil {
		writeErr(w, err)
		return
	}
	withDecisions := false
	if v := q.Get("decisions"); v != "" {
		if withDecisions, err = strconv.ParseBool(v); err != nil {
			writeErr(w, windows.Invalidf("decisions %q is not a boolean", v))
			return
		}
	}
	st := newSSEStream(w)
	_ = st.serve(r.Context(), func(ctx context.Context) error {
		overview := func(ctx context.Context) error {
			return s.watchRange(ctx, spec, func(ctx context.Context, rg windows.Range) ([]byte, error) {
				return s.overview(ctx, rg, step)
			}, st.send)
		}
		if !withDecisions {
			return overview(ctx)
		}
		return both(ctx, overview, func(ctx context.Context) error {
			return s.watchDecisions(ctx, func(data []byte) error { return st.sendEvent("decisions", data) })
		})
	})
}

// both runs a and b until both returned; the first to return ends the
// other (through ctx). The error is a's, else b's.
func both(ctx context.Context, a, b func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var berr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		berr = b(ctx)
		cancel()
	}()
	err := a(ctx)
	cancel()
	<-done
	if err != nil {
		return err
	}
	return berr
}

// checkSpec resolves spec now and checks the range.
func (s *Service) checkSpec(spec windows.RangeSpec) error {
	r, err := spec.Resolve(s.now(), s.finest, s.cfg.DefaultLast)
	if err != nil {
		return err
	}
	return s.reader.CheckRange(r)
}

// watchRange sends compute's answer for the range at once and again
// whenever a window of the range changes (at most every
// windows.MinWatchInterval), or a relative range slides; identical answers
// are sent once. It returns nil when ctx ends, send's error, or
// ErrUnavailable when the service stops.
func (s *Service) watchRange(ctx context.Context, spec windows.RangeSpec, compute func(context.Context, windows.Range) ([]byte, error), send func([]byte) error) error {
	if err := s.waitStarted(); err != nil {
		return err
	}
	return windows.Watch(ctx, s.reader, s.watchSpec(spec), compute, bytes.Equal, send)
}
