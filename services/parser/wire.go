package parser

import (
	"encoding/binary"
	"fmt"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/logtally/logtally/internal/counts"
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
}

// rawBatch is a decoded logtallyv1.RawBatch whose byte fields alias the message.
type rawBatch struct {
	source, peer, format string
	receivedMS           int64
	lines                [][]byte
	oversized            []oversized
}

func decodeRaw(b []byte, out *rawBatch) error {
	*out = rawBatch{lines: out.lines[:0], oversized: out.oversized[:0]}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ == protowire.BytesType && num >= 1 && num <= 6 && num != 3 {
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
		case num == 2 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return o, protowire.ParseError(n)
			}
			o.length, b = v, b[n:]
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

// appendRecordBatch appends pb as a format 2 logtallyv1.RecordBatch, fields
// in number order and zero scalars left out, as proto.Marshal writes them:
// the tests compare the bytes. A partition without groups still gets
// raw_seq and format, so that the aggregator sees every raw sequence.
func appendRecordBatch(b []byte, pb *partBatch, rawSeq uint64, receivedMS int64) []byte {
	gs := pb.groups
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
	const tagVarint = 2 + binary.MaxVarintLen64 // a tag and a varint, at most
	size := 4 * tagVarint                       // raw_seq, dead_letters, received, format
	if len(gs) > 0 {
		size += tagVarint + minutesLen + tagVarint + counts.AddrLen*len(gs)
		for _, n := range colLen {
			size += tagVarint + n
		}
	}
	b = slices.Grow(b, size)

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
	if len(gs) == 0 {
		return b
	}
	b = protowire.AppendTag(b, fieldMinutes, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(minutesLen))
	for i := range gs {
		b = protowire.AppendVarint(b, uint64(gs[i].key.minute())) // two's complement, as int64 fields are
	}
	b = protowire.AppendTag(b, fieldGroupAddrs, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(counts.AddrLen*len(gs)))
	for i := range gs {
		b = append(b, gs[i].key[8:]...)
	}
	// Zeros are written too: every column has one value per group.
	for k, n := range colLen {
		b = protowire.AppendTag(b, fieldRequests+protowire.Number(k), protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(n))
		for i := range gs {
			b = protowire.AppendVarint(b, gs[i].c[k])
		}
	}
	return b
}
