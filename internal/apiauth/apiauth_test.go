package apiauth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func TestHTTPTokens(t *testing.T) {
	c := &Config{IngestToken: "in", QueryToken: "q"}
	srv := httptest.NewServer(c.HTTP(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })))
	defer srv.Close()
	for _, tc := range []struct {
		method, path, token string
		want                int
	}{
		{"GET", "/healthz", "", http.StatusTeapot},
		{"GET", "/readyz", "", http.StatusTeapot},
		{"GET", "/metrics", "", http.StatusTeapot},
		{"GET", "/api/v1/top", "", http.StatusUnauthorized},
		{"GET", "/api/v1/top", "in", http.StatusUnauthorized},
		{"GET", "/api/v1/top", "q", http.StatusTeapot},
		{"GET", "/", "", http.StatusUnauthorized},
		{"POST", "/api/v1/ingest", "q", http.StatusUnauthorized},
		{"POST", "/api/v1/ingest", "in", http.StatusTeapot},
		// Bouncers authenticate with X-Api-Key, in the handler.
		{"GET", "/v1/decisions/stream", "", http.StatusTeapot},
		{"GET", "/v1/decisions", "", http.StatusTeapot},
		{"GET", "/api/v1/decisions", "", http.StatusUnauthorized},
		{"DELETE", "/v1/decisions/7", "", http.StatusUnauthorized},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s with %q: %d, want %d", tc.method, tc.path, tc.token, resp.StatusCode, tc.want)
		}
	}
	c.ProtectMetrics = true
	req, _ := http.NewRequest("GET", srv.URL+"/metrics", nil)
	resp, _ := http.DefaultClient.Do(req)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("protected metrics: %d", resp.StatusCode)
	}
}

func TestGRPCTokens(t *testing.T) {
	c := &Config{QueryToken: "q"}
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer q"))
	if err := c.checkGRPC(ctx, "/logtally.v1.QueryService/Top"); err != nil {
		t.Fatal(err)
	}
	bad := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer x"))
	if status.Code(c.checkGRPC(bad, "/logtally.v1.QueryService/Top")) != codes.Unauthenticated {
		t.Fatal("wrong token accepted")
	}
	if err := c.checkGRPC(context.Background(), "/grpc.health.v1.Health/Check"); err != nil {
		t.Fatal("health must stay open")
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []Config{{TLSCertFile: "c"}, {ClientCAFile: "ca"}, {ProtectMetrics: true}} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}
