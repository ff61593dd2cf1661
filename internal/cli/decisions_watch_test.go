package cli

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
)

// fakeDecisions answers WatchDecisions with scripted streams, one per call.
type fakeDecisions struct {
	logtallyv1.UnimplementedDecisionServiceServer
	mu      sync.Mutex
	reqs    []*logtallyv1.WatchDecisionsRequest
	streams []func(send func(*logtallyv1.WatchDecisionsResponse)) error
	done    chan struct{} // closed when the scripts ran out
}

func (f *fakeDecisions) WatchDecisions(req *logtallyv1.WatchDecisionsRequest, stream grpc.ServerStreamingServer[logtallyv1.WatchDecisionsResponse]) error {
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	n := len(f.reqs)
	f.mu.Unlock()
	if n > len(f.streams) {
		close(f.done)
		<-stream.Context().Done()
		return nil
	}
	return f.streams[n-1](func(m *logtallyv1.WatchDecisionsResponse) { _ = stream.Send(m) })
}

func startFakeDecisions(t *testing.T, f *fakeDecisions) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	logtallyv1.RegisterDecisionServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

var watchT0 = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

func ev(event logtallyv1.DecisionEvent, id, rev uint64, key string) *logtallyv1.WatchDecisionsResponse {
	m := &logtallyv1.WatchDecisionsResponse{Event: event, Revision: rev, At: timestamppb.New(watchT0.Add(time.Duration(rev) * time.Second))}
	if key != "" {
		m.Decision = &logtallyv1.Decision{Id: id, Key: key, Rule: "manual", Reason: "by hand", Until: timestamppb.New(watchT0.Add(time.Hour))}
	}
	return m
}

// decisions watch prints a line per event; a stream the server ends is
// resumed after the last live revision, and started over with a snapshot
// when the server cannot resume; filters reach the server.
func TestDecisionsWatch(t *testing.T) {
	defer func(old struct{ min, max time.Duration }) { watchReconnect = old }(watchReconnect)
	watchReconnect.min, watchReconnect.max = 10*time.Millisecond, 20*time.Millisecond
	const (
		snap = logtallyv1.DecisionEvent_DECISION_EVENT_SNAPSHOT
		end  = logtallyv1.DecisionEvent_DECISION_EVENT_SNAPSHOT_END
		nw   = logtallyv1.DecisionEvent_DECISION_EVENT_NEW
		del  = logtallyv1.DecisionEvent_DECISION_EVENT_DELETED
		exp  = logtallyv1.DecisionEvent_DECISION_EVENT_EXPIRED
	)
	f := &fakeDecisions{done: make(chan struct{})}
	f.streams = []func(func(*logtallyv1.WatchDecisionsResponse)) error{
		func(send func(*logtallyv1.WatchDecisionsResponse)) error {
			send(ev(snap, 3, 3, "203.0.113.3/32"))
			send(ev(end, 0, 5, ""))
			send(ev(nw, 6, 6, "203.0.113.6/32"))
			return status.Error(codes.Unavailable, "the query service is stopping")
		},
		func(send func(*logtallyv1.WatchDecisionsResponse)) error {
			send(ev(del, 3, 7, "203.0.113.3/32")) // catch-up
			send(ev(end, 0, 7, ""))
			send(ev(exp, 6, 9, "203.0.113.6/32"))
			return status.Error(codes.ResourceExhausted, "this stream fell more than 4096 changes behind")
		},
		func(send func(*logtallyv1.WatchDecisionsResponse)) error {
			return status.Error(codes.OutOfRange, "after_revision 9: too old")
		},
		func(send func(*logtallyv1.WatchDecisionsResponse)) error {
			send(ev(end, 0, 12, ""))
			return status.Error(codes.Unavailable, "gone")
		},
	}
	addr := startFakeDecisions(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() {
		select {
		case <-f.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	var stdout, stderr bytes.Buffer
	if err := Decisions(ctx, []string{"watch", "--grpc-addr", addr, "--within", "203.0.113.0/24", "--rule", "manual"}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	want := `2026-12-02T12:00:03Z snapshot id=3 key=203.0.113.3/32 rule=manual until=2026-12-02T13:00:00Z reason="by hand"
2026-12-02T12:00:05Z end      revision=5
2026-12-02T12:00:06Z new      id=6 key=203.0.113.6/32 rule=manual until=2026-12-02T13:00:00Z reason="by hand"
2026-12-02T12:00:07Z deleted  id=3 key=203.0.113.3/32 rule=manual until=2026-12-02T13:00:00Z reason="by hand"
2026-12-02T12:00:07Z end      revision=7
2026-12-02T12:00:09Z expired  id=6 key=203.0.113.6/32 rule=manual until=2026-12-02T13:00:00Z reason="by hand"
2026-12-02T12:00:12Z end      revision=12
`
	if stdout.String() != want {
		t.Fatalf("stdout:\n%s\nwant:\n%s", stdout.String(), want)
	}
	var afters []uint64
	for _, r := range f.reqs {
		afters = append(afters, r.AfterRevision)
		if r.Within != "203.0.113.0/24" || r.Rule != "manual" || !r.IncludeSimulated {
			t.Fatalf("request %v", r)
		}
	}
	if got := afters; len(got) != 5 || got[0] != 0 || got[1] != 6 || got[2] != 9 || got[3] != 0 || got[4] != 12 {
		t.Fatalf("after_revision of the calls: %v, want [0 6 9 0 12]", got)
	}
	for _, s := range []string{"stopping; reconnecting", "behind; reconnecting", "too old; starting over with a snapshot"} {
		if !strings.Contains(stderr.String(), s) {
			t.Errorf("stderr %q lacks %q", stderr.String(), s)
		}
	}
}

// A refusal that reconnecting cannot cure ends the command; --json
// prints the events as JSON.
func TestDecisionsWatchPermanentErrorAndJSON(t *testing.T) {
	f := &fakeDecisions{done: make(chan struct{})}
	f.streams = []func(func(*logtallyv1.WatchDecisionsResponse)) error{
		func(send func(*logtallyv1.WatchDecisionsResponse)) error {
			send(ev(logtallyv1.DecisionEvent_DECISION_EVENT_SNAPSHOT_END, 0, 5, ""))
			return status.Error(codes.Unauthenticated, "missing or wrong bearer token")
		},
	}
	addr := startFakeDecisions(t, f)
	var stdout, stderr bytes.Buffer
	err := Decisions(context.Background(), []string{"watch", "--json", "--grpc-addr", addr}, &stdout, &stderr)
	if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "bearer token") {
		t.Fatalf("err %v", err)
	}
	if got := strings.TrimSpace(stdout.String()); !strings.Contains(got, `"event":"DECISION_EVENT_SNAPSHOT_END"`) || !strings.Contains(got, `"revision":"5"`) {
		t.Fatalf("json %q", got)
	}
	if err := Decisions(context.Background(), []string{"watch", "extra"}, &stdout, &stderr); err == nil {
		t.Fatal("watch with an argument accepted")
	}
}
