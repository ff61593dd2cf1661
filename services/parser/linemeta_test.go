package parser

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/services/parser/format"
)

// combined parses a marshaled RawBatch as a worker does and returns its
// groups as "ip minute-RFC3339 requests/4xx" strings and its dead letters'
// reason codes.
func combined(t *testing.T, in *logtallyv1.RawBatch) (groups, dead []string) {
	t.Helper()
	b, err := proto.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	w := &worker{parser: format.New(format.Options{}), comb: newCombiner(5)}
	if err := decodeRaw(b, &w.raw); err != nil {
		t.Fatal(err)
	}
	w.combine(&w.raw, 1)
	for p := range w.comb.parts {
		for _, g := range w.comb.parts[p].groups {
			groups = append(groups, fmt.Sprintf("%s %s %d/%d", counts.Unpack(g.key.addr()),
				time.Unix(g.key.minute()*60, 0).UTC().Format(time.RFC3339), g.c[counts.Requests], g.c[counts.Status4xx]))
		}
	}
	sort.Strings(groups)
	for _, d := range w.dead {
		dead = append(dead, d.code)
	}
	return groups, dead
}

func addr16(s string) []byte {
	a := netip.MustParseAddr(s).As16()
	return a[:]
}

func addr4(s string) []byte {
	a := netip.MustParseAddr(s).As4()
	return a[:]
}

// TestLineMeta: the sender's address and time (OTLP attributes) win over
// the text's; a line with an address counts even when its text has no IP;
// observed time stands in for the receive time; old batches are unchanged.
func TestLineMeta(t *testing.T) {
	recv := time.Date(2026, 11, 24, 10, 30, 0, 0, time.UTC)
	ms := func(s string) int64 { tm, _ := time.Parse(time.RFC3339, s); return tm.UnixMilli() }
	clf := `203.0.113.9 - - [24/Nov/2026:09:15:02 +0000] "GET /x HTTP/1.1" 404 12 "-" "curl"`
	in := &logtallyv1.RawBatch{
		Source: "otlp", ReceivedUnixMs: recv.UnixMilli(),
		Lines: [][]byte{
			[]byte(clf),                   // 0: address wins, text time and class stay
			[]byte(clf),                   // 1: address and time win
			[]byte("user logged in"),      // 2: no IP in the text, address given: counts
			[]byte("user logged in"),      // 3: no IP, no meta: dead
			[]byte(clf),                   // 4: event time 2 days ahead: dead
			[]byte("198.51.100.7 hello"),  // 5: observed time for a text without time
			[]byte(""),                    // 6: empty, with address: dead all the same
			[]byte(clf),                   // 7: no meta: as before
			[]byte(`{"msg":"no ip here"`), // 8: broken JSON, address given: counts at the event time
			[]byte(clf),                   // 9: two entries for one line: the first counts
		},
		LineMeta: []*logtallyv1.LineMeta{
			// deliberately out of order: decodeRaw sorts
			{Line: 9, ClientAddr: addr4("192.0.2.91")},
			{Line: 9, ClientAddr: addr4("192.0.2.99")},
			{Line: 0, ClientAddr: addr4("192.0.2.1")},
			{Line: 1, ClientAddr: addr16("2001:db8::1"), TimeUnixMs: ms("2026-11-24T08:00:30Z")},
			{Line: 2, ClientAddr: addr16("::ffff:192.0.2.2"), ObservedUnixMs: ms("2026-11-23T23:59:59Z")},
			{Line: 4, TimeUnixMs: recv.Add(48 * time.Hour).UnixMilli()},
			{Line: 5, ObservedUnixMs: ms("2026-11-24T07:07:07Z")},
			{Line: 6, ClientAddr: addr4("192.0.2.6")},
			{Line: 8, ClientAddr: addr4("192.0.2.8"), TimeUnixMs: ms("2026-11-20T01:02:03Z")},
			{Line: 42, ClientAddr: addr4("192.0.2.42")}, // no such line: ignored
		},
	}
	groups, dead := combined(t, in)
	want := []string{
		"192.0.2.1 2026-11-24T09:15:00Z 1/1",
		"192.0.2.2 2026-11-23T23:59:00Z 1/0",
		"192.0.2.8 2026-11-20T01:02:00Z 1/0",
		"192.0.2.91 2026-11-24T09:15:00Z 1/1",
		"198.51.100.7 2026-11-24T07:07:00Z 1/0",
		"2001:db8::1 2026-11-24T08:00:00Z 1/1",
		"203.0.113.9 2026-11-24T09:15:00Z 1/1",
	}
	if strings.Join(groups, "\n") != strings.Join(want, "\n") {
		t.Fatalf("groups:\n%s\nwant:\n%s", strings.Join(groups, "\n"), strings.Join(want, "\n"))
	}
	if strings.Join(dead, ",") != "no_client_ip,future_timestamp,empty_line" {
		t.Fatalf("dead letters %v", dead)
	}

	// The same lines without line_meta: what a parser before the field did.
	in.LineMeta = nil
	groups, dead = combined(t, in)
	if len(groups) != 2 || !strings.HasPrefix(groups[1], "203.0.113.9 2026-11-24T09:15:00Z 5/5") || len(dead) != 4 {
		t.Fatalf("without meta: %v %v", groups, dead)
	}
}

func TestLineMetaBadAddress(t *testing.T) {
	b, err := proto.Marshal(&logtallyv1.RawBatch{Lines: [][]byte{[]byte("x")}, LineMeta: []*logtallyv1.LineMeta{{ClientAddr: []byte{1, 2, 3}}}})
	if err != nil {
		t.Fatal(err)
	}
	var rb rawBatch
	if err := decodeRaw(b, &rb); err == nil || !strings.Contains(err.Error(), "client address of 3 bytes") {
		t.Fatalf("decodeRaw: %v", err)
	}
}

// TestTruncatedFrameDeadLetter: a syslog frame cut short travels as an
// oversized entry marked truncated; it is a dead letter with its reason,
// never parsed (what arrived holds an address that is not the sender's).
func TestTruncatedFrameDeadLetter(t *testing.T) {
	cut := "<13>Nov 24 10:00:10 host sshd[1]: Failed password for root from 198.51.100.4"
	in := &logtallyv1.RawBatch{Source: "syslog-tcp", ReceivedUnixMs: 1764000000000, Format: "syslog", Oversized: []*logtallyv1.OversizedLine{
		{Prefix: []byte(cut), Length: 500, Truncated: true, Received: uint64(len(cut))},
		{Prefix: []byte("12"), Truncated: true},
		{Prefix: []byte("x"), Length: 70000},
	}}
	groups, dead := combined(t, in)
	if len(groups) != 0 || strings.Join(dead, ",") != "truncated_frame,truncated_frame,line_too_long" {
		t.Fatalf("groups %v, dead letters %v", groups, dead)
	}
	b, _ := proto.Marshal(in)
	w := &worker{parser: format.New(format.Options{}), comb: newCombiner(5)}
	if err := decodeRaw(b, &w.raw); err != nil {
		t.Fatal(err)
	}
	w.combine(&w.raw, 1)
	for i, want := range []struct {
		reason string
		length int
	}{
		{fmt.Sprintf("truncated frame: the connection ended after %d of the 500 bytes its octet count declared", len(cut)), len(cut)},
		{`truncated frame: the connection ended in the octet count "12"`, 0},
		{"line too long: 70000 bytes", 70000},
	} {
		if d := w.dead[i]; d.reason != want.reason || d.length != want.length {
			t.Errorf("dead letter %d: %q length %d, want %q length %d", i, d.reason, d.length, want.reason, want.length)
		}
	}
}
