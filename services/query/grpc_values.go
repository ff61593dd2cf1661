package query

import (
	"context"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/internal/dims"
	"github.com/logtally/logtally/internal/windows"
)

// topQueryFromProto reads the n, class, status and cidr of a TopRequest or
// WatchTopRequest as topQuery reads HTTP's parameters: an empty string is
// an absent parameter.
func topQueryFromProto(n uint32, class, status, cidr string) (windows.TopQuery, error) {
	tq := windows.TopQuery{N: topNFromProto(n)}
	var err error
	if tq.Class, err = classOf(class, status, status != "", "ip"); err != nil {
		return windows.TopQuery{}, err
	}
	if cidr != "" {
		if tq.Prefix, err = parseCIDR(cidr); err != nil {
			return windows.TopQuery{}, err
		}
	}
	return tq, nil
}

// valuesQuery is a parsed TopValuesRequest or WatchTopValuesRequest.
type valuesQuery struct {
	dim   dims.Dim
	n     int
	class counts.Class
}

func valuesQueryFromProto(field string, n uint32, class, status string) (valuesQuery, error) {
	d, err := dims.Parse(field)
	if err != nil {
		return valuesQuery{}, windows.Invalidf("field %q is not known: want one of %v (the IPs are Top)", field, dims.Names())
	}
	vq := valuesQuery{dim: d, n: topNFromProto(n)}
	if vq.class, err = classOf(class, status, status != "", field); err != nil {
		return valuesQuery{}, err
	}
	return vq, nil
}

// valuesOp is the metrics label of a top query over field: top_<field>,
// or top_values for a name that is no field (labels must stay few
// whatever clients send).
func valuesOp(field string) string {
	if d, err := dims.Parse(field); err == nil {
		return "top_" + d.String()
	}
	return "top_values"
}

// TopValues is the gRPC form of GET /api/v1/top?by=<field>.
func (g *grpcServer) TopValues(ctx context.Context, req *logtallyv1.TopValuesRequest) (_ *logtallyv1.TopValuesResponse, err error) {
	defer func(start time.Time) { g.s.observe(valuesOp(req.GetField()), "grpc", start, err) }(time.Now())
	vq, err := valuesQueryFromProto(req.GetField(), req.GetN(), req.GetClass(), req.GetStatus())
	if err != nil {
		return nil, toStatus(err)
	}
	r, err := g.resolve(req.GetRange())
	if err != nil {
		return nil, toStatus(err)
	}
	if err := g.s.waitStarted(); err != nil {
		return nil, toStatus(err)
	}
	res, err := g.s.values.Top(ctx, r, vq.dim, vq.class, vq.n)
	if err != nil {
		return nil, toStatus(err)
	}
	return valuesToProto(res), nil
}

// WatchTopValues sends TopValues at once and again whenever a field window
// of the range changes (windows.Watch over the dims buckets, as
// /api/v1/watch/fields), identical answers once.
func (g *grpcServer) WatchTopValues(req *logtallyv1.WatchTopValuesRequest, stream grpc.ServerStreamingServer[logtallyv1.WatchTopValuesResponse]) error {
	sp, err := RangeSpecFromProto(req.GetRange())
	if err != nil {
		return toStatus(err)
	}
	vq, err := valuesQueryFromProto(req.GetField(), req.GetN(), req.GetClass(), req.GetStatus())
	if err != nil {
		return toStatus(err)
	}
	if vq.n > g.s.cfg.MaxN {
		return toStatus(windows.Invalidf("n must be between 1 and %d, got %d", g.s.cfg.MaxN, vq.n))
	}
	if err := g.s.waitStarted(); err != nil {
		return toStatus(err)
	}
	err = windows.Watch(stream.Context(), g.s.values.Reader(), g.s.watchSpec(sp), func(ctx context.Context, rg windows.Range) (windows.ValuesResult, error) {
		return g.s.values.Top(ctx, rg, vq.dim, vq.class, vq.n)
	}, sameValues, func(res windows.ValuesResult) error {
		return stream.Send(&logtallyv1.WatchTopValuesResponse{Top: valuesToProto(res)})
	})
	if err != nil {
		if _, ok := status.FromError(err); ok {
			return err
		}
		return toStatus(err)
	}
	return nil
}

func sameValues(a, b windows.ValuesResult) bool {
	return a.Range.From.Equal(b.Range.From) && a.Range.To.Equal(b.Range.To) && a.Dim == b.Dim && a.Class == b.Class &&
		a.Total == b.Total && a.Other == b.Other && slices.Equal(a.Items, b.Items)
}

func valuesToProto(res windows.ValuesResult) *logtallyv1.TopValuesResponse {
	out := &logtallyv1.TopValuesResponse{
		From:  timestamppb.New(res.Range.From),
		To:    timestamppb.New(res.Range.To),
		Field: res.Dim.String(),
		Class: res.Class.String(),
		Items: make([]*logtallyv1.ValueCount, len(res.Items)),
		Other: res.Other,
		Total: countersToProto(res.Total),
	}
	for i, it := range res.Items {
		out.Items[i] = &logtallyv1.ValueCount{Value: it.Value, Known: it.Known, Count: it.Count, Counters: countersToProto(it.Counters)}
	}
	return out
}
