package parser

import (
	"bytes"
	"encoding/binary"
	"math"
	"net/netip"
	"testing"

	"google.golang.org/protobuf/proto"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
	"github.com/logtally/logtally/internal/counts"
)

func TestDecodeRawMatchesGenerated(t *testing.T) {
	in := &logtallyv1.RawBatch{
		Source: "syslog-tcp", Peer: "192.0.2.1:514", ReceivedUnixMs: 1764000000123, Format: "syslog",
		Lines: [][]byte{[]byte("first"), {}, []byte("third \x00 line")},
		Oversized: []*logtallyv1.OversizedLine{{Prefix: []byte("aaaa"), Length: 1 << 20}, {Length: 70000},
			{Prefix: []byte("<13>cut"), Length: 500, Truncated: true, Received: 7}},
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
	if len(got.oversized) != 3 || string(got.oversized[0].prefix) != "aaaa" || got.oversized[0].length != 1<<20 || got.oversized[1].length != 70000 ||
		got.oversized[0].truncated || got.oversized[1].truncated {
		t.Fatalf("oversized: %+v", got.oversized)
	}
	if o := got.oversized[2]; string(o.prefix) != "<13>cut" || o.length != 500 || !o.truncated || o.received != 7 {
		t.Fatalf("truncated frame: %+v", o)
	}
	if err := decodeRaw([]byte{0x2a, 0xff}, &got); err == nil {
		t.Fatal("truncated message decoded without error")
	}
}

// wantBatch is the generated message that appendRecordBatch must write for
// pb, built field by field from the groups.
func wantBatch(pb *partBatch, rawSeq uint64, receivedMS int64) *logtallyv1.RecordBatch {
	m := &logtallyv1.RecordBatch{Format: 2, RawSeq: rawSeq, ReceivedUnixMs: receivedMS, DeadLetters: pb.deadLetters}
	for _, g := range pb.groups {
		a := g.key.addr()
		m.Minutes = append(m.Minutes, g.key.minute())
		m.GroupAddrs = append(m.GroupAddrs, a[:]...)
		m.Requests = append(m.Requests, g.c[counts.Requests])
		m.Status_4Xx = append(m.Status_4Xx, g.c[counts.Status4xx])
		m.Status_5Xx = append(m.Status_5Xx, g.c[counts.Status5xx])
		m.AuthFailures = append(m.AuthFailures, g.c[counts.AuthFailures])
		m.BytesSent = append(m.BytesSent, g.c[counts.Bytes])
	}
	return m
}

// checkEncoding encodes pb, decodes it with the generated code and compares
// both the message and, since the hand encoding follows proto.Marshal's field
// order, the bytes.
func checkEncoding(t *testing.T, pb *partBatch, rawSeq uint64, receivedMS int64) {
	t.Helper()
	prefix := []byte("kept")
	b := appendRecordBatch(append([]byte(nil), prefix...), pb, nil, rawSeq, receivedMS)
	if !bytes.HasPrefix(b, prefix) {
		t.Fatalf("appendRecordBatch overwrote what it appends to")
	}
	b = b[len(prefix):]
	var got logtallyv1.RecordBatch
	if err := proto.Unmarshal(b, &got); err != nil {
		t.Fatalf("proto.Unmarshal: %v", err)
	}
	want := wantBatch(pb, rawSeq, receivedMS)
	if !proto.Equal(&got, want) {
		t.Fatalf("encoded batch decodes to\n%v\nwant\n%v", &got, want)
	}
	std, err := proto.MarshalOptions{Deterministic: true}.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, std) {
		t.Fatalf("hand encoding differs from proto.Marshal:\n%x\n%x", b, std)
	}
	if len(got.Addrs) != 0 || len(got.TimesMs) != 0 {
		t.Fatalf("format 1 fields written: %v", &got)
	}
}

func TestEncodeMatchesGenerated(t *testing.T) {
	a := counts.Pack(netip.MustParseAddr("203.0.113.7"))
	b := counts.Pack(netip.MustParseAddr("2001:db8::1"))
	pb := &partBatch{deadLetters: 3, groups: []group{
		{makeKey(-1, a), [counts.NumClasses]uint64{1, 0, 0, 0, 0}}, // 1969-12-31T23:59
		{makeKey(29425000, a), [counts.NumClasses]uint64{5, 2, 1, 3, 5120}},
		{makeKey(29425000, b), [counts.NumClasses]uint64{math.MaxUint64, 0, 0, 0, math.MaxUint64}},
		{makeKey(math.MinInt64, b), [counts.NumClasses]uint64{1, 1, 1, 1, 1}},
	}}
	checkEncoding(t, pb, 42, 1764000000999)
	checkEncoding(t, pb, math.MaxUint64, -1) // a receive time before 1970 is still an int64
	pb.deadLetters = 0
	checkEncoding(t, pb, 1, 0)
}

// An empty partition's message carries only the batch's identity, so that
// every partition sees every raw sequence.
func TestEncodeEmptyPartition(t *testing.T) {
	for _, dead := range []uint64{0, 7} {
		pb := &partBatch{deadLetters: dead}
		checkEncoding(t, pb, 99, 1764000000999)
		var got logtallyv1.RecordBatch
		if err := proto.Unmarshal(appendRecordBatch(nil, pb, nil, 99, 1764000000999), &got); err != nil {
			t.Fatal(err)
		}
		want := &logtallyv1.RecordBatch{RawSeq: 99, Format: 2, ReceivedUnixMs: 1764000000999, DeadLetters: dead}
		if !proto.Equal(&got, want) {
			t.Fatalf("empty partition: %v, want %v", &got, want)
		}
	}
}

// FuzzEncodeRoundTrip checks that the generated decoder reads back every
// group of any batch the hand encoder writes.
func FuzzEncodeRoundTrip(f *testing.F) {
	f.Add([]byte{}, uint64(1), int64(0), uint64(0))
	f.Add(bytes.Repeat([]byte{0xff}, 3*64), uint64(math.MaxUint64), int64(math.MinInt64), uint64(1))
	f.Add(bytes.Repeat([]byte{0x80, 0, 1, 0x7f}, 100), uint64(12345), int64(1764000000999), uint64(3))
	f.Fuzz(func(t *testing.T, data []byte, rawSeq uint64, receivedMS int64, dead uint64) {
		// Each 64 bytes of data make a group: minute, address, counters.
		pb := &partBatch{deadLetters: dead}
		for ; len(data) >= 64; data = data[64:] {
			var g group
			g.key = makeKey(int64(binary.LittleEndian.Uint64(data)), [counts.AddrLen]byte(data[8:24]))
			for k := range g.c {
				// Shift by varying amounts so that every varint length occurs.
				g.c[k] = binary.LittleEndian.Uint64(data[24+8*k:]) >> (data[24+8*k] % 64)
			}
			pb.groups = append(pb.groups, g)
		}
		checkEncoding(t, pb, rawSeq, receivedMS)
	})
}
