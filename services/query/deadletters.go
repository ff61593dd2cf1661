package query

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
	"github.com/logtally/logtally/internal/obs"
	"github.com/logtally/logtally/internal/topology"
	"github.com/logtally/logtally/internal/windows"
)

// Dead-letter listing limits.
const (
	// MaxDeadLetters is the largest n of GET /api/v1/dead-letters.
	MaxDeadLetters = 500
	// DeadLineDisplayBytes is how much of a rejected line the answer shows,
	// before escaping.
	DeadLineDisplayBytes = 300
)

// DeadLetter is one rejected line as the dead-letters call shows it.
type DeadLetter struct {
	Seq      uint64
	Received time.Time
	Source   string
	Peer     string
	Reason   string
	// Length is the length of the original line in bytes (the stream may
	// hold only its start).
	Length uint64
	// Line is the start of the line, escaped: printable UTF-8 as it is,
	// anything else as \t, \n, \xNN or \u…; Truncated tells whether it was
	// cut.
	Line      string
	Truncated bool
}

type deadLettersJSON struct {
	Items []deadLetterJSON `json:"items"`
}

type deadLetterJSON struct {
	Seq       uint64 `json:"seq"`
	Received  string `json:"received"`
	Source    string `json:"source"`
	Peer      string `json:"peer"`
	Reason    string `json:"reason"`
	Length    uint64 `json:"length"`
	Line      string `json:"line"`
	Truncated bool   `json:"truncated"`
}

// DeadLetters returns the n latest messages of the dead-letter stream,
// newest first. It reads them from the end of the stream by sequence, so it
// costs n gets whatever the stream's size.
func (s *Service) DeadLetters(ctx context.Context, n int) ([]DeadLetter, error) {
	if n < 1 || n > MaxDeadLetters {
		return nil, windows.Invalidf("n must be between 1 and %d, got %d", MaxDeadLetters, n)
	}
	if s.stopped.Load() {
		return nil, windows.Unavailable("query service is stopped", nil)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	st, err := s.deps.NATS.JS.Stream(ctx, topology.DeadStream)
	if err != nil {
		return nil, windows.Unavailable("open stream "+topology.DeadStream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, windows.Unavailable("stream info of "+topology.DeadStream, err)
	}
	first, last := info.State.FirstSeq, info.State.LastSeq
	out := make([]DeadLetter, 0, min(n, int(min(info.State.Msgs, uint64(MaxDeadLetters)))))
	if info.State.Msgs == 0 || last == 0 {
		return out, nil
	}
	// Deleted messages leave gaps; look at a bounded number of sequences.
	budget := n + 1000
	for seq := last; seq >= first && seq > 0 && len(out) < n && budget > 0; seq-- {
		budget--
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, windows.Unavailable(fmt.Sprintf("read %s message %d", topology.DeadStream, seq), err)
		}
		var dl logtallyv1.DeadLetter
		if err := proto.Unmarshal(m.Data, &dl); err != nil {
			out = append(out, DeadLetter{Seq: seq, Received: m.Time.UTC(), Source: m.Subject, Reason: "undecodable dead letter: " + err.Error()})
			continue
		}
		line, cut := escapeLine(dl.Line, DeadLineDisplayBytes)
		length := dl.Length
		if length == 0 {
			length = uint64(len(dl.Line))
		}
		recv := m.Time.UTC()
		if dl.ReceivedUnixMs != 0 {
			recv = time.UnixMilli(dl.ReceivedUnixMs).UTC()
		}
		out = append(out, DeadLetter{
			Seq: seq, Received: recv, Source: dl.Source, Peer: dl.Peer, Reason: dl.Reason,
			Length: length, Line: line, Truncated: cut || uint64(len(dl.Line)) < length,
		})
	}
	return out, nil
}

func (s *Service) handleDeadLetters(w http.ResponseWriter, r *http.Request) {
	var err error
	defer func(start time.Time) { s.observe("dead_letters", "http", start, err) }(time.Now())
	n := 50
	if v := r.URL.Query().Get("n"); v != "" {
		if n, err = strconv.Atoi(v); err != nil {
			err = windows.Invalidf("n %q is not a whole number between 1 and %d", v, MaxDeadLetters)
			writeErr(w, err)
			return
		}
	}
	items, err := s.DeadLetters(r.Context(), n)
	if err != nil {
		writeErr(w, err)
		return
	}
	out := deadLettersJSON{Items: make([]deadLetterJSON, len(items))}
	for i, d := range items {
		out.Items[i] = deadLetterJSON{
			Seq: d.Seq, Received: d.Received.Format("2006-01-02T15:04:05.000Z07:00"),
			Source: d.Source, Peer: d.Peer, Reason: d.Reason, Length: d.Length,
			Line: d.Line, Truncated: d.Truncated,
		}
	}
	obs.WriteJSON(w, http.StatusOK, out)
}

// escapeLine renders at most maxBytes bytes of b as safe text: printable
// UTF-8 is kept, tabs, newlines and other control or invalid bytes become
// Go-style escapes, so a line of binary garbage stays one readable line.
// It reports whether b was cut.
func escapeLine(b []byte, maxBytes int) (string, bool) {
	cut := false
	if len(b) > maxBytes {
		b = b[:maxBytes]
		cut = true
	}
	out := make([]byte, 0, len(b)+8)
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		switch {
		case r == utf8.RuneError && size <= 1:
			if cut && !utf8.FullRune(b) {
				// A rune split by the cut: drop it.
				b = nil
				continue
			}
			out = fmt.Appendf(out, `\x%02x`, b[0])
		case r == '\\':
			out = append(out, `\\`...)
		case r == '\t':
			out = append(out, `\t`...)
		case r == '\n':
			out = append(out, `\n`...)
		case r == '\r':
			out = append(out, `\r`...)
		case r < 0x20 || r == 0x7f:
			out = fmt.Appendf(out, `\x%02x`, r)
		case !strconv.IsPrint(r) && r != ' ':
			out = fmt.Appendf(out, `\u%04x`, r)
		default:
			out = append(out, b[:size]...)
		}
		b = b[size:]
	}
	return string(out), cut
}
