package query

import (
	"context"
	"errors"
	"math"
	"net/netip"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
)

// grpcServer implements logtally.v1.QueryService on the engine.
type grpcServer struct {
	logtallyv1.UnimplementedQueryServiceServer
	s *Service
}

// RangeSpecFromProto converts a TimeRange: last, or from and to; nil (or
// empty) means the default range.
func RangeSpecFromProto(tr *logtallyv1.TimeRange) (RangeSpec, error) {
	var sp RangeSpec
	if tr == nil {
		return sp, nil
	}
	if tr.Last != nil {
		if tr.From != nil || tr.To != nil {
			return sp, invalidf("give either last or from and to, not both")
		}
		if err := tr.Last.CheckValid(); err != nil {
			return sp, invalidf("last is not a valid duration: %v", err)
		}
		sp.Last, sp.HasLast = tr.Last.AsDuration(), true
		return sp, nil
	}
	if (tr.From == nil) != (tr.To == nil) {
		return sp, invalidf("from and to must be given together")
	}
	if tr.From == nil {
		return sp, nil
	}
	if err := tr.From.CheckValid(); err != nil {
		return sp, invalidf("from is not a valid timestamp: %v", err)
	}
	if err := tr.To.CheckValid(); err != nil {
		return sp, invalidf("to is not a valid timestamp: %v", err)
	}
	sp.From, sp.To = tr.From.AsTime().UTC(), tr.To.AsTime().UTC()
	if sp.From.IsZero() || sp.To.IsZero() {
		return sp, invalidf("from and to must be given together")
	}
	return sp, nil
}

func (g *grpcServer) resolve(tr *logtallyv1.TimeRange) (Range, RangeSpec, error) {
	sp, err := RangeSpecFromProto(tr)
	if err != nil {
		return Range{}, sp, err
	}
	r, err := sp.Resolve(g.s.now(), g.s.finest, g.s.cfg.DefaultLast)
	return r, sp, err
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
	r, _, err := g.resolve(req.GetRange())
	if err != nil {
		return nil, toStatus(err)
	}
	res, err := g.s.Top(ctx, r, topNFromProto(req.GetN()))
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
	r, _, err := g.resolve(req.GetRange())
	if err != nil {
		return nil, toStatus(err)
	}
	step := g.s.finest
	if req.Step != nil {
		if err := req.Step.CheckValid(); err != nil {
			return nil, toStatus(invalidf("step is not a valid duration: %v", err))
		}
		step = req.Step.AsDuration()
	}
	res, err := g.s.Series(ctx, ip, r, step)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &logtallyv1.IPSeriesResponse{
		Ip:     res.IP.String(),
		Count:  res.Count,
		From:   timestamppb.New(res.Range.From),
		To:     timestamppb.New(res.Range.To),
		Series: make([]*logtallyv1.SeriesPoint, len(res.Series)),
	}
	for i, p := range res.Series {
		out.Series[i] = &logtallyv1.SeriesPoint{Start: timestamppb.New(p.Start), Count: p.Count}
	}
	return out, nil
}

func (g *grpcServer) Totals(ctx context.Context, req *logtallyv1.TotalsRequest) (_ *logtallyv1.TotalsResponse, err error) {
	defer func(start time.Time) { g.s.observe("totals", "grpc", start, err) }(time.Now())
	r, _, err := g.resolve(req.GetRange())
	if err != nil {
		return nil, toStatus(err)
	}
	res, err := g.s.Totals(ctx, r)
	if err != nil {
		return nil, toStatus(err)
	}
	return &logtallyv1.TotalsResponse{
		Requests:    res.Requests,
		DistinctIps: res.DistinctIPs,
		DeadLetters: res.DeadLetters,
		Late:        res.Late,
		From:        timestamppb.New(res.Range.From),
		To:          timestamppb.New(res.Range.To),
	}, nil
}

func (g *grpcServer) WatchTop(req *logtallyv1.WatchTopRequest, stream grpc.ServerStreamingServer[logtallyv1.WatchTopResponse]) error {
	sp, err := RangeSpecFromProto(req.GetRange())
	if err != nil {
		return toStatus(err)
	}
	err = g.s.WatchTop(stream.Context(), sp, topNFromProto(req.GetN()), func(res TopResult) error {
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

func topToProto(res TopResult) *logtallyv1.TopResponse {
	out := &logtallyv1.TopResponse{
		From:  timestamppb.New(res.Range.From),
		To:    timestamppb.New(res.Range.To),
		Items: make([]*logtallyv1.IPCount, len(res.Items)),
	}
	for i, it := range res.Items {
		out.Items[i] = &logtallyv1.IPCount{Ip: it.IP.String(), Count: it.Count}
	}
	return out
}

// parseIP parses a client-given IP: zone dropped, IPv4-mapped unmapped.
func parseIP(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, invalidf("ip %q is not an IP address", s)
	}
	return a.WithZone("").Unmap(), nil
}

// toStatus maps engine errors to gRPC status codes.
func toStatus(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrInvalidArgument):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ErrUnavailable):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	default:
		return status.Error(codes.Internal, err.Error())
	}
}
