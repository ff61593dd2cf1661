package parser

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/services/parser/format"
)

// The parser reads every line from a RawBatch and writes every group to a
// RecordBatch. Both are done with protowire: lines are sliced from the input
// instead of copied, and groups are written from the combiner's reused
// slices with no message structs in between. The generated types in gen/
// remain the definition of the format, and the tests check these functions
// against them.

type oversized struct {
	prefix []byte
	length uint64
	// truncated: a syslog frame cut short, of which received bytes arrived
	// (OversizedLine.truncated and received).
	truncated bool
	received  uint64
}

// rawBatch is a decoded logtallyv1.RawBatch whose byte fields alias the message.
type rawBatch struct {
	source, peer, format string
	receivedMS           int64
	lines                [][]byte
	oversized            []oversized
	// meta holds RawBatch.line_meta sorted by line; next is where
	// parseLine continues in it.
	meta []lineMeta
	next int
}

// lineMeta is a decoded logtallyv1.LineMeta; zero fields are unset.
type lineMeta struct {
	line       uint32
	addr       netip.Addr // !IsValid(): unset
	timeMS     int64
	observedMS int64
}

func decodeRaw(b []byte, out *rawBatch) error {
	*out = rawBatch{lines: out.lines[:0], oversized: out.oversized[:0], meta: out.meta[:0]}
	if err := decodeRawFields(b, out); err != nil {
		return err
	}
	// Ingest writes line_meta in line order; another writer may not.
	if !slices.IsSortedFunc(out.meta, cmpMeta) {
		slices.SortStableFunc(out.meta, cmpMeta)
	}
	return nil
}

func cmpMeta(a, b lineMeta) int { return int(int64(a.line) - int64(b.line)) }

func decodeRawFields(b []byte, out *rawBatch) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ == protowire.BytesType && num >= 1 && num <= 7 && num != 3 {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
			switch num {
			case 1:
				out.source = string(v)
			case 2:
				out.peer = string(v)
			case 4:
				out.format = string(v)
			case 5:
				out.lines = append(out.lines, v)
			case 6:
				o, err := decodeOversized(v)
				if err != nil {
					return fmt.Errorf("oversized line: %w", err)
				}
				out.oversized = append(out.oversized, o)
			case 7:
				m, err := decodeLineMeta(v)
				if err != nil {
					return fmt.Errorf("line meta: %w", err)
				}
				out.meta = append(out.meta, m)
			}
			continue
		}
		if num == 3 && typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			out.receivedMS = int64(v)
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
	}
	return nil
}

func decodeOversized(b []byte) (oversized, error) {
	var o oversized
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return o, protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return o, protowire.ParseError(n)
			}
			o.prefix, b = v, b[n:]
		case num >= 2 && num <= 4 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return o, protowire.ParseError(n)
			}
			b = b[n:]
			switch num {
			case 2:
				o.length = v
			case 3:
				o.truncated = v != 0
			case 4:
				o.received = v
			}
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return o, protowire.ParseError(n)
			}
			b = b[n:]
		}
	}
	return o, nil
}

func decodeLineMeta(b []byte) (lineMeta, error) {
	var m lineMeta
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return m, protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == 2 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return m, protowire.ParseError(n)
			}
			b = b[n:]
			switch len(v) {
			case 0:
				m.addr = netip.Addr{}
			case 4, 16:
				m.addr, _ = netip.AddrFromSlice(v)
				m.addr = m.addr.Unmap()
			default:
				return m, fmt.Errorf("client address of %d bytes", len(v))
			}
		case num >= 1 && num <= 4 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return m, protowire.ParseError(n)
			}
			b = b[n:]
			switch num {
			case 1:
				m.line = uint32(v)
			case 3:
				m.timeMS = int64(v)
			case 4:
				m.observedMS = int64(v)
			}
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return m, protowire.ParseError(n)
			}
			b = b[n:]
		}
	}
	return m, nil
}

// metaFor returns the metadata of line i, which must not be smaller than
// the line of the previous call for rb: lines are parsed in order.
func (rb *rawBatch) metaFor(i int) (lineMeta, bool) {
	if i == 0 {
		rb.next = 0
	}
	for rb.next < len(rb.meta) && int64(rb.meta[rb.next].line) < int64(i) {
		rb.next++
	}
	if rb.next < len(rb.meta) && int64(rb.meta[rb.next].line) == int64(i) {
		m := rb.meta[rb.next]
		// The first entry of a line counts; later ones are skipped.
		for rb.next < len(rb.meta) && rb.meta[rb.next].line == m.line {
			rb.next++
		}
		return m, true
	}
	return lineMeta{}, false
}

// parseLine parses line i of rb into rec, as Parse does, and applies what
// the sender said about the line (RawBatch.line_meta):
//
//   - the client address wins over the IP of the text, and a line with one
//     counts even when its text has no valid IP or is not of any format
//     (no_client_ip, bad_ip, malformed, bad_syslog, bad_json); an empty
//     line, invalid UTF-8 or binary text is a dead letter all the same;
//   - the event time wins over the text's own timestamp (a bad timestamp in
//     the text does not matter then); without one, the text's timestamp
//     counts, and a text without one counts at the observed time, else at
//     the batch's receive time;
//   - the observed time, else the event time, stands in for the receive
//     time in Parse (RFC 3164 years, lines without a timestamp);
//   - whichever time a line gets, more than MaxFuture after the batch's
//     receive time is a dead letter (future_timestamp), as for any line.
//
// Lines without metadata are parsed as before.
func (w *worker) parseLine(rb *rawBatch, i int, line []byte, f format.Format, received time.Time, rec *format.Record) error {
	m, ok := rb.metaFor(i)
	if !ok {
		return w.parser.Parse(line, f, received, rec)
	}
	anchor := received
	switch {
	case m.observedMS != 0:
		anchor = time.UnixMilli(m.observedMS).UTC()
	case m.timeMS != 0:
		anchor = time.UnixMilli(m.timeMS).UTC()
	}
	err := w.parser.Parse(line, f, anchor, rec)
	if err != nil {
		if !m.addr.IsValid() || !countsAnyway(err, m.timeMS != 0) {
			return err
		}
		*rec = format.Record{Time: anchor}
	}
	if m.addr.IsValid() {
		rec.Addr = m.addr
	}
	if m.timeMS != 0 {
		rec.Time = time.UnixMilli(m.timeMS).UTC()
	}
	maxFuture := format.DefaultMaxFuture
	if w.s != nil && w.s.opts.MaxFuture > 0 {
		maxFuture = w.s.opts.MaxFuture
	}
	if rec.Time.After(received.Add(maxFuture)) {
		t := rec.Time
		*rec = format.Record{}
		return fmt.Errorf("%w: %s is more than %s after the receive time %s (sender's time)",
			format.ErrFutureTimestamp, t.Format(time.RFC3339), maxFuture, received.Format(time.RFC3339))
	}
	return nil
}

// countsAnyway reports whether a line whose text failed with err still
// counts because the sender named its client address (and, with
// haveTime, its time).
func countsAnyway(err error, haveTime bool) bool {
	for _, e := range []error{format.ErrNoClientIP, format.ErrBadIP, format.ErrMalformed, format.ErrBadSyslog, format.ErrBadJSON} {
		if errors.Is(err, e) {
			return true
		}
	}
	return haveTime && (errors.Is(err, format.ErrBadTimestamp) || errors.Is(err, format.ErrFutureTimestamp))
}

// Field numbers of logtallyv1.RecordBatch written by the combiner. The
// counter columns are numbered in counts.Class order from fieldRequests on.
const (
	fieldRawSeq      = 3
	fieldDeadLetters = 4
	fieldReceived    = 5
	fieldFormat      = 11
	fieldMinutes     = 12
	fieldGroupAddrs  = 13
	fieldRequests    = 14
)

// recordBatchFormat is RecordBatch.format of combined batches.
const recordBatchFormat = 2

// Fields of the nested logtallyv1.GroupColumns.
const (
	fieldDimGroups = 19
	colMinutes     = 1
	colKeys        = 2
	colRequests    = 3
)

// appendRecordBatch appends pb (and the partition's dims groups dg) as a
// format 2 logtallyv1.RecordBatch, fields in number order and zero scalars
// left out, as proto.Marshal writes them: the tests compare the bytes. A
// partition without groups still gets raw_seq and format, so that the
// aggregator sees every raw sequence.
func appendRecordBatch(b []byte, pb *partBatch, dg []group, rawSeq uint64, receivedMS int64) []byte {
	gs := pb.groups
	if rawSeq != 0 {
		b = protowire.AppendTag(b, fieldRawSeq, protowire.VarintType)
		b = protowire.AppendVarint(b, rawSeq)
	}
	if pb.deadLetters != 0 {
		b = protowire.AppendTag(b, fieldDeadLetters, protowire.VarintType)
		b = protowire.AppendVarint(b, pb.deadLetters)
	}
	if receivedMS != 0 {
		b = protowire.AppendTag(b, fieldReceived, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(receivedMS))
	}
	b = protowire.AppendTag(b, fieldFormat, protowire.VarintType)
	b = protowire.AppendVarint(b, recordBatchFormat)
	b, _ = appendGroups(b, gs, fieldMinutes, fieldGroupAddrs, fieldRequests)
	if len(dg) == 0 {
		return b
	}
	_, n := appendGroups(nil, dg, colMinutes, colKeys, colRequests)
	b = protowire.AppendTag(b, fieldDimGroups, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(n))
	b, _ = appendGroups(b, dg, colMinutes, colKeys, colRequests)
	return b
}

// appendGroups appends the columns of gs as packed fields numbered
// minutes, keys and requests on (one per class), and returns their size.
// With b nil it only sizes them.
func appendGroups(b []byte, gs []group, minutes, keys, requests protowire.Number) ([]byte, int) {
	if len(gs) == 0 {
		return b, 0
	}
	// Packed columns are written length first, so their sizes are summed
	// before anything is written, all in one pass over the groups.
	minutesLen := 0
	var colLen [counts.NumClasses]int
	for i := range gs {
		g := &gs[i]
		minutesLen += protowire.SizeVarint(uint64(g.key.minute()))
		for k, v := range g.c {
			colLen[k] += protowire.SizeVarint(v)
		}
	}
	size := protowire.SizeTag(minutes) + protowire.SizeBytes(minutesLen) + protowire.SizeTag(keys) + protowire.SizeBytes(counts.AddrLen*len(gs))
	for k, n := range colLen {
		size += protowire.SizeTag(requests+protowire.Number(k)) + protowire.SizeBytes(n)
	}
	if b == nil {
		return nil, size
	}
	b = slices.Grow(b, size)
	b = protowire.AppendTag(b, minutes, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(minutesLen))
	for i := range gs {
		b = protowire.AppendVarint(b, uint64(gs[i].key.minute())) // two's complement, as int64 fields are
	}
	b = protowire.AppendTag(b, keys, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(counts.AddrLen*len(gs)))
	for i := range gs {
		b = append(b, gs[i].key[8:]...)
	}
	// Zeros are written too: every column has one value per group.
	for k, n := range colLen {
		b = protowire.AppendTag(b, requests+protowire.Number(k), protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(n))
		for i := range gs {
			b = protowire.AppendVarint(b, gs[i].c[k])
		}
	}
	return b, size
}
