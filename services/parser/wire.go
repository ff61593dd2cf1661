package parser

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/services/parser/format"
)

// The parser touches every line twice on the wire: once reading RawBatch and
// once writing RecordBatch. Both are done with protowire so that lines and
// request fields are sliced from the input instead of copied into strings;
// the generated types in gen/ remain the definition of the format, and the
// tests check these functions against them.

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

// columns collects the records of one partition; byte slices alias the raw
// message until encode copies them into the output.
type columns struct {
	addrs       []byte
	times       []int64
	methods     [][]byte
	paths       [][]byte
	statuses    []uint32
	sizes       []uint64
	agents      [][]byte
	deadLetters uint64
	used        bool
}

func (c *columns) reset() {
	*c = columns{
		addrs: c.addrs[:0], times: c.times[:0], methods: c.methods[:0], paths: c.paths[:0],
		statuses: c.statuses[:0], sizes: c.sizes[:0], agents: c.agents[:0],
	}
}

func (c *columns) add(a [counts.AddrLen]byte, r *format.Record) {
	c.used = true
	c.addrs = append(c.addrs, a[:]...)
	c.times = append(c.times, r.Time.UnixMilli())
	c.methods = append(c.methods, r.Method)
	c.paths = append(c.paths, r.Path)
	c.statuses = append(c.statuses, r.Status)
	c.sizes = append(c.sizes, r.Size)
	c.agents = append(c.agents, r.UserAgent)
}

// encode writes the columns as a logtallyv1.RecordBatch.
func (c *columns) encode(rawSeq uint64, receivedMS int64) []byte {
	size := 64 + len(c.addrs) + 10*len(c.times) + 16*len(c.statuses)
	for i := range c.methods {
		size += len(c.methods[i]) + len(c.paths[i]) + len(c.agents[i]) + 12
	}
	b := make([]byte, 0, size)
	if len(c.addrs) > 0 {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, c.addrs)
	}
	b = appendPacked(b, 2, c.times)
	if rawSeq != 0 {
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		b = protowire.AppendVarint(b, rawSeq)
	}
	if c.deadLetters != 0 {
		b = protowire.AppendTag(b, 4, protowire.VarintType)
		b = protowire.AppendVarint(b, c.deadLetters)
	}
	if receivedMS != 0 {
		b = protowire.AppendTag(b, 5, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(receivedMS))
	}
	b = appendStrings(b, 6, c.methods)
	b = appendStrings(b, 7, c.paths)
	b = appendPacked(b, 8, c.statuses)
	b = appendPacked(b, 9, c.sizes)
	return appendStrings(b, 10, c.agents)
}

func appendStrings(b []byte, num protowire.Number, vs [][]byte) []byte {
	for _, v := range vs {
		b = protowire.AppendTag(b, num, protowire.BytesType)
		b = protowire.AppendBytes(b, v)
	}
	return b
}

// appendPacked writes a packed repeated varint field (int64 as two's
// complement, as protobuf does).
func appendPacked[T int64 | uint32 | uint64](b []byte, num protowire.Number, vs []T) []byte {
	if len(vs) == 0 {
		return b
	}
	n := 0
	for _, v := range vs {
		n += protowire.SizeVarint(uint64(v))
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(n))
	for _, v := range vs {
		b = protowire.AppendVarint(b, uint64(v))
	}
	return b
}
