package query

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/logtally/logtally/internal/dims"
	"github.com/logtally/logtally/internal/obs"
	"github.com/logtally/logtally/internal/windows"
)

// valuesJSON is the answer of /api/v1/top?by=<field> for the fields beyond
// the IP: the top values, then the exact remainder of the ranked class.
type valuesJSON struct {
	From  string          `json:"from"`
	To    string          `json:"to"`
	By    string          `json:"by"`
	Class string          `json:"class"`
	Items []valueItemJSON `json:"items"`
	// Other is the ranked class over every value not listed, Total the
	// field's counters over every value.
	Other uint64       `json:"other"`
	Total countersJSON `json:"total"`
}

type valueItemJSON struct {
	Value string `json:"value"`
	// Known is false for a long value whose text is not in the names
	// bucket (value is then "#" and its key).
	Known bool   `json:"known"`
	Count uint64 `json:"count"`
	countersJSON
}

// handleTopValues serves by=status|method|path|vhost|ua|os|program|event.
// Those windows count values, not clients: filters that select clients
// (cidr=, asn=, country=) do not apply to them.
func (s *Service) handleTopValues(w http.ResponseWriter, r *http.Request, by string) {
	var err error
	defer func(start time.Time) { s.observe(valuesOp(by), "http", start, err) }(time.Now())
	d, err := dims.Parse(by)
	if err != nil {
		err = windows.Invalidf("by=%q is not known: want ip, prefix, asn, country or one of %v", by, dims.Names())
		writeErr(w, err)
		return
	}
	q := r.URL.Query()
	for _, f := range []string{"cidr", "asn", "country"} {
		if q.Has(f) {
			err = windows.Invalidf("%s= selects clients and does not combine with by=%s: the %s windows count values, not clients", f, by, by)
			writeErr(w, err)
			return
		}
	}
	n, err := s.httpN(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	if err = refusePath(q, by); err != nil {
		writeErr(w, err)
		return
	}
	class, err := httpClass(q, by)
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
	res, err := s.values.Top(r.Context(), rg, d, class, n)
	if err != nil {
		writeErr(w, err)
		return
	}
	obs.WriteJSON(w, http.StatusOK, valuesToJSON(res))
}

// fieldsJSON is one event of /api/v1/watch/fields: the top values of
// every field, ranked by one class.
type fieldsJSON struct {
	From   string                `json:"from"`
	To     string                `json:"to"`
	Class  string                `json:"class"`
	Fields map[string]valuesJSON `json:"fields"`
}

func valuesToJSON(res windows.ValuesResult) valuesJSON {
	out := valuesJSON{From: windows.FormatTime(res.Range.From), To: windows.FormatTime(res.Range.To), By: res.Dim.String(), Class: res.Class.String(),
		Items: make([]valueItemJSON, len(res.Items)), Other: res.Other, Total: countersToJSON(res.Total)}
	for i, it := range res.Items {
		out.Items[i] = valueItemJSON{Value: it.Value, Known: it.Known, Count: it.Count, countersJSON: countersToJSON(it.Counters)}
	}
	return out
}

// handleWatchFields is GET /api/v1/watch/fields: Server-Sent Events with
// the top n values of every field (the dashboard's field panels), pushed
// when a dims window of the range changes.
func (s *Service) handleWatchFields(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	n, err := s.httpN(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	class, err := parseClass(q.Get("class"))
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
	if err = s.waitStarted(); err != nil {
		writeErr(w, err)
		return
	}
	st := newSSEStream(w)
	_ = st.serve(r.Context(), func(ctx context.Context) error {
		return windows.Watch(ctx, s.values.Reader(), s.watchSpec(spec), func(ctx context.Context, rg windows.Range) ([]byte, error) {
			out := fieldsJSON{From: windows.FormatTime(rg.From), To: windows.FormatTime(rg.To), Class: class.String(), Fields: map[string]valuesJSON{}}
			for _, d := range dims.All {
				res, err := s.values.Top(ctx, rg, d, class, n)
				if err != nil {
					return nil, err
				}
				out.Fields[d.String()] = valuesToJSON(res)
			}
			return json.Marshal(out)
		}, bytes.Equal, st.send)
	})
}
