package query

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// Server-Sent Events: the dashboard and `logtally top --watch` keep a
// text/event-stream open and get a new answer pushed whenever a window the
// answer reads changes, as the counts watch reports it (see WatchTop).
//
//	GET /api/v1/watch/top?n=10&last=5m|from=&to=[&cidr=]
//	    data: {"from","to","items":[{"ip","count"}]}      (as /api/v1/top)
//	GET /api/v1/watch/overview?last=1h|from=&to=&step=1m
//	    data: {"totals":{…as /api/v1/totals},"series":{…as /api/v1/series},
//	           "last_minute":{"start","count"}}
//
// Each event is one line of JSON (the default "message" type) with an id
// counting from 1; comments (": ping") are sent every SSEPing to keep proxies
// from closing an idle stream. Bad parameters get the usual 400 JSON error
// before the stream starts; when the service stops, the stream ends.

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

// send writes one event of JSON data.
func (st *sseStream) send(data []byte) error {
	if bytes.ContainsAny(data, "\r\n") {
		return errors.New("sse: event data must be one line")
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	_ = st.rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
	if err := st.start(); err != nil {
		return err
	}
	st.id++
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
	n, err := s.httpN(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	spec, err := ParseRangeSpec(q.Get("last"), q.Get("from"), q.Get("to"))
	if err != nil {
		writeErr(w, err)
		return
	}
	var (
		prefix    netip.Prefix
		hasPrefix = q.Has("cidr")
	)
	if hasPrefix {
		if prefix, err = parseCIDR(q.Get("cidr")); err != nil {
			writeErr(w, err)
			return
		}
	}
	if err = s.checkSpec(spec); err != nil {
		writeErr(w, err)
		return
	}
	st := newSSEStream(w)
	send := func(res TopResult) error {
		b, err := json.Marshal(topToJSON(res))
		if err != nil {
			return err
		}
		return st.send(b)
	}
	_ = st.serve(r.Context(), func(ctx context.Context) error {
		if !hasPrefix {
			return s.WatchTop(ctx, spec, n, send)
		}
		return s.watchRange(ctx, spec, func(ctx context.Context, rg Range) ([]byte, error) {
			res, err := s.TopPrefix(ctx, rg, n, prefix)
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

// Overview is the totals and the all-IP series of r, plus the requests of
// the latest complete minute before now (the ingest rate).
func (s *Service) overview(ctx context.Context, r Range, step time.Duration) ([]byte, error) {
	tot, err := s.Totals(ctx, r)
	if err != nil {
		return nil, err
	}
	ser, err := s.TotalSeries(ctx, r, step)
	if err != nil {
		return nil, err
	}
	end := floorTime(s.now(), s.finest)
	lm, err := s.TotalSeries(ctx, Range{From: end.Add(-s.finest), To: end}, s.finest)
	if err != nil {
		return nil, err
	}
	return json.Marshal(overviewJSON{
		Totals:     totalsToJSON(tot),
		Series:     totalSeriesToJSON(ser),
		LastMinute: pointJSON{Start: fmtTime(lm.Range.From), Count: lm.Count},
	})
}

func (s *Service) handleWatchOverview(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	step, err := s.httpStep(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	spec, err := ParseRangeSpec(q.Get("last"), q.Get("from"), q.Get("to"))
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
	if err = s.checkStep(rg, step); err != nil {
		writeErr(w, err)
		return
	}
	st := newSSEStream(w)
	_ = st.serve(r.Context(), func(ctx context.Context) error {
		return s.watchRange(ctx, spec, func(ctx context.Context, rg Range) ([]byte, error) {
			return s.overview(ctx, rg, step)
		}, st.send)
	})
}

// checkSpec resolves spec now and checks the range.
func (s *Service) checkSpec(spec RangeSpec) error {
	r, err := spec.Resolve(s.now(), s.finest, s.cfg.DefaultLast)
	if err != nil {
		return err
	}
	return s.checkRange(r)
}

// checkStep checks a series step against a range like TotalSeries does.
func (s *Service) checkStep(r Range, step time.Duration) error {
	if step <= 0 || step%s.finest != 0 {
		return invalidf("step %s must be a positive multiple of %s", formatDuration(step), formatDuration(s.finest))
	}
	span := r.Duration()
	points := int64(span / step)
	if span%step != 0 {
		points++
	}
	if points > int64(s.cfg.MaxPoints) {
		return invalidf("range %s with step %s gives %d points, more than the maximum of %d", formatDuration(span), formatDuration(step), points, s.cfg.MaxPoints)
	}
	return nil
}

// watchRange is WatchTop for any answer: it sends compute's answer for the
// range at once and again whenever a window of the range changes (at most
// every MinWatchInterval), or a relative range slides; identical answers
// are sent once. It returns nil when ctx ends, send's error, or
// ErrUnavailable when the service stops.
func (s *Service) watchRange(ctx context.Context, spec RangeSpec, compute func(context.Context, Range) ([]byte, error), send func([]byte) error) error {
	r, err := spec.Resolve(s.now(), s.finest, s.cfg.DefaultLast)
	if err != nil {
		return err
	}
	return watchLoop(ctx, s, spec, r, compute, bytes.Equal, send)
}
