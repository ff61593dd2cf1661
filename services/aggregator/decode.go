package aggregator

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/logtally/logtally/internal/counts"
)

// batch is the part of a logtallyv1.RecordBatch the aggregator needs. It is
// decoded by hand so that the request fields (paths, user agents) are skipped
// instead of allocated: the aggregator's hot path touches every record.
type batch struct {
	addrs       []byte // aliases the message
	times       []int64
	deadLetters uint64
	receivedMS  int64
}

// Field numbers of logtallyv1.RecordBatch.
const (
	fieldAddrs       = 1
	fieldTimes       = 2
	fieldDeadLetters = 4
	fieldReceived    = 5
)

func decodeBatch(b []byte, out *batch) error {
	*out = batch{times: out.times[:0]}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: tag: %v", ErrBadBatch, protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == fieldAddrs && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return fmt.Errorf("%w: addrs: %v", ErrBadBatch, protowire.ParseError(n))
			}
			out.addrs = append(out.addrs, v...)
			b = b[n:]
		case num == fieldTimes && typ == protowire.BytesType: // packed
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return fmt.Errorf("%w: times: %v", ErrBadBatch, protowire.ParseError(n))
			}
			for len(v) > 0 {
				t, m := protowire.ConsumeVarint(v)
				if m < 0 {
					return fmt.Errorf("%w: times: %v", ErrBadBatch, protowire.ParseError(m))
				}
				out.times = append(out.times, int64(t))
				v = v[m:]
			}
			b = b[n:]
		case num == fieldTimes && typ == protowire.VarintType: // unpacked
			t, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return fmt.Errorf("%w: times: %v", ErrBadBatch, protowire.ParseError(n))
			}
			out.times = append(out.times, int64(t))
			b = b[n:]
		case num == fieldDeadLetters && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return fmt.Errorf("%w: dead_letters: %v", ErrBadBatch, protowire.ParseError(n))
			}
			out.deadLetters = v
			b = b[n:]
		case num == fieldReceived && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return fmt.Errorf("%w: received: %v", ErrBadBatch, protowire.ParseError(n))
			}
			out.receivedMS = int64(v)
			b = b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return fmt.Errorf("%w: field %d: %v", ErrBadBatch, num, protowire.ParseError(n))
			}
			b = b[n:]
		}
	}
	if len(out.addrs) != len(out.times)*counts.AddrLen {
		return fmt.Errorf("%w: %d address bytes for %d times", ErrBadBatch, len(out.addrs), len(out.times))
	}
	return nil
}
