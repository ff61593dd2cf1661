package query

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
	"github.com/logtally/logtally/internal/decisions"
	"github.com/logtally/logtally/internal/windows"
)

const allowRules = `mode: enforce
allow:
  - 198.51.100.0/28
rules:
  - name: http-flood
    key: ip
    range: 1m
    threshold: 50
    ban: 10m
    class: requests
`

// decisionsEnv is newEnv with a rules file (its allow list) and a
// DecisionService client.
func decisionsEnv(t *testing.T, opts ...func(*Config)) (*env, logtallyv1.DecisionServiceClient) {
	t.Helper()
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rules, []byte(allowRules), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, 2, append([]func(*Config){func(c *Config) { c.RulesFile = rules }}, opts...)...)
	return e, logtallyv1.NewDecisionServiceClient(e.cc)
}

func create(t *testing.T, dc logtallyv1.DecisionServiceClient, key string, d time.Duration) *logtallyv1.Decision {
	t.Helper()
	res, err := dc.CreateDecision(context.Background(), &logtallyv1.CreateDecisionRequest{Key: key, Duration: durationpb.New(d), Reason: "test " + key})
	if err != nil {
		t.Fatalf("create %s: %v", key, err)
	}
	return res.Decision
}

// listed waits until ListDecisions (with the filter) answers the ids.
func listed(t *testing.T, dc logtallyv1.DecisionServiceClient, req *logtallyv1.ListDecisionsRequest, ids ...uint64) []*logtallyv1.Decision {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := dc.ListDecisions(context.Background(), req)
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		var got []uint64
		for _, d := range res.Decisions {
			got = append(got, d.Id)
		}
		if fmt.Sprint(got) == fmt.Sprint(ids) {
			return res.Decisions
		}
		if time.Now().After(deadline) {
			t.Fatalf("list %v: %v, want %v", req, got, ids)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestDecisionsGRPCRoundTrip(t *testing.T) {
	e, dc := decisionsEnv(t)
	ctx := context.Background()
	before := time.Now()
	a := create(t, dc, "203.0.113.7", time.Hour)
	if a.Id == 0 || a.Key != "203.0.113.7/32" || a.Rule != "manual" || a.Origin != "manual" || a.Reason != "test 203.0.113.7" ||
		!strings.HasPrefix(a.By, "grpc 127.0.0.1:") || a.Until.AsTime().Sub(a.Created.AsTime()) != time.Hour || a.Created.AsTime().Before(before.Add(-time.Second)) {
		t.Fatalf("created %v", a)
	}
	b := create(t, dc, "::ffff:192.0.2.200/120", 10*time.Minute) // IPv4-mapped: unmapped and masked
	if b.Key != "192.0.2.0/24" {
		t.Fatalf("mapped prefix became %s", b.Key)
	}

	listed(t, dc, &logtallyv1.ListDecisionsRequest{}, b.Id, a.Id)
	for _, c := range []struct {
		req  *logtallyv1.ListDecisionsRequest
		want []uint64
	}{
		{&logtallyv1.ListDecisionsRequest{Rule: "manual"}, []uint64{b.Id, a.Id}},
		{&logtallyv1.ListDecisionsRequest{Rule: "http-flood"}, nil},
		{&logtallyv1.ListDecisionsRequest{Contains: "203.0.113.7"}, []uint64{a.Id}},
		{&logtallyv1.ListDecisionsRequest{Contains: "192.0.2.1"}, []uint64{b.Id}},
		{&logtallyv1.ListDecisionsRequest{Contains: "192.0.0.0/16"}, nil},
		{&logtallyv1.ListDecisionsRequest{Within: "203.0.113.0/24"}, []uint64{a.Id}},
		{&logtallyv1.ListDecisionsRequest{Within: "192.0.0.0/16"}, []uint64{b.Id}},
		{&logtallyv1.ListDecisionsRequest{Within: "2001:db8::/32"}, nil},
	} {
		listed(t, dc, c.req, c.want...)
	}
	if _, err := dc.ListDecisions(ctx, &logtallyv1.ListDecisionsRequest{Within: "nope"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad within: %v", err)
	}

	// The HTTP API sees the same decisions and filters alike.
	var httpList struct {
		Mode  string `json:"mode"`
		Items []struct {
			ID  uint64 `json:"id"`
			Key string `json:"key"`
		} `json:"items"`
	}
	if code := e.getJSON("/api/v1/decisions?contains=203.0.113.7&simulated=false", &httpList); code != 200 || httpList.Mode != "enforce" || len(httpList.Items) != 1 || httpList.Items[0].ID != a.Id {
		t.Fatalf("HTTP list: %d %+v", code, httpList)
	}

	// Refusals, with the HTTP API's reasons.
	for _, c := range []struct {
		req  *logtallyv1.CreateDecisionRequest
		code codes.Code
		msg  string
	}{
		{&logtallyv1.CreateDecisionRequest{Key: "203.0.113.7", Duration: durationpb.New(time.Hour)}, codes.AlreadyExists, "203.0.113.7/32 is banned by hand already; delete that decision first"},
		{&logtallyv1.CreateDecisionRequest{Key: "not-an-ip", Duration: durationpb.New(time.Hour)}, codes.InvalidArgument, `key "not-an-ip" is neither an IP address nor a CIDR prefix`},
		{&logtallyv1.CreateDecisionRequest{Key: "192.0.2.1"}, codes.InvalidArgument, "duration (none): want a Go duration between 1s and 8760h"},
		{&logtallyv1.CreateDecisionRequest{Key: "192.0.2.1", Duration: durationpb.New(time.Millisecond)}, codes.InvalidArgument, "duration 1ms: want"},
		{&logtallyv1.CreateDecisionRequest{Key: "192.0.2.1", Duration: durationpb.New(366 * 24 * time.Hour)}, codes.InvalidArgument, "duration 8784h0m0s: want"},
	} {
		_, err := dc.CreateDecision(ctx, c.req)
		if status.Code(err) != c.code || !strings.Contains(status.Convert(err).Message(), c.msg) {
			t.Errorf("create %v: %v, want %s %q", c.req, err, c.code, c.msg)
		}
	}

	// Delete answers the decision, then NotFound.
	del, err := dc.DeleteDecision(ctx, &logtallyv1.DeleteDecisionRequest{Id: a.Id})
	if err != nil || del.Decision.Id != a.Id || del.Decision.Key != a.Key {
		t.Fatalf("delete: %v %v", del, err)
	}
	listed(t, dc, &logtallyv1.ListDecisionsRequest{}, b.Id)
	_, err = dc.DeleteDecision(ctx, &logtallyv1.DeleteDecisionRequest{Id: a.Id})
	if status.Code(err) != codes.NotFound || status.Convert(err).Message() != fmt.Sprintf("decision %d: no active decision with this id", a.Id) {
		t.Fatalf("delete again: %v", err)
	}
	// The key can be banned by hand again.
	create(t, dc, "203.0.113.7", time.Hour)
}

// A key on the allow list is refused with the reason, over gRPC and
// HTTP alike.
func TestDecisionsGRPCAllowListed(t *testing.T) {
	e, dc := decisionsEnv(t)
	for _, key := range []string{"198.51.100.3", "198.51.100.0/29", "::ffff:198.51.100.9", "198.51.100.0/24" /* holds allowed addresses */} {
		_, err := dc.CreateDecision(context.Background(), &logtallyv1.CreateDecisionRequest{Key: key, Duration: durationpb.New(time.Hour)})
		st := status.Convert(err)
		if st.Code() != codes.PermissionDenied || !strings.HasSuffix(st.Message(), ": the key is on the allow list") {
			t.Fatalf("create %s: %v", key, err)
		}
		var info *errdetails.ErrorInfo
		for _, d := range st.Details() {
			if i, ok := d.(*errdetails.ErrorInfo); ok {
				info = i
			}
		}
		if info == nil || info.Reason != "KEY_ALLOW_LISTED" {
			t.Fatalf("create %s: details %v", key, st.Details())
		}
		body, _ := json.Marshal(map[string]string{"key": key, "duration": "1h"})
		resp, err := http.Post(e.http.URL+"/api/v1/decisions", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var answer struct{ Error string }
		_ = json.NewDecoder(resp.Body).Decode(&answer)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || answer.Error != st.Message() {
			t.Fatalf("HTTP ban %s: %d %q, gRPC said %q", key, resp.StatusCode, answer.Error, st.Message())
		}
	}
	// Next to the allow list, bans work.
	create(t, dc, "198.51.100.16", time.Minute)
}

// watcher reads a WatchDecisions stream into a channel.
type watcher struct {
	t      *testing.T
	events chan *logtallyv1.WatchDecisionsResponse
	err    chan error
}

func watch(t *testing.T, ctx context.Context, dc logtallyv1.DecisionServiceClient, req *logtallyv1.WatchDecisionsRequest) *watcher {
	t.Helper()
	st, err := dc.WatchDecisions(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	w := &watcher{t: t, events: make(chan *logtallyv1.WatchDecisionsResponse, 100000), err: make(chan error, 1)}
	go func() {
		for {
			m, err := st.Recv()
			if err != nil {
				w.err <- err
				return
			}
			w.events <- m
		}
	}()
	return w
}

// expect receives the next events: "snapshot 12", "end", "new 13", ….
func (w *watcher) expect(timeout time.Duration, want ...string) []*logtallyv1.WatchDecisionsResponse {
	w.t.Helper()
	var out []*logtallyv1.WatchDecisionsResponse
	for _, s := range want {
		select {
		case m := <-w.events:
			if got := eventString(m); got != s {
				w.t.Fatalf("event %q, want %q (after %d of %v)", got, s, len(out), want)
			}
			out = append(out, m)
		case err := <-w.err:
			w.t.Fatalf("stream ended waiting for %q: %v", s, err)
		case <-time.After(timeout):
			w.t.Fatalf("no event within %s, want %q", timeout, s)
		}
	}
	return out
}

// quiet checks that nothing more arrives for d.
func (w *watcher) quiet(d time.Duration) {
	w.t.Helper()
	select {
	case m := <-w.events:
		w.t.Fatalf("unexpected event %q", eventString(m))
	case err := <-w.err:
		w.t.Fatalf("stream ended: %v", err)
	case <-time.After(d):
	}
}

func eventString(m *logtallyv1.WatchDecisionsResponse) string {
	name := strings.ToLower(strings.TrimPrefix(m.Event.String(), "DECISION_EVENT_"))
	if m.Event == logtallyv1.DecisionEvent_DECISION_EVENT_SNAPSHOT_END {
		return "end"
	}
	return fmt.Sprintf("%s %d", name, m.GetDecision().GetId())
}

// Two watchers see the snapshot, then a ban by hand, an unban and an
// expiry, in order and once each; a filtered one only its decisions; a
// resumed one what changed since its revision.
func TestWatchDecisions(t *testing.T) {
	_, dc := decisionsEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a := create(t, dc, "203.0.113.1", time.Hour)
	listed(t, dc, &logtallyv1.ListDecisionsRequest{}, a.Id)

	w1 := watch(t, ctx, dc, &logtallyv1.WatchDecisionsRequest{})
	w2 := watch(t, ctx, dc, &logtallyv1.WatchDecisionsRequest{IncludeSimulated: true})
	var ends []*logtallyv1.WatchDecisionsResponse
	for _, w := range []*watcher{w1, w2} {
		got := w.expect(5*time.Second, fmt.Sprintf("snapshot %d", a.Id), "end")
		if got[0].Revision != a.Id || got[0].Decision.Key != a.Key || got[1].Revision < a.Id || got[1].Decision != nil {
			t.Fatalf("snapshot %v", got)
		}
		ends = append(ends, got[1])
	}
	narrow := watch(t, ctx, dc, &logtallyv1.WatchDecisionsRequest{Within: "2001:db8::/32"})
	narrow.expect(5*time.Second, "end")

	b := create(t, dc, "203.0.113.2", time.Hour)
	if _, err := dc.DeleteDecision(ctx, &logtallyv1.DeleteDecisionRequest{Id: a.Id}); err != nil {
		t.Fatal(err)
	}
	c := create(t, dc, "2001:db8::/64", 2*time.Second)
	for _, w := range []*watcher{w1, w2} {
		got := w.expect(15*time.Second, fmt.Sprintf("new %d", b.Id), fmt.Sprintf("deleted %d", a.Id), fmt.Sprintf("new %d", c.Id), fmt.Sprintf("expired %d", c.Id))
		last := ends[0].Revision
		for _, m := range got {
			if m.Revision <= last || m.At == nil {
				t.Fatalf("revisions not increasing: %v", got)
			}
			last = m.Revision
		}
		if got[2].Decision.Until.AsTime().Sub(got[2].Decision.Created.AsTime()) != 2*time.Second {
			t.Fatalf("new %v", got[2].Decision)
		}
	}
	narrow.expect(5*time.Second, fmt.Sprintf("new %d", c.Id), fmt.Sprintf("expired %d", c.Id))
	for _, w := range []*watcher{w1, w2, narrow} {
		w.quiet(500 * time.Millisecond)
	}

	// Resuming after the first stream's snapshot: what changed since,
	// without c (made and gone since).
	resumed := watch(t, ctx, dc, &logtallyv1.WatchDecisionsRequest{AfterRevision: ends[0].Revision})
	got := resumed.expect(5*time.Second, fmt.Sprintf("new %d", b.Id), fmt.Sprintf("deleted %d", a.Id), "end")
	d := create(t, dc, "203.0.113.4", time.Hour)
	resumed.expect(5*time.Second, fmt.Sprintf("new %d", d.Id))
	w1.expect(5*time.Second, fmt.Sprintf("new %d", d.Id))
	if got[2].Revision < c.Id {
		t.Fatalf("resumed end at %d, before %d", got[2].Revision, c.Id)
	}
	// A revision the index cannot resume from (none here is older than
	// the index, so only a future one that is caught up to is accepted).
	future := watch(t, ctx, dc, &logtallyv1.WatchDecisionsRequest{AfterRevision: d.Id + 1000})
	future.expect(5*time.Second, "end")
	future.quiet(200 * time.Millisecond)
}

// Stop ends open WatchDecisions streams with Unavailable at once:
// GracefulStop does not wait for them.
func TestWatchDecisionsEndsOnStop(t *testing.T) {
	e, dc := decisionsEnv(t)
	a := create(t, dc, "203.0.113.1", time.Hour)
	listed(t, dc, &logtallyv1.ListDecisionsRequest{}, a.Id)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var ws []*watcher
	for range 3 {
		w := watch(t, ctx, dc, &logtallyv1.WatchDecisionsRequest{})
		w.expect(5*time.Second, fmt.Sprintf("snapshot %d", a.Id), "end")
		ws = append(ws, w)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	start := time.Now()
	if err := e.svc.Stop(sctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("stop took %s with open streams", took)
	}
	for _, w := range ws {
		select {
		case err := <-w.err:
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("stream after stop: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("stream still open after stop")
		}
	}
}

// A client that stops reading is dropped with ResourceExhausted once its
// buffer is full; the store, the other watchers and the writers never
// wait for it.
func TestWatchDecisionsSlowClient(t *testing.T) {
	e, dc := decisionsEnv(t, func(c *Config) { c.DecisionsWatchBuffer = 64 })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// The slow client: fixed 64 KiB HTTP/2 windows, so that little is
	// buffered in transit; it reads the snapshot, then nothing.
	cc, err := grpc.NewClient(e.svc.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	slow, err := logtallyv1.NewDecisionServiceClient(cc).WatchDecisions(ctx, &logtallyv1.WatchDecisionsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := slow.Recv(); err != nil || m.Event != logtallyv1.DecisionEvent_DECISION_EVENT_SNAPSHOT_END {
		t.Fatalf("slow snapshot: %v %v", m, err)
	}
	fast := watch(t, ctx, dc, &logtallyv1.WatchDecisionsRequest{})
	fast.expect(5*time.Second, "end")

	dropped := func() float64 {
		mfs, err := e.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "logtally_query_decisions_watch_dropped_total" {
				return mf.Metric[0].GetCounter().GetValue()
			}
		}
		return -1
	}
	var made int
	var mu sync.Mutex
	var slowest time.Duration
	for dropped() < 1 {
		if made >= 20000 {
			t.Fatalf("slow client not dropped after %d decisions", made)
		}
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 50 {
					n := made + g*50 + i
					start := time.Now()
					_, err := dc.CreateDecision(ctx, &logtallyv1.CreateDecisionRequest{Key: fmt.Sprintf("10.%d.%d.%d", n>>16&255, n>>8&255, n&255), Duration: durationpb.New(time.Hour)})
					if err != nil {
						t.Errorf("create: %v", err)
						return
					}
					mu.Lock()
					slowest = max(slowest, time.Since(start))
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		made += 400
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("slow client dropped after %d decisions; slowest create %s", made, slowest)
	if slowest > 5*time.Second {
		t.Errorf("a create took %s while a client was slow", slowest)
	}
	// The reading watcher got every decision, once each.
	seen := map[uint64]bool{}
	for len(seen) < made {
		select {
		case m := <-fast.events:
			if m.Event != logtallyv1.DecisionEvent_DECISION_EVENT_NEW || seen[m.Decision.Id] {
				t.Fatalf("fast watcher: %s", eventString(m))
			}
			seen[m.Decision.Id] = true
		case err := <-fast.err:
			t.Fatalf("fast watcher ended after %d of %d: %v", len(seen), made, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("fast watcher has %d of %d", len(seen), made)
		}
	}
	// The slow client, reading again, gets what was in transit, then the
	// end of its stream.
	var n int
	for {
		_, err := slow.Recv()
		if err == nil {
			n++
			continue
		}
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("slow stream after %d events: %v", n, err)
		}
		t.Logf("slow client read %d events before %v", n, err)
		break
	}
	if n >= made {
		t.Fatalf("slow client got all %d events", n)
	}
}

// The HTTP decisions API answers as before the validation was shared.
func TestDecisionsHTTP(t *testing.T) {
	e, _ := decisionsEnv(t)
	do := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, e.http.URL+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	code, d := do("POST", "/api/v1/decisions", `{"key":"2001:db8::1","duration":"90m","reason":"r"}`)
	if code != 201 || d["key"] != "2001:db8::1/128" || d["left_seconds"] != 5400.0 || !strings.HasPrefix(d["by"].(string), "api 127.0.0.1:") {
		t.Fatalf("ban: %d %v", code, d)
	}
	id := uint64(d["id"].(float64))
	for _, c := range []struct {
		method, path, body string
		code               int
		msg                string
	}{
		{"POST", "/api/v1/decisions", `{"key":"2001:db8::1","duration":"1h"}`, 409, "2001:db8::1/128 is banned by hand already; delete that decision first"},
		{"POST", "/api/v1/decisions", `{"key":"192.0.2.1","duration":"soon"}`, 400, `duration "soon": want a Go duration between 1s and 8760h`},
		{"POST", "/api/v1/decisions", `{"key":"192.0.2.1","duration":"9000h"}`, 400, `duration "9000h": want a Go duration between 1s and 8760h`},
		{"POST", "/api/v1/decisions", `{"key":"x","duration":"1h"}`, 400, `key "x" is neither an IP address nor a CIDR prefix`},
		{"POST", "/api/v1/decisions", `{"key":"192.0.2.1","duration":"1h","extra":1}`, 400, `body: json: unknown field "extra"`},
		{"GET", "/api/v1/decisions?contains=x", "", 400, `contains: key "x" is neither an IP address nor a CIDR prefix`},
		{"GET", "/api/v1/decisions?simulated=maybe", "", 400, `simulated "maybe": want true or false`},
		{"DELETE", "/api/v1/decisions/abc", "", 400, `decision id "abc" is not a number`},
		{"DELETE", fmt.Sprintf("/api/v1/decisions/%d", id+100), "", 404, fmt.Sprintf("decision %d: no active decision with this id", id+100)},
	} {
		code, out := do(c.method, c.path, c.body)
		if code != c.code || out["error"] != c.msg {
			t.Errorf("%s %s %s: %d %v, want %d %q", c.method, c.path, c.body, code, out["error"], c.code, c.msg)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, out := do("DELETE", fmt.Sprintf("/api/v1/decisions/%d", id), "")
		if code == 200 {
			if out["key"] != "2001:db8::1/128" {
				t.Fatalf("unban: %v", out)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("unban: %d %v", code, out)
		}
		time.Sleep(20 * time.Millisecond) // the index has not seen the ban yet
	}
}

// A rule's decision converts with its range and evaluated window.
func TestDecisionToProto(t *testing.T) {
	from := mustTime("2026-12-02T12:00:00Z")
	d := decisions.Decision{ID: 7, Rule: "http-flood", Key: "203.0.113.7/32", Count: 60, Threshold: 50, Class: "requests",
		Range: windows.FormatDuration(24 * time.Hour), Window: windows.Range{From: from, To: from.Add(time.Minute)}.String(),
		Origin: "logtally", By: "detector-1", Created: from, Until: from.Add(10 * time.Minute), Offence: 2}
	p := decisionToProto(&d)
	if p.Range.AsDuration() != 24*time.Hour || !p.WindowFrom.AsTime().Equal(from) || !p.WindowTo.AsTime().Equal(from.Add(time.Minute)) ||
		p.Offence != 2 || p.Count != 60 || p.Threshold != 50 || p.Class != "requests" || p.By != "detector-1" {
		t.Fatalf("%v from %+v", p, d)
	}
	d.Range, d.Window = "", "garbage"
	if p := decisionToProto(&d); p.Range != nil || p.WindowFrom != nil {
		t.Fatalf("%v", p)
	}
}
