package nasty

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
	"github.com/logtally/logtally/services/ingest"
	"github.com/logtally/logtally/services/parser"
	"github.com/logtally/logtally/services/query"
)

// grpcChecks sends the absurd query parameters over gRPC: each must be
// InvalidArgument with a message, a zone in an IP is dropped. It returns
// the number of invalid calls.
func grpcChecks(t *testing.T, p *proc) int {
	t.Helper()
	conn, err := grpc.NewClient(p.a.Query.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := logtallyv1.NewQueryServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	now := time.Now().UTC().Truncate(time.Minute)
	last := func(d time.Duration) *logtallyv1.TimeRange { return &logtallyv1.TimeRange{Last: durationpb.New(d)} }
	fromTo := func(a, b time.Time) *logtallyv1.TimeRange {
		return &logtallyv1.TimeRange{From: timestamppb.New(a), To: timestamppb.New(b)}
	}
	calls := map[string]func() error{
		"top n=MaxUint32": func() error {
			_, err := c.Top(ctx, &logtallyv1.TopRequest{N: math.MaxUint32, Range: last(time.Hour)})
			return err
		},
		"top 100 years": func() error {
			_, err := c.Top(ctx, &logtallyv1.TopRequest{N: 10, Range: fromTo(now.AddDate(-100, 0, 0), now)})
			return err
		},
		"top from > to": func() error {
			_, err := c.Top(ctx, &logtallyv1.TopRequest{N: 10, Range: fromTo(now, now.Add(-time.Hour))})
			return err
		},
		"top negative last": func() error {
			_, err := c.Top(ctx, &logtallyv1.TopRequest{Range: last(-time.Hour)})
			return err
		},
		"totals year 10000": func() error {
			_, err := c.Totals(ctx, &logtallyv1.TotalsRequest{Range: &logtallyv1.TimeRange{From: timestamppb.New(now), To: &timestamppb.Timestamp{Seconds: math.MaxInt64}}})
			return err
		},
		"series garbage ip": func() error {
			_, err := c.IPSeries(ctx, &logtallyv1.IPSeriesRequest{Ip: "fe80::1%", Range: last(time.Hour)})
			return err
		},
		"series step 1ns": func() error {
			_, err := c.IPSeries(ctx, &logtallyv1.IPSeriesRequest{Ip: "192.0.2.1", Range: last(time.Hour), Step: durationpb.New(1)})
			return err
		},
		"series 400d by 1m": func() error {
			_, err := c.IPSeries(ctx, &logtallyv1.IPSeriesRequest{Ip: "192.0.2.1", Range: last(400 * 24 * time.Hour), Step: durationpb.New(time.Minute)})
			return err
		},
	}
	for name, call := range calls {
		err := call()
		if st, ok := status.FromError(err); !ok || st.Code() != codes.InvalidArgument || st.Message() == "" {
			t.Errorf("gRPC %s: %v, want InvalidArgument with a message", name, err)
		}
	}
	res, err := c.IPSeries(ctx, &logtallyv1.IPSeriesRequest{Ip: "fe80::1%eth0", Range: last(time.Hour)})
	if err != nil || res.Ip != "fe80::1" {
		t.Errorf("gRPC series of fe80::1%%eth0: %v %v", res, err)
	}
	return len(calls)
}

// TestConnectionLimit opens more connections than -ingest.max-connections
// allows, on both TCP listeners: the extra one is not closed but waits in
// the accept queue, the others keep working, and the extra one is served
// as soon as a slot is freed.
// The same small process has a 4 MiB body cap: a gzip bomb of newlines
// (the worst case per byte: one empty line per byte) is refused with a
// heap growth far below the 4M lines' bookkeeping of old.
func TestConnectionLimit(t *testing.T) {
	const limit = 3
	p := startApp(t, "limits", newConfig(t, fmt.Sprintf("-ingest.max-connections=%d", limit), "-ingest.http.max-body-bytes=4MiB"))
	var requests uint64
	counted := func(ip string) {
		t.Helper()
		eventually(t, ip+" to be counted", func() (bool, string) {
			n := p.ipCount(ip)
			if n > 1 {
				t.Fatalf("%s counted %d times", ip, n)
			}
			return n == 1, fmt.Sprintf("count %d", n)
		})
		requests++
	}
	for i, l := range []struct {
		name string
		addr net.Addr
		line func(ip string) string
	}{
		{"tcp", p.a.Ingest.TCPAddr(), func(ip string) string { return clf(ip, "/held") + "\n" }},
		{"syslog-tcp", p.a.Ingest.SyslogTCPAddr(), func(ip string) string { return octet(rfc5424("held " + ip)) }},
	} {
		open := func() float64 { return p.metric("logtally_ingest_open_connections", `listener="`+l.name+`"`) }
		var held []net.Conn
		for range limit {
			held = append(held, dial(t, l.addr))
		}
		eventually(t, "the connections to be open", func() (bool, string) {
			return open() == limit, fmt.Sprintf("%v open", open())
		})
		// One more sender is not closed: the listener stops accepting and
		// the sender waits in the kernel's accept queue, its line unread.
		extra := dial(t, l.addr)
		extraIP := fmt.Sprintf("203.0.113.%d", 10*i+9)
		if _, err := io.WriteString(extra, l.line(extraIP)); err != nil {
			t.Fatal(err)
		}
		if runtime.GOOS == "linux" {
			eventually(t, "the extra sender in the accept queue", func() (bool, string) {
				q := p.metric("logtally_ingest_accept_queue", `listener="`+l.name+`"`)
				return q == 1, fmt.Sprintf("%v queued", q)
			})
		}
		// The connections within the limit work.
		for k, c := range held {
			ip := fmt.Sprintf("203.0.113.%d", 10*i+k+1)
			if _, err := io.WriteString(c, l.line(ip)); err != nil {
				t.Fatal(err)
			}
			counted(ip)
		}
		if n := p.ipCount(extraIP); n != 0 {
			t.Fatalf("%s: the sender over the limit was read (%d) while %d connections were open", l.name, n, limit)
		}
		if got := p.metric("logtally_ingest_connections_limit_seconds_total", `listener="`+l.name+`"`); got <= 0 {
			t.Fatalf("%s: connections_limit_seconds_total %v at the limit", l.name, got)
		}
		// A freed slot goes to the waiting sender.
		_ = held[0].Close()
		counted(extraIP)
		if got := p.metric("logtally_ingest_connections_rejected_total"); got != 0 {
			t.Fatalf("%s: connections_rejected_total %v, want 0", l.name, got)
		}
		eventually(t, "the waiting sender to be open", func() (bool, string) {
			return open() == limit, fmt.Sprintf("%v open", open())
		})
		_ = extra.Close()
		for _, c := range held[1:] {
			_ = c.Close()
		}
	}

	h := watchHeap()
	start := time.Now()
	bomb := newGzipBomb("\n", gib)
	code, out, written := p.rawPost(t, "", map[string]string{"Content-Encoding": "gzip"}, bomb, -1)
	wall := time.Since(start)
	peak, kept := h.end()
	if code != 413 || out["error"] != "request body too large" {
		t.Fatalf("bomb: %d %v", code, out)
	}
	t.Logf("newline bomb against a 4 MiB cap: peak heap growth %s, kept %s, %s, server took %s compressed", size(peak), size(kept), wall.Round(time.Millisecond), size(written))
	record(figure{name: "http gzip bomb, 1 GiB of \"\\n\" lines, 4 MiB cap", input: gib, peakHeap: peak, kept: kept, wall: wall,
		outcome: fmt.Sprintf("413 after the server took %s (compressed)", size(written))})
	// 4M empty lines encode to 8 MiB; as one slice each they took 24 bytes
	// per line, 96 MiB and more.
	if peak > 48*mib {
		t.Errorf("peak heap growth %s for a body capped at 4 MiB", size(peak))
	}
	if n := p.metric("logtally_ingest_lines_total", `source="http"`); n != 0 {
		t.Fatalf("%v lines of the refused bomb stored", n)
	}
	if tot := p.totals(); tot.Requests != requests || tot.DeadLetters != 0 {
		t.Fatalf("totals %+v, want %d requests and no dead letters", tot, requests)
	}
}

// TestLimitDefaults checks that every limit on input has a sane default
// and that the limits table of docs/reliability.md states it.
func TestLimitDefaults(t *testing.T) {
	ic, qc := ingest.DefaultConfig(), query.DefaultConfig()
	var pc parser.Config
	fs := newFlagSet()
	pc.RegisterFlags(fs)
	limits := []struct {
		flag, doc string
		ok        bool
	}{
		{"-ingest.max-connections", fmt.Sprint(ic.MaxConnections), ic.MaxConnections >= 64 && ic.MaxConnections <= 65536},
		{"-ingest.tcp.idle-timeout", strings.TrimSuffix(ic.TCPIdleTimeout.String(), "0s"), ic.TCPIdleTimeout >= time.Minute && ic.TCPIdleTimeout <= time.Hour},
		{"-ingest.tcp.max-conns-per-peer", fmt.Sprint(ic.MaxConnsPerPeer), ic.MaxConnsPerPeer >= 1 && ic.MaxConnsPerPeer < ic.MaxConnections},
		{"-ingest.syslog.udp-rcvbuf", "8 MiB", ic.UDPRcvbuf == 8<<20},
		{"-ingest.max-line-bytes", "64 KiB", ic.MaxLineBytes == 64<<10},
		{"-ingest.http.max-body-bytes", "64 MiB", ic.HTTPMaxBodyBytes == 64<<20},
		{"-ingest.batch.max-bytes", "960 KiB", ic.BatchMaxBytes == 960<<10},
		{"-ingest.http.timeout", ic.HTTPTimeout.String(), ic.HTTPTimeout > 0 && ic.HTTPTimeout <= time.Minute},
		{"-query.max-n", fmt.Sprint(qc.MaxN), qc.MaxN >= 10 && qc.MaxN <= 100000},
		{"-query.max-range", "400d", qc.MaxRange == 400*24*time.Hour},
		{"-query.max-points", fmt.Sprint(qc.MaxPoints), qc.MaxPoints >= 100 && qc.MaxPoints <= 1000000},
		{"-query.timeout", qc.Timeout.String(), qc.Timeout > 0 && qc.Timeout <= time.Minute},
		{"-parser.max-future", strings.TrimSuffix(pc.MaxFuture.String(), "0m0s"), pc.MaxFuture > 0 && pc.MaxFuture <= 7*24*time.Hour},
	}
	doc, err := os.ReadFile("../../docs/reliability.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	i := strings.Index(text, "## Bad input and limits")
	if i < 0 {
		t.Fatal(`docs/reliability.md has no "## Bad input and limits" section`)
	}
	section := text[i:]
	if j := strings.Index(section[3:], "\n## "); j >= 0 {
		section = section[:j+3]
	}
	for _, l := range limits {
		if !l.ok {
			t.Errorf("%s: default %s is not sane", l.flag, l.doc)
		}
		row := ""
		for _, line := range strings.Split(section, "\n") {
			if strings.HasPrefix(line, "| `"+l.flag+"`") {
				row = line
			}
		}
		if row == "" || !strings.Contains(row, "| "+l.doc+" |") {
			t.Errorf("the limits table of docs/reliability.md has no row for %s with default %s: %q", l.flag, l.doc, row)
		}
	}
}

func newFlagSet() *flag.FlagSet { return flag.NewFlagSet("limits", flag.ContinueOnError) }
