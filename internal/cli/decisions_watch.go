package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
)

// DefaultGRPCAddr is the gRPC address `decisions watch` uses without
// --grpc-addr.
const DefaultGRPCAddr = "localhost:9090"

// watchDecisions prints one line per WatchDecisions event until ctx ends.
// A stream the server ends (it stopped, or this client fell behind) or a
// lost connection is opened again with backoff, resuming after the last
// revision received; when the server cannot resume from it, with a new
// snapshot. Other errors (a bad filter, a missing token) end the command.
func watchDecisions(ctx context.Context, addr string, req *logtallyv1.WatchDecisionsRequest, asJSON bool, stdout, stderr io.Writer) error {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("decisions watch: %w", err)
	}
	defer cc.Close()
	client := logtallyv1.NewDecisionServiceClient(cc)
	retry := newReconnectBackoff()
	for {
		got := false
		err := func() error {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			stream, err := client.WatchDecisions(ctx, req)
			if err != nil {
				return err
			}
			live := false
			for {
				m, err := stream.Recv()
				if err != nil {
					return err
				}
				got = true
				// Resume after the end of the snapshot (or catch-up) and
				// the live events; not from within a catch-up, which
				// leaves out what came and went.
				if m.Event == logtallyv1.DecisionEvent_DECISION_EVENT_SNAPSHOT_END {
					live = true
				}
				if live {
					req.AfterRevision = m.Revision
				}
				line := formatDecisionEvent(m)
				if asJSON {
					b, err := protojson.Marshal(m)
					if err != nil {
						return err
					}
					line = string(b)
				}
				if _, err := fmt.Fprintln(stdout, line); err != nil {
					return err
				}
			}
		}()
		if ctx.Err() != nil {
			return nil
		}
		switch status.Code(err) {
		case codes.Unavailable, codes.ResourceExhausted, codes.Internal, codes.Unknown, codes.Aborted:
			fmt.Fprintf(stderr, "decisions watch: %v; reconnecting\n", status.Convert(err).Message())
		case codes.OutOfRange:
			fmt.Fprintf(stderr, "decisions watch: %v; starting over with a snapshot\n", status.Convert(err).Message())
			req.AfterRevision = 0
			continue
		default:
			return fmt.Errorf("decisions watch %s: %w", addr, err)
		}
		if !retry.sleep(ctx, got) {
			return nil
		}
	}
}

// formatDecisionEvent is the line of one event:
//
//	2026-12-02T12:58:35Z snapshot id=42 key=203.0.113.7/32 rule=manual until=2026-12-02T16:58:35Z reason="…"
//	2026-12-02T12:58:35Z end      revision=57
func formatDecisionEvent(m *logtallyv1.WatchDecisionsResponse) string {
	at := m.GetAt().AsTime().UTC().Format(time.RFC3339)
	event := strings.ToLower(strings.TrimPrefix(m.GetEvent().String(), "DECISION_EVENT_"))
	if m.GetEvent() == logtallyv1.DecisionEvent_DECISION_EVENT_SNAPSHOT_END {
		return fmt.Sprintf("%s %-8s revision=%d", at, "end", m.GetRevision())
	}
	d := m.GetDecision()
	var b strings.Builder
	fmt.Fprintf(&b, "%s %-8s id=%d key=%s rule=%s until=%s", at, event, d.GetId(), d.GetKey(), d.GetRule(), d.GetUntil().AsTime().UTC().Format(time.RFC3339))
	if d.GetSimulated() {
		b.WriteString(" simulated")
	}
	if d.GetReason() != "" {
		fmt.Fprintf(&b, " reason=%q", d.GetReason())
	}
	return b.String()
}
