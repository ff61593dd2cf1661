package app

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestStartingAnswers503: until every component has started, a route that
// is not registered yet answers 503 with Retry-After, not 404; afterwards
// an unknown path is a plain 404.
func TestStartingAnswers503(t *testing.T) {
	a := &App{mux: http.NewServeMux()}
	a.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	h := a.startingHandler()
	do := func(method, path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
		return rec
	}
	if rec := do("POST", "/api/v1/ingest"); rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("while starting: %d %q, want 503 with Retry-After", rec.Code, rec.Body.String())
	}
	if rec := do("GET", "/healthz"); rec.Code != http.StatusOK {
		t.Fatalf("healthz while starting: %d", rec.Code)
	}
	a.mux.HandleFunc("POST /api/v1/ingest", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) })
	if rec := do("POST", "/api/v1/ingest"); rec.Code != http.StatusAccepted {
		t.Fatalf("registered route while starting: %d", rec.Code)
	}
	a.started.Store(true)
	if rec := do("GET", "/nope"); rec.Code != http.StatusNotFound {
		t.Fatalf("unknown path after start: %d, want 404", rec.Code)
	}
}
