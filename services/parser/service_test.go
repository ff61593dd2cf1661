package parser

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/internal/natsconn"
	"github.com/logtally/logtally/internal/natstest"
	"github.com/logtally/logtally/internal/service"
	"github.com/logtally/logtally/internal/topology"
)

// pipeline is a parser on an embedded JetStream server with the real
// topology.
type pipeline struct {
	js  jetstream.JetStream
	svc *Service
	reg *prometheus.Registry
	p   int
}

func startParser(t *testing.T, partitions int) *pipeline {
	t.Helper()
	srv := natstest.RunBasicJetStreamServer(t)
	nc, js := natstest.Connect(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topo := topology.Defaults()
	topo.Partitions = partitions
	p, err := topology.Ensure(ctx, js, topo)
	if err != nil {
		t.Fatal(err)
	}
	topo.Partitions = p
	reg := prometheus.NewRegistry()
	svc, err := New(Config{Partitions: p, Workers: 2, AckWait: 30 * time.Second, MaxAckPending: 16, MaxFuture: 24 * time.Hour}, service.Deps{
		Log: hclog.NewNullLogger(), NATS: &natsconn.Conn{NC: nc, JS: js}, Registerer: reg, Topology: topo, InstanceID: "test",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = svc.Stop(ctx)
	})
	return &pipeline{js: js, svc: svc, reg: reg, p: p}
}

// publishRaw puts data on the raw stream and returns its sequence.
func (pl *pipeline) publishRaw(t *testing.T, source string, data []byte) uint64 {
	t.Helper()
	ack, err := pl.js.Publish(context.Background(), topology.RawPrefix+source, data)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

// waitParsed waits until the parser acknowledged every raw batch (the work
// queue is then empty, and the parser acks only after all its output was
// stored), then returns every message of the parsed stream.
func (pl *pipeline) waitParsed(t *testing.T) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	raw, err := pl.js.Stream(ctx, topology.RawStream)
	if err != nil {
		t.Fatal(err)
	}
	for {
		info, err := raw.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs == 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("raw batches not acknowledged: %d left", info.State.Msgs)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return streamMsgs(t, pl.js, topology.ParsedStream)
}

func streamMsgs(t *testing.T, js jetstream.JetStream, name string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("get %s message %d: %v", name, seq, err)
		}
		out = append(out, m)
	}
	return out
}

// batchesOf decodes the parsed messages of raw sequence rawSeq with the
// generated code, by partition, and checks that there is exactly one per
// partition, on its subject and with its message ID.
func batchesOf(t *testing.T, msgs []*jetstream.RawStreamMsg, rawSeq uint64, partitions int) []*logtallyv1.RecordBatch {
	t.Helper()
	out := make([]*logtallyv1.RecordBatch, partitions)
	for _, m := range msgs {
		var b logtallyv1.RecordBatch
		if err := proto.Unmarshal(m.Data, &b); err != nil {
			t.Fatalf("message %d on %s: %v", m.Sequence, m.Subject, err)
		}
		if b.RawSeq != rawSeq {
			continue
		}
		p, err := strconv.Atoi(m.Subject[len(topology.ParsedPrefix):])
		if err != nil || p < 0 || p >= partitions {
			t.Fatalf("record batch on subject %s", m.Subject)
		}
		if out[p] != nil {
			t.Fatalf("partition %d got two messages for raw batch %d", p, rawSeq)
		}
		if id, want := m.Header.Get(jetstream.MsgIDHeader), fmt.Sprintf("r%d.p%d", rawSeq, p); id != want {
			t.Errorf("partition %d: Nats-Msg-Id %q, want %q", p, id, want)
		}
		if b.Format != 2 {
			t.Errorf("partition %d: format %d", p, b.Format)
		}
		out[p] = &b
	}
	for p, b := range out {
		if b == nil {
			t.Fatalf("partition %d got no message for raw batch %d", p, rawSeq)
		}
	}
	return out
}

func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// TestOnePerPartitionCombined publishes a raw batch of mixed formats and
// classes and checks every published record batch against counts the test
// derives from its own description of each line.
func TestOnePerPartitionCombined(t *testing.T) {
	const partitions = 16
	received := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	// What each line means, written down by hand: the oracle.
	type meaning struct {
		line   string
		ip     string // "" for a dead letter
		at     string // RFC 3339 event time; "" is the receive time
		status uint32
		size   uint64
		auth   bool
	}
	lines := []meaning{
		{`203.0.113.7 - - [24/Nov/2026:10:00:05 +0000] "GET / HTTP/1.1" 200 512 "-" "curl/8.5.0"`, "203.0.113.7", "2026-11-24T10:00:05Z", 200, 512, false},
		{`203.0.113.7 - - [24/Nov/2026:10:00:59 +0000] "GET /missing HTTP/1.1" 404 153 "-" "curl/8.5.0"`, "203.0.113.7", "2026-11-24T10:00:59Z", 404, 153, false},
		{`203.0.113.7 - - [24/Nov/2026:11:01:00 +0100] "GET /busy HTTP/1.1" 503 0`, "203.0.113.7", "2026-11-24T10:01:00Z", 503, 0, false},
		{`[2001:db8::1] - - [24/Nov/2026:10:00:30 +0000] "POST /login HTTP/1.1" 401 20`, "2001:db8::1", "2026-11-24T10:00:30Z", 401, 20, true},
		{`2001:db8::1 - - [24/Nov/2026:10:00:31 +0000] "POST /login HTTP/1.1" 401 20`, "2001:db8::1", "2026-11-24T10:00:31Z", 401, 20, true},
		{`2001:db8::1 - - [24/Nov/2026:10:00:32 +0000] "POST /login HTTP/1.1" 200 900`, "2001:db8::1", "2026-11-24T10:00:32Z", 200, 900, false},
		{`<38>Nov 24 10:00:10 bastion sshd[4121]: Failed password for root from 198.51.100.4 port 52144 ssh2`, "198.51.100.4", "2026-11-24T10:00:10Z", 0, 0, true},
		{`<38>Nov 24 10:00:11 bastion sshd[4121]: Invalid user admin from 198.51.100.4 port 52145`, "198.51.100.4", "2026-11-24T10:00:11Z", 0, 0, true},
		{`<38>Nov 24 10:01:11 bastion sshd[4121]: Accepted publickey for git from 198.51.100.4 port 52146 ssh2`, "198.51.100.4", "2026-11-24T10:01:11Z", 0, 0, false},
		{`<34>1 2026-11-24T10:00:12Z bastion sshd 4121 - - Failed password for invalid user oracle from 2001:db8::bad port 22 ssh2`, "2001:db8::bad", "2026-11-24T10:00:12Z", 0, 0, true},
		{`{"remote_addr":"192.0.2.5","time":"2026-11-24T10:00:40Z","status":502,"body_bytes_sent":70}`, "192.0.2.5", "2026-11-24T10:00:40Z", 502, 70, false},
		{`::ffff:192.0.2.5 - - [24/Nov/2026:10:00:41 +0000] "GET / HTTP/1.1" 407 7`, "192.0.2.5", "2026-11-24T10:00:41Z", 407, 7, true},
		{`WARN rejected client 192.0.2.99 (rate limit)`, "192.0.2.99", "", 0, 0, false},
		{`192.0.2.7 - - [31/Dec/1969:23:59:30 +0000] "GET /old HTTP/1.0" 200 1`, "192.0.2.7", "1969-12-31T23:59:30Z", 200, 1, false},
		{`no address in this line at all`, "", "", 0, 0, false},
		{``, "", "", 0, 0, false},
	}
	rb := &logtallyv1.RawBatch{Source: "test", Peer: "192.0.2.200:4000", ReceivedUnixMs: received.UnixMilli(),
		Oversized: []*logtallyv1.OversizedLine{{Prefix: []byte("192.0.2.1 - - "), Length: 100000}}}
	var recs []testRecord
	dead := len(rb.Oversized)
	for _, l := range lines {
		rb.Lines = append(rb.Lines, []byte(l.line))
		if l.ip == "" {
			dead++
			continue
		}
		at := received
		if l.at != "" {
			var err error
			if at, err = time.Parse(time.RFC3339, l.at); err != nil {
				t.Fatal(err)
			}
		}
		recs = append(recs, testRecord{addr: netip.MustParseAddr(l.ip), t: at, status: l.status, size: l.size, auth: l.auth})
	}
	data, err := proto.Marshal(rb)
	if err != nil {
		t.Fatal(err)
	}

	pl := startParser(t, partitions)
	seq := pl.publishRaw(t, "test", data)
	msgs := pl.waitParsed(t)
	if len(msgs) != partitions {
		t.Fatalf("%d messages on %s for one raw batch, want %d", len(msgs), topology.ParsedStream, partitions)
	}
	batches := batchesOf(t, msgs, seq, partitions)

	got := map[oracleKey]oracleCounts{}
	empty := 0
	for p, b := range batches {
		if b.ReceivedUnixMs != received.UnixMilli() {
			t.Errorf("partition %d: received_unix_ms %d", p, b.ReceivedUnixMs)
		}
		want := uint64(0)
		if p == int(seq%partitions) {
			want = uint64(dead)
		}
		if b.DeadLetters != want {
			t.Errorf("partition %d: dead_letters %d, want %d (raw seq %d)", p, b.DeadLetters, want, seq)
		}
		if len(b.Minutes) == 0 {
			empty++
			if !proto.Equal(b, &logtallyv1.RecordBatch{RawSeq: seq, Format: 2, ReceivedUnixMs: received.UnixMilli(), DeadLetters: want}) {
				t.Errorf("empty partition %d carries more than the batch's identity: %v", p, b)
			}
		}
		decodedGroups(t, p, partitions, b, got)
	}
	if empty == 0 {
		t.Errorf("no empty partition among %d for %d addresses; the test lost its point", partitions, len(got))
	}
	want := oracle(recs, partitions)
	checkSameGroups(t, got, want)
	// Spot checks that the oracle itself says what the lines say.
	a := netip.MustParseAddr("203.0.113.7")
	ten := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC).Unix() / 60
	if c := want[oracleKey{pt(a, partitions), ten, a}]; c != (oracleCounts{requests: 2, c4xx: 1, bytes: 665}) {
		t.Errorf("oracle for 203.0.113.7 at 10:00: %+v", c)
	}
	if c := want[oracleKey{pt(a, partitions), ten + 1, a}]; c != (oracleCounts{requests: 1, c5xx: 1}) {
		t.Errorf("oracle for 203.0.113.7 at 10:01: %+v", c)
	}
	if a := netip.MustParseAddr("192.0.2.7"); want[oracleKey{pt(a, partitions), -1, a}].requests != 1 {
		t.Errorf("oracle has no 1969 minute: %v", want)
	}

	deadMsgs := streamMsgs(t, pl.js, topology.DeadStream)
	if len(deadMsgs) != dead {
		t.Errorf("%d dead letters published, want %d", len(deadMsgs), dead)
	}
	for _, m := range deadMsgs {
		if m.Subject != topology.DeadPrefix+"test" {
			t.Errorf("dead letter on %s", m.Subject)
		}
	}
	if n := counter(t, pl.reg, "logtally_parser_records_total"); n != float64(len(recs)) {
		t.Errorf("records_total %v, want %d", n, len(recs))
	}
	if n := counter(t, pl.reg, "logtally_parser_groups_total"); n != float64(len(want)) {
		t.Errorf("groups_total %v, want %d", n, len(want))
	}
	if n := counter(t, pl.reg, "logtally_parser_messages_published_total"); n != partitions {
		t.Errorf("messages_published_total %v, want %d", n, partitions)
	}
}

func pt(a netip.Addr, partitions int) int { return counts.Partition(a.Unmap().As16(), partitions) }

// TestNotRawBatchStillPublishesEveryPartition: a message that is not a
// RawBatch becomes one dead letter, and every partition still hears of its
// raw sequence, the dead letter counted on partition seq mod P.
func TestNotRawBatchStillPublishesEveryPartition(t *testing.T) {
	const partitions = 5
	pl := startParser(t, partitions)
	// The last one starts as a good RawBatch: its line must not be counted.
	good, err := proto.Marshal(&logtallyv1.RawBatch{Source: "tcp", ReceivedUnixMs: 1, Lines: [][]byte{[]byte("192.0.2.1 up")}})
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, data := range [][]byte{{0x2a, 0xff}, {0x2a, 0xff}, []byte("not protobuf at all"), append(good, 0x2a, 0xff)} {
		seqs = append(seqs, pl.publishRaw(t, "junk", data))
	}
	msgs := pl.waitParsed(t)
	if len(msgs) != partitions*len(seqs) {
		t.Fatalf("%d messages for %d raw batches and %d partitions", len(msgs), len(seqs), partitions)
	}
	for _, seq := range seqs {
		for p, b := range batchesOf(t, msgs, seq, partitions) {
			want := &logtallyv1.RecordBatch{RawSeq: seq, Format: 2, ReceivedUnixMs: b.ReceivedUnixMs}
			if p == int(seq%partitions) {
				want.DeadLetters = 1
			}
			if b.ReceivedUnixMs == 0 || !proto.Equal(b, want) {
				t.Errorf("raw %d partition %d: %v, want %v", seq, p, b, want)
			}
		}
	}
	if n := len(streamMsgs(t, pl.js, topology.DeadStream)); n != len(seqs) {
		t.Errorf("%d dead letters, want %d", n, len(seqs))
	}
}
