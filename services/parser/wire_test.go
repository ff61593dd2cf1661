package parser

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/services/parser/format"
)

func TestDecodeRawMatchesGenerated(t *testing.T) {
	in := &logtallyv1.RawBatch{
		Source: "syslog-tcp", Peer: "192.0.2.1:514", ReceivedUnixMs: 1764000000123, Format: "syslog",
		Lines:     [][]byte{[]byte("first"), {}, []byte("third \x00 line")},
		Oversized: []*logtallyv1.OversizedLine{{Prefix: []byte("aaaa"), Length: 1 << 20}, {Length: 70000}},
	}
	b, err := proto.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var got rawBatch
	if err := decodeRaw(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.source != in.Source || got.peer != in.Peer || got.format != in.Format || got.receivedMS != in.ReceivedUnixMs {
		t.Fatalf("header fields: %+v", got)
	}
	if len(got.lines) != 3 || !bytes.Equal(got.lines[2], in.Lines[2]) || len(got.lines[1]) != 0 {
		t.Fatalf("lines: %q", got.lines)
	}
	if len(got.oversized) != 2 || string(got.oversized[0].prefix) != "aaaa" || got.oversized[0].length != 1<<20 || got.oversized[1].length != 70000 {
		t.Fatalf("oversized: %+v", got.oversized)
	}
	if err := decodeRaw([]byte{0x2a, 0xff}, &got); err == nil {
		t.Fatal("truncated message decoded without error")
	}
}

func TestEncodeMatchesGenerated(t *testing.T) {
	var c columns
	c.reset()
	recs := []format.Record{
		{Addr: netip.MustParseAddr("203.0.113.7"), Time: time.UnixMilli(1764000000123), Method: []byte("GET"), Path: []byte("/a?b=c"), Status: 200, Size: 5120, UserAgent: []byte(`Mozilla/5.0 \"x\"`)},
		{Addr: netip.MustParseAddr("2001:db8::1"), Time: time.UnixMilli(-1000)},
	}
	for i := range recs {
		c.add(counts.Pack(recs[i].Addr), &recs[i])
	}
	c.deadLetters = 3
	var got logtallyv1.RecordBatch
	if err := proto.Unmarshal(c.encode(42, 1764000000999), &got); err != nil {
		t.Fatal(err)
	}
	a0, a1 := counts.Pack(recs[0].Addr), counts.Pack(recs[1].Addr)
	want := &logtallyv1.RecordBatch{
		Addrs:   append(a0[:], a1[:]...),
		TimesMs: []int64{1764000000123, -1000}, RawSeq: 42, DeadLetters: 3, ReceivedUnixMs: 1764000000999,
		Methods: []string{"GET", ""}, Paths: []string{"/a?b=c", ""}, Statuses: []uint32{200, 0},
		Sizes: []uint64{5120, 0}, UserAgents: []string{`Mozilla/5.0 \"x\"`, ""},
	}
	if !proto.Equal(&got, want) {
		t.Fatalf("encoded batch decodes to\n%v\nwant\n%v", &got, want)
	}
}
