package query

import (
	"context"
	"errors"
	"math"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/internal/windows"
)

// grpcServer implements logtally.v1.QueryService on the read model.
type grpcServer struct {
	logtallyv1.UnimplementedQueryServiceServer
	s *Service
}

// RangeSpecFromProto converts a TimeRange: last, or from and to; nil (or
// empty) means the default range.
func RangeSpecFromProto(tr *logtallyv1.TimeRange) (windows.RangeSpec, error) {
	var sp windows.RangeSpec
	if tr == nil {
		return sp, nil
	}
	if tr.Last != nil {
		if tr.From != nil || tr.To != nil {
			return sp, windows.Invalidf("give either last or from and to, not both")
		}
		if err := tr.Last.CheckValid(); err != nil {
			return sp, windows.Invalidf("last is not a valid duration: %w", err)
		}
		sp.Last, sp.HasLast = tr.Last.AsDuration(), true
		return sp, nil
	}
	if (tr.From == nil) != (tr.To == nil) {
		return sp, windows.Invalidf("from and to must be given together")
	}
	if tr.From == nil {
		return sp, nil
	}
	if err := tr.From.CheckValid(); err != nil {
		return sp, windows.Invalidf("from is not a valid timestamp: %w", err)
	}
	if err := tr.To.CheckValid(); err != nil {
		return sp, windows.Invalidf("to is not a valid timestamp: %w", err)
	}
	sp.From, sp.To = tr.From.AsTime().UTC(), tr.To.AsTime().UTC()
	if sp.From.IsZero() || sp.To.IsZero() {
		return sp, windows.Invalidf("from and to must be given together")
	}
	return sp, nil
}

func (g *grpcServer) resolve(tr *logtallyv1.TimeRange) (windows.Range, error) {
	sp, err := RangeSpecFromProto(tr)
	if err != nil {
		return windows.Range{}, err
	}
	return sp.Resolve(g.s.now(), g.s.finest, g.s.cfg.DefaultLast)
}

// topNFromProto maps the proto's n: 0 (absent) means 10.
func topNFromProto(n uint32) int {
	if n == 0 {
		return 10
	}
	if uint64(n) > uint64(math.MaxInt) {
		return math.MaxInt
	}
	return int(n)
}

func (g *grpcServer) Top(ctx context.Context, req *logtallyv1.TopRequest) (_ *logtallyv1.TopResponse, err error) {
	defer func(start time.Time) { g.s.observe("top", "grpc", start, err) }(time.Now())
	tq, err := topQueryFromProto(req.GetN(), req.GetClass(), req.GetStatus(), req.GetCidr())
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
	res, err := g.s.reader.Top(ctx, r, tq)
	if err != nil {
		return nil, toStatus(err)
	}
	return topToProto(res), nil
}

func (g *grpcServer) IPSeries(ctx context.Context, req *logtallyv1.IPSeriesRequest) (_ *logtallyv1.IPSeriesResponse, err error) {
	defer func(start time.Time) { g.s.observe("series", "grpc", start, err) }(time.Now())
	ip, err := parseIP(req.GetIp())
	if err != nil {
		return nil, toStatus(err)
	}
	r, err := g.resolve(req.GetRange())
	if err != nil {
		return nil, toStatus(err)
	}
	step := g.s.finest
	if req.Step != nil {
		if err := req.Step.CheckValid(); err != nil {
			return nil, toStatus(windows.Invalidf("step is not a valid duration: %w", err))
		}
		step = req.Step.AsDuration()
	}
	if err := g.s.waitStarted(); err != nil {
		return nil, toStatus(err)
	}
	res, err := g.s.reader.Series(ctx, ip, r, step)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &logtallyv1.IPSeriesResponse{
		Ip:       res.IP.String(),
		Count:    res.Counters.Requests,
		Counters: countersToProto(res.Counters),
		From:     timestamppb.New(res.Range.From),
		To:       timestamppb.New(res.Range.To),
		Series:   make([]*logtallyv1.SeriesPoint, len(res.Series)),
	}
	for i, p := range res.Series {
		out.Series[i] = &logtallyv1.SeriesPoint{Start: timestamppb.New(p.Start), Count: p.Counters.Requests, Counters: countersToProto(p.Counters)}
	}
	return out, nil
}

func (g *grpcServer) Totals(ctx context.Context, req *logtallyv1.TotalsRequest) (_ *logtallyv1.TotalsResponse, err error) {
	defer func(start time.Time) { g.s.observe("totals", "grpc", start, err) }(time.Now())
	r, err := g.resolve(req.GetRange())
	if err != nil {
		return nil, toStatus(err)
	}
	if err := g.s.waitStarted(); err != nil {
		return nil, toStatus(err)
	}
	res, err := g.s.reader.Totals(ctx, r)
	if err != nil {
		return nil, toStatus(err)
	}
	return &logtallyv1.TotalsResponse{
		Requests:    res.Counters.Requests,
		DistinctIps: res.DistinctIPs,
		DeadLetters: res.DeadLetters,
		Late:        res.Late,
		From:        timestamppb.New(res.Range.From),
		To:          timestamppb.New(res.Range.To),
		Counters:    countersToProto(res.Counters),
		LostBatches: res.LostBatches,
	}, nil
}

func (g *grpcServer) WatchTop(req *logtallyv1.WatchTopRequest, stream grpc.ServerStreamingServer[logtallyv1.WatchTopResponse]) error {
	sp, err := RangeSpecFromProto(req.GetRange())
	if err != nil {
		return toStatus(err)
	}
	tq, err := topQueryFromProto(req.GetN(), req.GetClass(), req.GetStatus(), req.GetCidr())
	if err != nil {
		return toStatus(err)
	}
	err = g.s.watchTop(stream.Context(), sp, tq, func(res windows.TopResult) error {
		return stream.Send(&logtallyv1.WatchTopResponse{Top: topToProto(res)})
	})
	if err != nil {
		if _, ok := status.FromError(err); ok {
			return err
		}
		return toStatus(err)
	}
	return nil
}

func topToProto(res windows.TopResult) *logtallyv1.TopResponse {
	out := &logtallyv1.TopResponse{
		From:  timestamppb.New(res.Range.From),
		To:    timestamppb.New(res.Range.To),
		Class: res.Class.String(),
		Items: make([]*logtallyv1.IPCount, len(res.Items)),
	}
	for i, it := range res.Items {
		out.Items[i] = &logtallyv1.IPCount{Ip: it.IP.String(), Count: it.Count, Counters: countersToProto(it.Counters)}
	}
	return out
}

func countersToProto(c counts.Counters) *logtallyv1.ClassCounters {
	return &logtallyv1.ClassCounters{Requests: c.Requests, Status_4Xx: c.Status4xx, Status_5Xx: c.Status5xx, AuthFailures: c.AuthFailures, Bytes: c.Bytes}
}

// toStatus maps errors to gRPC status codes.
func toStatus(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, windows.ErrInvalidArgument):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, windows.ErrUnavailable):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	default:
		return status.Error(codes.Internal, err.Error())
	}
}
