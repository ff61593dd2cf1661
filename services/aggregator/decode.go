package aggregator

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/logtally/logtally/internal/counts"
)

// batch is the part of a logtallyv1.RecordBatch the aggregator needs,
// decoded by hand so that nothing is allocated per group. Format 2 batches
// carry one group per (minute, IP) with its class counters; format 1
// batches (from parsers before the combiner) one record per line, which
// decode into groups of one request each.
type batch struct {
	format      uint32
	rawSeq      uint64
	deadLetters uint64
	receivedMS  int64

	minutes  []int64 // per group: unix minute
	addrs    []byte  // per group: 16 bytes; aliases the message
	counters []counts.Counters

	v1Times []int64 // format 1: per record, unix ms
	cols    [counts.NumClasses][]uint64

	// dims are the groups of field values (internal/dims keys), applied to
	// the dims windows.
	dims dimGroups
}

// dimGroups are the columns of a logtallyv1.GroupColumns.
type dimGroups struct {
	minutes  []int64
	keys     []byte
	counters []counts.Counters
	cols     [counts.NumClasses][]uint64
}

func (d *dimGroups) groups() int { return len(d.minutes) }

func (d *dimGroups) key(i int) [counts.AddrLen]byte {
	return [counts.AddrLen]byte(d.keys[i*counts.AddrLen : (i+1)*counts.AddrLen])
}

// Field numbers of logtallyv1.GroupColumns.
const (
	colMinutes     = 1
	colKeys        = 2
	colRequests    = 3
	colBytesSent   = 7
	fieldDimGroups = 19
)

func decodeDimGroups(b []byte, d *dimGroups) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: dim_groups tag: %v", ErrBadBatch, protowire.ParseError(n))
		}
		b = b[n:]
		var err error
		switch {
		case num == colKeys && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return fmt.Errorf("%w: dim_groups keys: %v", ErrBadBatch, protowire.ParseError(n))
			}
			d.keys = append(d.keys, v...)
			b = b[n:]
		case num == colMinutes:
			d.minutes, b, err = consumeVarints(d.minutes, typ, b, "dim_groups minutes")
		case num >= colRequests && num <= colBytesSent:
			c := num - colRequests
			d.cols[c], b, err = consumeVarints(d.cols[c], typ, b, "dim_groups counters")
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return fmt.Errorf("%w: dim_groups field %d: %v", ErrBadBatch, num, protowire.ParseError(n))
			}
			b = b[n:]
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// finish checks the columns of every dim_groups occurrence and builds the
// counters.
func (d *dimGroups) finish() error {
	var err error
	d.counters, err = groupCounters(d.counters, len(d.minutes), d.keys, &d.cols, "dim key")
	return err
}

// groups is the number of groups.
func (b *batch) groups() int { return len(b.minutes) }

func (b *batch) addr(i int) [counts.AddrLen]byte {
	return [counts.AddrLen]byte(b.addrs[i*counts.AddrLen : (i+1)*counts.AddrLen])
}

// Field numbers of logtallyv1.RecordBatch.
const (
	fieldAddrs        = 1
	fieldTimes        = 2
	fieldRawSeq       = 3
	fieldDeadLetters  = 4
	fieldReceived     = 5
	fieldFormat       = 11
	fieldMinutes      = 12
	fieldGroupAddrs   = 13
	fieldRequests     = 14
	fieldStatus4xx    = 15
	fieldStatus5xx    = 16
	fieldAuthFailures = 17
	fieldBytesSent    = 18
)

func decodeBatch(b []byte, out *batch) error {
	cols := out.cols
	for i := range cols {
		cols[i] = cols[i][:0]
	}
	dcols := out.dims.cols
	for i := range dcols {
		dcols[i] = dcols[i][:0]
	}
	*out = batch{minutes: out.minutes[:0], counters: out.counters[:0], v1Times: out.v1Times[:0],
		dims: dimGroups{minutes: out.dims.minutes[:0], keys: out.dims.keys[:0], counters: out.dims.counters[:0], cols: dcols}}
	defer func() { out.cols = cols }()
	var v1Addrs []byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: tag: %v", ErrBadBatch, protowire.ParseError(n))
		}
		b = b[n:]
		var err error
		switch {
		case num == fieldAddrs && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return fmt.Errorf("%w: addrs: %v", ErrBadBatch, protowire.ParseError(n))
			}
			v1Addrs = append(v1Addrs, v...)
			b = b[n:]
		case num == fieldGroupAddrs && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return fmt.Errorf("%w: group_addrs: %v", ErrBadBatch, protowire.ParseError(n))
			}
			out.addrs = append(out.addrs, v...)
			b = b[n:]
		case num == fieldDimGroups && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return fmt.Errorf("%w: dim_groups: %v", ErrBadBatch, protowire.ParseError(n))
			}
			// Several occurrences of a message field merge, as proto does.
			if err := decodeDimGroups(v, &out.dims); err != nil {
				return err
			}
			b = b[n:]
		case num == fieldTimes:
			out.v1Times, b, err = consumeVarints(out.v1Times, typ, b, "times_ms")
		case num == fieldMinutes:
			out.minutes, b, err = consumeVarints(out.minutes, typ, b, "minutes")
		case num >= fieldRequests && num <= fieldBytesSent:
			c := num - fieldRequests
			cols[c], b, err = consumeVarints(cols[c], typ, b, "counters")
		case typ == protowire.VarintType && (num == fieldRawSeq || num == fieldDeadLetters || num == fieldReceived || num == fieldFormat):
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return fmt.Errorf("%w: field %d: %v", ErrBadBatch, num, protowire.ParseError(n))
			}
			b = b[n:]
			switch num {
			case fieldRawSeq:
				out.rawSeq = v
			case fieldDeadLetters:
				out.deadLetters = v
			case fieldReceived:
				out.receivedMS = int64(v)
			case fieldFormat:
				out.format = uint32(v)
			}
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return fmt.Errorf("%w: field %d: %v", ErrBadBatch, num, protowire.ParseError(n))
			}
			b = b[n:]
		}
		if err != nil {
			return err
		}
	}
	switch out.format {
	case 0:
		return out.fromV1(v1Addrs)
	case 2:
	default:
		return fmt.Errorf("%w: format %d is unknown to this release", ErrBadBatch, out.format)
	}
	var err error
	if out.counters, err = groupCounters(out.counters, len(out.minutes), out.addrs, &cols, "address"); err != nil {
		return err
	}
	return out.dims.finish()
}

// groupCounters checks that g groups have 16 key bytes and one value per
// class column each, and appends their counters to dst.
func groupCounters(dst []counts.Counters, g int, keys []byte, cols *[counts.NumClasses][]uint64, what string) ([]counts.Counters, error) {
	if len(keys) != g*counts.AddrLen {
		return dst, fmt.Errorf("%w: %d %s bytes for %d groups", ErrBadBatch, len(keys), what, g)
	}
	for c, col := range cols {
		if len(col) != g {
			return dst, fmt.Errorf("%w: %d values of %s for %d groups (%s)", ErrBadBatch, len(col), counts.Class(c), g, what)
		}
	}
	for i := range g {
		dst = append(dst, counts.Counters{
			Requests: cols[0][i], Status4xx: cols[1][i], Status5xx: cols[2][i], AuthFailures: cols[3][i], Bytes: cols[4][i],
		})
	}
	return dst, nil
}

// fromV1 turns format 1 records into groups of one request each.
func (b *batch) fromV1(addrs []byte) error {
	if len(addrs) != len(b.v1Times)*counts.AddrLen {
		return fmt.Errorf("%w: %d address bytes for %d times", ErrBadBatch, len(addrs), len(b.v1Times))
	}
	b.addrs = addrs
	for _, t := range b.v1Times {
		b.minutes = append(b.minutes, floorDiv(t, 60_000))
		b.counters = append(b.counters, counts.Counters{Requests: 1})
	}
	return nil
}

// consumeVarints reads a repeated varint field, packed or not.
func consumeVarints[T int64 | uint64](dst []T, typ protowire.Type, b []byte, name string) ([]T, []byte, error) {
	switch typ {
	case protowire.VarintType:
		v, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return dst, nil, fmt.Errorf("%w: %s: %v", ErrBadBatch, name, protowire.ParseError(n))
		}
		return append(dst, T(v)), b[n:], nil
	case protowire.BytesType:
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return dst, nil, fmt.Errorf("%w: %s: %v", ErrBadBatch, name, protowire.ParseError(n))
		}
		for len(v) > 0 {
			x, m := protowire.ConsumeVarint(v)
			if m < 0 {
				return dst, nil, fmt.Errorf("%w: %s: %v", ErrBadBatch, name, protowire.ParseError(m))
			}
			dst = append(dst, T(x))
			v = v[m:]
		}
		return dst, b[n:], nil
	}
	return dst, nil, fmt.Errorf("%w: %s has wire type %d", ErrBadBatch, name, typ)
}
