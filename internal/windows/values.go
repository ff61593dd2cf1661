package windows

import (
	"cmp"
	"context"
	"slices"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/internal/dims"
	"github.com/logtally/logtally/internal/topology"
)

// Values reads the windows of the fields beyond the IP (internal/dims):
// a Reader over the dims buckets, whose entries are field values instead
// of addresses, and the names bucket that holds the text of hashed values.
// Everything the Reader does (index, cache, ranges, exact top-N) applies
// unchanged; a field is one key range (dims.Range).
type Values struct {
	r     *Reader
	js    jetstream.JetStream
	log   hclog.Logger
	names *Names
}

// NewValues returns a reader of the dims windows of resolutions.
func NewValues(cfg Config, js jetstream.JetStream, partitions int, resolutions []topology.Resolution, log hclog.Logger) (*Values, error) {
	r, err := New(cfg, js, partitions, topology.WithDataset(resolutions, topology.DimsDataset), log.Named("values"))
	if err != nil {
		return nil, err
	}
	return &Values{r: r, js: js, log: log}, nil
}

// Reader is the underlying reader of the dims buckets.
func (v *Values) Reader() *Reader { return v.r }

// Start opens the buckets and starts the index watches.
func (v *Values) Start(ctx context.Context) error {
	names, err := OpenNames(ctx, v.js, v.log)
	if err != nil {
		return err
	}
	v.names = names
	return v.r.Start(ctx)
}

// Stop ends the watches.
func (v *Values) Stop(ctx context.Context) error { return v.r.Stop(ctx) }

// ValueCount is one value of a ValuesResult. Known is false for a hashed
// value whose text is not (or no longer) in the names bucket: Value is
// then "#" and the hex of its key.
type ValueCount struct {
	Value    string
	Known    bool
	Count    uint64
	Counters counts.Counters
}

// ValuesResult is the answer of Top: the N values of a field with the
// highest counter of the class, then what the other values of the field
// add up to (exact: the field's total over the range minus the listed).
type ValuesResult struct {
	Range Range
	Dim   dims.Dim
	Class counts.Class
	Items []ValueCount
	// Total is the field's counters over the range, over every value.
	Total counts.Counters
	// Other is the ranked class summed over the values not listed.
	Other uint64
}

// Top returns the n values of field d with the highest counter of the
// class over rg, and the exact remainder.
func (v *Values) Top(ctx context.Context, rg Range, d dims.Dim, class counts.Class, n int) (ValuesResult, error) {
	if !d.Valid() {
		return ValuesResult{}, Invalidf("unknown field %d", byte(d))
	}
	within := dims.Range(d)
	// The values are two key ranges (inline, hashed); the field's other
	// entry, after both, is never listed but counts in the total.
	var items []IPCount
	for _, p := range dims.Values(d) {
		top, err := v.r.Top(ctx, rg, TopQuery{N: n, Class: class, Prefix: p})
		if err != nil {
			return ValuesResult{}, err
		}
		items = append(items, top.Items...)
	}
	slices.SortFunc(items, func(a, b IPCount) int {
		if a.Count != b.Count {
			return cmp.Compare(b.Count, a.Count)
		}
		return a.IP.Compare(b.IP)
	})
	top := TopResult{Items: items[:min(n, len(items))]}
	// One network of the field's whole range is its total.
	tot, err := v.r.TopPrefixes(ctx, rg, PrefixQuery{N: 1, Class: counts.Requests, V4Bits: 32, V6Bits: within.Bits(), Within: within})
	if err != nil {
		return ValuesResult{}, err
	}
	res := ValuesResult{Range: rg, Dim: d, Class: class, Items: make([]ValueCount, len(top.Items))}
	if len(tot.Items) > 0 {
		res.Total = tot.Items[0].Counters
	}
	listed := uint64(0)
	for i, it := range top.Items {
		k := it.IP.As16()
		res.Items[i] = ValueCount{Count: it.Count, Counters: it.Counters}
		res.Items[i].Value, res.Items[i].Known = v.names.Text(ctx, k)
		listed += it.Count
	}
	if t := res.Total.Get(class); t > listed {
		res.Other = t - listed
	}
	return res, nil
}
