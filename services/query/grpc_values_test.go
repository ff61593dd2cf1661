package query_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
	"github.com/logtally/logtally/internal/app"
	"github.com/logtally/logtally/internal/apptest"
)

// valueTotal is the total of a by=<field> answer.
type valueTotal struct {
	Requests    uint64 `json:"requests"`
	Status4xx   uint64 `json:"status_4xx"`
	Status5xx   uint64 `json:"status_5xx"`
	AuthFailure uint64 `json:"auth_failures"`
	Bytes       uint64 `json:"bytes"`
}

// queryClient is a gRPC client of a's query service.
func queryClient(t *testing.T, a *app.App) logtallyv1.QueryServiceClient {
	t.Helper()
	cc, err := grpc.NewClient(a.Query.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return logtallyv1.NewQueryServiceClient(cc)
}

func pbRangeOf(from, to time.Time) *logtallyv1.TimeRange {
	return &logtallyv1.TimeRange{From: timestamppb.New(from), To: timestamppb.New(to)}
}

// valuesFromPB is a TopValuesResponse in the form of the HTTP answer.
func valuesFromPB(r *logtallyv1.TopValuesResponse) valuesAnswer {
	v := valuesAnswer{By: r.GetField(), Class: r.GetClass(), Other: r.GetOther(), Items: []valueItem{}}
	t := r.GetTotal()
	v.Total = valueTotal{Requests: t.GetRequests(), Status4xx: t.GetStatus_4Xx(), Status5xx: t.GetStatus_5Xx(), AuthFailure: t.GetAuthFailures(), Bytes: t.GetBytes()}
	for _, it := range r.GetItems() {
		c := it.GetCounters()
		v.Items = append(v.Items, valueItem{Value: it.GetValue(), Known: it.GetKnown(), Count: it.GetCount(), Requests: c.GetRequests(),
			Status4xx: c.GetStatus_4Xx(), Status5xx: c.GetStatus_5Xx(), AuthFailure: c.GetAuthFailures(), Bytes: c.GetBytes()})
	}
	return v
}

// checkGRPCValues asks TopValues what an HTTP by=<field> query asked and
// wants the same answer.
func checkGRPCValues(t *testing.T, c logtallyv1.QueryServiceClient, http valuesAnswer, req *logtallyv1.TopValuesRequest) {
	t.Helper()
	res, err := c.TopValues(context.Background(), req)
	if err != nil {
		t.Fatalf("TopValues %v: %v", req, err)
	}
	got := valuesFromPB(res)
	if http.Items == nil {
		http.Items = []valueItem{}
	}
	if !reflect.DeepEqual(got, http) {
		t.Fatalf("TopValues %v:\n got %+v\nHTTP %+v", req, got, http)
	}
}

func sendLines(t *testing.T, a *app.App, lines []string) {
	t.Helper()
	apptest.SendLines(t, a.Ingest.TCPAddr(), lines)
}

// getCode GETs base+q and decodes a 200 answer into v (when not nil), or
// returns the error message of another.
func getCode(t *testing.T, u string, v any) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e.Error
	}
	if v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatal(err)
		}
	}
	return 200, ""
}

// WatchTopValues sends the answer at once, then again after more lines of
// the field are counted; status=4xx ranks by 4xx on every transport and
// query, exact codes and contradicting classes are refused with the
// reason, and so is path= (a prefix filter could not be exact).
func TestWatchTopValuesAndStatusAlias(t *testing.T) {
	a := apptest.Start(t, "-parser.partitions=2")
	c := queryClient(t, a)
	now := time.Now().UTC().Truncate(time.Second)
	from := now.Truncate(time.Minute)
	to := from.Add(time.Minute)
	stamp := now.Format("02/Jan/2006:15:04:05 -0700")
	line := func(ip, method, path string, st int) string {
		return fmt.Sprintf(`%s - - [%s] "%s %s HTTP/1.1" %d 10`, ip, stamp, method, path, st)
	}
	var lines []string
	for i := range 30 {
		lines = append(lines, line(fmt.Sprintf("10.1.0.%d", i%3), "GET", "/a", 200))
	}
	for i := range 12 {
		lines = append(lines, line(fmt.Sprintf("10.2.0.%d", i%2), "POST", "/login", 401))
	}
	for range 5 {
		lines = append(lines, line("10.3.0.1", "GET", "/boom", 503))
	}
	sendLines(t, a, lines)
	base := "http://" + a.HTTPAddr().String()
	rq := "from=" + url.QueryEscape(from.Format(time.RFC3339)) + "&to=" + url.QueryEscape(to.Format(time.RFC3339))
	apptest.Eventually(t, "lines counted", 30*time.Second, func() bool {
		var v valuesAnswer
		code, _ := getCode(t, base+"/api/v1/top?by=method&"+rq, &v)
		return code == 200 && v.Total.Requests == 47
	})

	// The alias ranks by the class and reports it, on every transport.
	for _, by := range []string{"method", "path", "status"} {
		for _, cl := range []string{"4xx", "5xx"} {
			var alias, class valuesAnswer
			if code, msg := getCode(t, base+"/api/v1/top?by="+by+"&status="+cl+"&"+rq, &alias); code != 200 {
				t.Fatalf("by=%s status=%s: %d %s", by, cl, code, msg)
			}
			getCode(t, base+"/api/v1/top?by="+by+"&class="+cl+"&"+rq, &class)
			if !reflect.DeepEqual(alias, class) || alias.Class != cl || len(alias.Items) == 0 {
				t.Fatalf("by=%s: status=%s %+v, class=%s %+v", by, cl, alias, cl, class)
			}
			checkGRPCValues(t, c, alias, &logtallyv1.TopValuesRequest{Field: by, Status: cl, Range: pbRangeOf(from, to)})
		}
	}
	var path4xx valuesAnswer
	getCode(t, base+"/api/v1/top?by=path&status=4xx&"+rq, &path4xx)
	if path4xx.Items[0].Value != "/login" || path4xx.Items[0].Count != 12 || path4xx.Other != 0 {
		t.Fatalf("by=path status=4xx: %+v", path4xx)
	}
	for _, cl := range []string{"4xx", "5xx"} {
		var alias, class struct {
			Class string `json:"class"`
			Items []struct {
				IP    string `json:"ip"`
				Count uint64 `json:"count"`
			} `json:"items"`
		}
		getCode(t, base+"/api/v1/top?status="+cl+"&"+rq, &alias)
		getCode(t, base+"/api/v1/top?class="+cl+"&"+rq, &class)
		if !reflect.DeepEqual(alias, class) || alias.Class != cl || len(alias.Items) == 0 {
			t.Fatalf("by=ip: status=%s %+v, class=%s %+v", cl, alias, cl, class)
		}
		res, err := c.Top(context.Background(), &logtallyv1.TopRequest{Status: cl, Range: pbRangeOf(from, to)})
		if err != nil || res.GetClass() != cl || len(res.GetItems()) != len(alias.Items) {
			t.Fatalf("gRPC Top status=%s: %v %v", cl, res, err)
		}
		for i, it := range res.GetItems() {
			if it.GetIp() != alias.Items[i].IP || it.GetCount() != alias.Items[i].Count {
				t.Fatalf("gRPC Top status=%s: %v, HTTP %+v", cl, res.GetItems(), alias.Items)
			}
		}
	}
	// gRPC Top takes cidr as HTTP does.
	res, err := c.Top(context.Background(), &logtallyv1.TopRequest{Cidr: "10.2.0.0/16", Range: pbRangeOf(from, to)})
	if err != nil || len(res.GetItems()) != 2 || res.GetItems()[0].GetCount() != 6 || !strings.HasPrefix(res.GetItems()[1].GetIp(), "10.2.0.") {
		t.Fatalf("gRPC Top cidr: %v %v", res, err)
	}
	if _, err := c.Top(context.Background(), &logtallyv1.TopRequest{Cidr: "10.2.0.0/99"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("gRPC Top bad cidr: %v", err)
	}

	// Refused, with the reason.
	for q, want := range map[string]string{
		"status=404":                          "by=status",
		"status=4xx&class=5xx":                "contradicts",
		"status=":                             "empty",
		"status=teapot":                       "not 4xx or 5xx",
		"by=path&status=404":                  "by=status",
		"by=path&status=5xx&class=bytes":      "contradicts",
		"by=path&path=/api/":                  "cannot be ranked exactly",
		"path=/api/":                          "per-IP windows do not count paths",
		"by=method&path=/":                    "use by=path",
		"by=status&status=4xx&class=requests": "contradicts",
	} {
		code, msg := getCode(t, base+"/api/v1/top?"+q+"&"+rq, nil)
		if code != 400 || !strings.Contains(msg, want) {
			t.Errorf("%s: %d %q, want 400 mentioning %q", q, code, msg, want)
		}
	}
	if code, _ := getCode(t, base+"/api/v1/top?status=4xx&class=4xx&"+rq, nil); code != 200 {
		t.Errorf("status=4xx&class=4xx: %d, want 200", code)
	}
	for _, req := range []*logtallyv1.TopValuesRequest{{Field: "nope"}, {Field: ""}, {Field: "path", Status: "404"}, {Field: "path", Status: "4xx", Class: "5xx"}, {Field: "path", Class: "nope"}, {Field: "path", N: 1 << 30}} {
		if _, err := c.TopValues(context.Background(), req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("TopValues %v: %v, want InvalidArgument", req, err)
		}
	}
	if _, err := c.Top(context.Background(), &logtallyv1.TopRequest{Status: "404"}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "by=status") {
		t.Errorf("Top status=404: %v, want InvalidArgument", err)
	}

	// WatchTopValues: the answer at once, then after more lines.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := c.WatchTopValues(ctx, &logtallyv1.WatchTopValuesRequest{Field: "method", N: 5, Range: pbRangeOf(from, to)})
	if err != nil {
		t.Fatal(err)
	}
	first, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var httpMethods valuesAnswer
	getCode(t, base+"/api/v1/top?by=method&n=5&"+rq, &httpMethods)
	if got := valuesFromPB(first.GetTop()); !reflect.DeepEqual(got, httpMethods) || got.Total.Requests != 47 {
		t.Fatalf("first: %+v, HTTP %+v", got, httpMethods)
	}
	var more []string
	for range 60 {
		more = append(more, line("10.4.0.1", "DELETE", "/x", 204))
	}
	sendLines(t, a, more)
	for {
		m, err := st.Recv()
		if err != nil {
			t.Fatalf("waiting for the update: %v", err)
		}
		got := valuesFromPB(m.GetTop())
		if got.Total.Requests == 107 {
			if got.Items[0].Value != "DELETE" || got.Items[0].Count != 60 || got.Other != 0 {
				t.Fatalf("update: %+v", got)
			}
			break
		}
	}
	bad, err := c.WatchTopValues(ctx, &logtallyv1.WatchTopValuesRequest{Field: "nope"})
	if err == nil {
		_, err = bad.Recv()
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("WatchTopValues nope: %v", err)
	}
}
