package query

import (
	"context"
	"errors"
	"math"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
	"github.com/logtally/logtally/internal/decisions"
	"github.com/logtally/logtally/internal/windows"
)

// decisionServer implements logtally.v1.DecisionService over the same
// store, validation and allow list as the HTTP decisions API. Its writes
// need what every gRPC call needs (the query token, when set).
type decisionServer struct {
	logtallyv1.UnimplementedDecisionServiceServer
	s *Service
}

func (g *decisionServer) ListDecisions(ctx context.Context, req *logtallyv1.ListDecisionsRequest) (_ *logtallyv1.ListDecisionsResponse, err error) {
	defer func(start time.Time) { g.s.observe("decisions_list", "grpc", start, err) }(time.Now())
	f, err := newDecisionFilter(req.GetRule(), req.GetContains(), req.GetWithin(), req.GetIncludeSimulated())
	if err != nil {
		return nil, decisionStatus(err)
	}
	ds := g.s.listDecisions(f)
	out := &logtallyv1.ListDecisionsResponse{Mode: g.s.mode(), Decisions: make([]*logtallyv1.Decision, len(ds))}
	for i := range ds {
		out.Decisions[i] = decisionToProto(&ds[i])
	}
	return out, nil
}

func (g *decisionServer) CreateDecision(ctx context.Context, req *logtallyv1.CreateDecisionRequest) (_ *logtallyv1.CreateDecisionResponse, err error) {
	defer func(start time.Time) { g.s.observe("decisions_create", "grpc", start, err) }(time.Now())
	d, dText := time.Duration(-1), "(none)"
	if pd := req.GetDuration(); pd != nil {
		dText = pd.String()
		if pd.CheckValid() == nil {
			d, dText = pd.AsDuration(), pd.AsDuration().String()
		}
	}
	created, err := g.s.ban(ctx, req.GetKey(), d, dText, req.GetReason(), callerOf(ctx))
	if err != nil {
		return nil, decisionStatus(err)
	}
	return &logtallyv1.CreateDecisionResponse{Decision: decisionToProto(&created)}, nil
}

func (g *decisionServer) DeleteDecision(ctx context.Context, req *logtallyv1.DeleteDecisionRequest) (_ *logtallyv1.DeleteDecisionResponse, err error) {
	defer func(start time.Time) { g.s.observe("decisions_delete", "grpc", start, err) }(time.Now())
	d, err := g.s.unban(ctx, req.GetId(), callerOf(ctx))
	if err != nil {
		return nil, decisionStatus(err)
	}
	return &logtallyv1.DeleteDecisionResponse{Decision: decisionToProto(&d)}, nil
}

// WatchDecisions subscribes to the index and takes its state at the same
// instant (decisions.Store.Subscribe), so the live changes begin exactly
// where the snapshot ends. It returns when the client goes, the service
// stops (Unavailable: Stop cancels s.ctx before GracefulStop, so open
// streams never hold it up) or the client falls behind by more than the
// subscription's buffer (ResourceExhausted; the store never waits).
func (g *decisionServer) WatchDecisions(req *logtallyv1.WatchDecisionsRequest, stream grpc.ServerStreamingServer[logtallyv1.WatchDecisionsResponse]) error {
	f, err := newDecisionFilter(req.GetRule(), req.GetContains(), req.GetWithin(), req.GetIncludeSimulated())
	if err != nil {
		return decisionStatus(err)
	}
	st := g.s.decisions
	var sub *decisions.Subscription
	var cursor uint64
	send := func(ev logtallyv1.DecisionEvent, d *decisions.Decision, rev uint64, at time.Time) error {
		if g.s.ctx.Err() != nil { // stopping during a long snapshot
			return status.Error(codes.Unavailable, "the query service is stopping")
		}
		msg := &logtallyv1.WatchDecisionsResponse{Event: ev, Revision: rev, At: timestamppb.New(at)}
		if d != nil {
			msg.Decision = decisionToProto(d)
		}
		return stream.Send(msg)
	}
	if after := req.GetAfterRevision(); after > 0 {
		var changes []decisions.Change
		changes, cursor, sub, err = st.SubscribeSince(after, g.s.cfg.DecisionsWatchBuffer)
		if errors.Is(err, decisions.ErrRevisionTooOld) {
			return status.Errorf(codes.OutOfRange, "after_revision %d: %v; watch again without it", after, err)
		}
		defer sub.Close()
		for i := range changes {
			if c := &changes[i]; f.match(&c.Decision) {
				if err := send(eventOf(c.Op), &c.Decision, c.Rev, c.At); err != nil {
					return err
				}
			}
		}
	} else {
		var snap []decisions.Decision
		snap, cursor, sub = st.Subscribe(g.s.cfg.DecisionsWatchBuffer)
		defer sub.Close()
		for i := range snap {
			if d := &snap[i]; f.match(d) {
				if err := send(logtallyv1.DecisionEvent_DECISION_EVENT_SNAPSHOT, d, d.ID, d.Created); err != nil {
					return err
				}
			}
		}
	}
	if err := send(logtallyv1.DecisionEvent_DECISION_EVENT_SNAPSHOT_END, nil, cursor, g.s.now()); err != nil {
		return err
	}
	for {
		select {
		case <-stream.Context().Done():
			return status.FromContextError(stream.Context().Err()).Err()
		case <-g.s.ctx.Done():
			return status.Error(codes.Unavailable, "the query service is stopping")
		case <-sub.Done():
			if errors.Is(sub.Err(), decisions.ErrSlow) {
				return status.Errorf(codes.ResourceExhausted, "this stream fell more than %d changes behind the decisions index (-decisions.watch-buffer); watch again, with after_revision to resume", g.s.cfg.DecisionsWatchBuffer)
			}
			return status.Errorf(codes.Unavailable, "%v", sub.Err())
		case c := <-sub.Changes():
			// A resumed stream skips what the client saw already (an index
			// behind the client's revision delivers it live).
			if c.Rev <= cursor || !f.match(&c.Decision) {
				continue
			}
			if err := send(eventOf(c.Op), &c.Decision, c.Rev, c.At); err != nil {
				return err
			}
		}
	}
}

func eventOf(op decisions.Op) logtallyv1.DecisionEvent {
	switch op {
	case decisions.OpNew:
		return logtallyv1.DecisionEvent_DECISION_EVENT_NEW
	case decisions.OpDeleted:
		return logtallyv1.DecisionEvent_DECISION_EVENT_DELETED
	case decisions.OpExpired:
		return logtallyv1.DecisionEvent_DECISION_EVENT_EXPIRED
	}
	return logtallyv1.DecisionEvent_DECISION_EVENT_UNSPECIFIED
}

// callerOf names the caller in the decisions it makes or removes, as the
// HTTP API does ("api <address>").
func callerOf(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return "grpc " + p.Addr.String()
	}
	return "grpc"
}

// decisionStatus is the gRPC status of an error of the decisions API
// (decisionCodes); an allow-listed key also carries an ErrorInfo with
// reason KEY_ALLOW_LISTED.
func decisionStatus(err error) error {
	_, code := decisionCodes(err)
	st := status.New(code, err.Error())
	if errors.Is(err, decisions.ErrAllowed) {
		if withInfo, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: "KEY_ALLOW_LISTED", Domain: "logtally"}); derr == nil {
			st = withInfo
		}
	}
	return st.Err()
}

func decisionToProto(d *decisions.Decision) *logtallyv1.Decision {
	out := &logtallyv1.Decision{
		Id: d.ID, Rule: d.Rule, Key: d.Key, Count: d.Count, Threshold: d.Threshold, Class: d.Class,
		Origin: d.Origin, Reason: d.Reason, By: d.By,
		Created: timestamppb.New(d.Created), Until: timestamppb.New(d.Until),
		Offence: uint32(min(max(d.Offence, 0), math.MaxUint32)), Simulated: d.Simulated,
	}
	if r, err := windows.ParseDuration(d.Range); d.Range != "" && err == nil {
		out.Range = durationpb.New(r)
	}
	// Window is windows.Range.String: "[from, to)".
	if w, ok := strings.CutPrefix(d.Window, "["); ok {
		if w, ok = strings.CutSuffix(w, ")"); ok {
			if from, to, ok := strings.Cut(w, ", "); ok {
				f, ferr := time.Parse(time.RFC3339, from)
				t, terr := time.Parse(time.RFC3339, to)
				if ferr == nil && terr == nil {
					out.WindowFrom, out.WindowTo = timestamppb.New(f), timestamppb.New(t)
				}
			}
		}
	}
	return out
}
