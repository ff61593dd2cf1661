package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
	"github.com/logtally/logtally/internal/natstest"
)

// TestAPITokensAndTLS runs the all-in-one app with HTTPS, separate ingest
// and query tokens, and checks HTTP and gRPC refuse what they must.
func TestAPITokensAndTLS(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := natstest.WriteCerts(t, dir)
	a := startApp(t, "secure", newConfig(t, "-data.dir="+t.TempDir(),
		"-auth.ingest-token=in-tok", "-auth.query-token=q-tok",
		"-api.tls.cert-file="+cert, "-api.tls.key-file="+key))
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(ca)
	pool.AppendCertsFromPEM(pem)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	base := "https://" + a.HTTPAddr().String()
	do := func(method, path, token, body string) int {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := 0; do("GET", "/readyz", "", "") != 200; i++ {
		if i > 100 {
			t.Fatal("never ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
	line := "203.0.113.7 - - [24/Nov/2026:10:00:00 +0000] \"GET / HTTP/1.1\" 200 1 \"-\" \"-\"\n"
	for _, c := range []struct {
		method, path, token string
		want                int
	}{
		{"GET", "/healthz", "", 200},
		{"GET", "/readyz", "", 200},
		{"GET", "/api/v1/top?last=5m", "", 401},
		{"GET", "/api/v1/top?last=5m", "in-tok", 401},
		{"GET", "/api/v1/top?last=5m", "q-tok", 200},
		{"POST", "/api/v1/ingest", "q-tok", 401},
		{"POST", "/api/v1/ingest", "in-tok", 200},
		{"POST", "/api/v1/decisions", "", 401},
		{"POST", "/api/v1/decisions", "in-tok", 401},
	} {
		if got := do(c.method, c.path, c.token, line); got != c.want {
			t.Errorf("%s %s with %q: %d, want %d", c.method, c.path, c.token, got, c.want)
		}
	}
	// Plain HTTP is not served.
	if resp, err := http.Get("http://" + a.HTTPAddr().String() + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP answered on a TLS listener")
		}
	}

	conn, err := grpc.NewClient(a.Query.GRPCAddr().String(), grpc.WithTransportCredentials(credentials.NewClientTLSFromCert(pool, "")))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	qc := logtallyv1.NewQueryServiceClient(conn)
	req := &logtallyv1.TopRequest{Range: &logtallyv1.TimeRange{Last: durationpb.New(5 * time.Minute)}, N: 5}
	if _, err := qc.Top(context.Background(), req); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("gRPC without token: %v", err)
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer q-tok")
	if _, err := qc.Top(ctx, req); err != nil {
		t.Fatalf("gRPC with token: %v", err)
	}

	// DecisionService: the same token for reads, writes and the stream.
	dc := logtallyv1.NewDecisionServiceClient(conn)
	ban := &logtallyv1.CreateDecisionRequest{Key: "203.0.113.9", Duration: durationpb.New(time.Minute)}
	if _, err := dc.CreateDecision(context.Background(), ban); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("CreateDecision without token: %v", err)
	}
	inCtx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer in-tok")
	if _, err := dc.CreateDecision(inCtx, ban); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("CreateDecision with the ingest token: %v", err)
	}
	if st, err := dc.WatchDecisions(context.Background(), &logtallyv1.WatchDecisionsRequest{}); err == nil {
		if _, err := st.Recv(); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("WatchDecisions without token: %v", err)
		}
	}
	made, err := dc.CreateDecision(ctx, ban)
	if err != nil {
		t.Fatalf("CreateDecision with token: %v", err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	st, err := dc.WatchDecisions(wctx, &logtallyv1.WatchDecisionsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for seen := false; !seen; { // in the snapshot, or new just after it
		m, err := st.Recv()
		if err != nil {
			t.Fatalf("WatchDecisions with token: %v", err)
		}
		seen = m.GetDecision().GetId() == made.Decision.Id
	}
	if _, err := dc.DeleteDecision(ctx, &logtallyv1.DeleteDecisionRequest{Id: made.Decision.Id}); err != nil {
		t.Fatalf("DeleteDecision with token: %v", err)
	}
}
