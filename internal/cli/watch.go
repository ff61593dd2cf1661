package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/term"
)

// `logtally top --watch`: the table is redrawn whenever the server pushes a
// new answer on its Server-Sent Events endpoints (GET /api/v1/watch/top for
// the rows, /api/v1/watch/overview for the totals in the header); nothing is
// polled. On a terminal each frame moves the cursor home, rewrites every
// line and clears what is left of it and of the screen, on the alternate
// screen with the cursor hidden; both are restored on exit (Ctrl-C too).
// The terminal size is read again for every frame and on SIGWINCH. Plain
// ANSI only, so it works over SSH. With --json every update is printed as
// one line of JSON (the /api/v1/top answer), for scripts.

// ANSI sequences of the watch screen.
const (
	ansiAltScreenOn  = "\x1b[?1049h"
	ansiAltScreenOff = "\x1b[?1049l"
	ansiHideCursor   = "\x1b[?25l"
	ansiShowCursor   = "\x1b[?25h"
	ansiHome         = "\x1b[H"
	ansiClearEOL     = "\x1b[K"
	ansiClearEOS     = "\x1b[J"
)

// watchReconnect bounds the wait between reconnection attempts.
var watchReconnect = struct{ min, max time.Duration }{500 * time.Millisecond, 10 * time.Second}

// watchOutput is where watch frames go.
type watchOutput struct {
	w   io.Writer
	tty bool
	// size returns the terminal's columns and rows (ok=false: unknown).
	size func() (cols, rows int, ok bool)
	// resize delivers a value whenever the terminal changed size.
	resize <-chan struct{}
}

// newWatchOutput inspects stdout: a terminal gets the redrawn screen.
func newWatchOutput(stdout io.Writer) (watchOutput, func()) {
	out := watchOutput{w: stdout, size: func() (int, int, bool) { return 0, 0, false }}
	f, ok := stdout.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return out, func() {}
	}
	fd := int(f.Fd())
	out.tty = true
	out.size = func() (int, int, bool) {
		c, r, err := term.GetSize(fd)
		if err != nil || c <= 0 || r <= 0 {
			return 80, 24, true
		}
		return c, r, true
	}
	resize, stop := notifyResize()
	out.resize = resize
	return out, stop
}

// readSSE splits a text/event-stream into event data, as EventSource
// does: "data:" lines joined by newlines, dispatched at a blank line;
// comments and other fields are skipped.
func readSSE(r io.Reader, onEvent func(data []byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var data []byte
	have := false
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			if have {
				if err := onEvent(data); err != nil {
					return err
				}
			}
			data, have = data[:0], false
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		if string(field) == "data" {
			if have {
				data = append(data, '\n')
			}
			data = append(data, value...)
			have = true
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return io.EOF
}

// permanentError is an answer that a retry would not change (4xx).
type permanentError struct{ error }

// streamSSE GETs base+path?q as an event stream and calls onEvent per event.
// A lost or failed connection is retried with backoff (onState reports it)
// until ctx ends, when it returns nil; a 4xx answer is returned at once.
func streamSSE(ctx context.Context, client *http.Client, base, path string, q url.Values, onEvent func([]byte) error, onState func(err error)) error {
	u := base + path + "?" + q.Encode()
	retry := newReconnectBackoff()
	for {
		got := false
		err := func() error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
			if err != nil {
				return permanentError{err}
			}
			req.Header.Set("Accept", "text/event-stream")
			resp, err := client.Do(req)
			if err != nil {
				return fmt.Errorf("GET %s: %w", path, err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
				err := apiError(http.MethodGet, path, resp, body)
				if resp.StatusCode >= 400 && resp.StatusCode < 500 {
					return permanentError{err}
				}
				return err
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
				return permanentError{fmt.Errorf("GET %s: server answered %q, not an event stream (is it an older logtally?)", path, ct)}
			}
			return readSSE(resp.Body, func(data []byte) error {
				got = true
				onState(nil)
				return onEvent(data)
			})
		}()
		if ctx.Err() != nil {
			return nil
		}
		var perm permanentError
		if errors.As(err, &perm) {
			return perm.error
		}
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("GET %s: stream ended", path)
		}
		onState(err)
		if !retry.sleep(ctx, got) {
			return nil
		}
	}
}

// reconnectBackoff is the wait before reconnecting a watch: the least
// after a connection that delivered something, doubling up to the most.
type reconnectBackoff struct{ wait time.Duration }

func newReconnectBackoff() *reconnectBackoff {
	return &reconnectBackoff{wait: watchReconnect.min}
}

// sleep waits; got tells whether the last connection delivered anything.
// It returns false when ctx ended first.
func (b *reconnectBackoff) sleep(ctx context.Context, got bool) bool {
	if got {
		b.wait = watchReconnect.min
	}
	select {
	case <-ctx.Done():
		return false
	case <-time.After(b.wait):
	}
	b.wait = min(b.wait*2, watchReconnect.max)
	return true
}

// watchUpdate is one change for the screen.
type watchUpdate struct {
	top    *TopAnswer
	totals *TotalsAnswer
	state  *string // "" when connected, otherwise the problem
}

// watchTop runs `logtally top --watch`.
func watchTop(ctx context.Context, o topOptions, base string, client *http.Client, out watchOutput, stderr io.Writer) error {
	topQ := o.topQuery()
	if o.json {
		return streamSSE(ctx, client, base, "/api/v1/watch/top", topQ, func(data []byte) error {
			if !json.Valid(data) {
				return fmt.Errorf("server sent an event that is not JSON: %.100q", data)
			}
			_, err := out.w.Write(append(bytes.TrimSpace(data), '\n'))
			return err
		}, func(err error) {
			if err != nil {
				fmt.Fprintf(stderr, "logtally top: %v; reconnecting\n", err)
			}
		})
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	updates := make(chan watchUpdate, 16)
	send := func(u watchUpdate) {
		select {
		case updates <- u:
		case <-ctx.Done():
		}
	}
	errc := make(chan error, 2)
	state := func(err error) {
		s := ""
		if err != nil {
			s = err.Error()
		}
		send(watchUpdate{state: &s})
	}
	go func() {
		errc <- streamSSE(ctx, client, base, "/api/v1/watch/top", topQ, func(data []byte) error {
			var top TopAnswer
			if err := json.Unmarshal(data, &top); err != nil {
				return fmt.Errorf("decoding top update: %v", err)
			}
			send(watchUpdate{top: &top})
			return nil
		}, state)
	}()
	go func() {
		// One point per range: only the totals are shown.
		ovQ := o.rangeQuery()
		ovQ.Set("step", "1d")
		errc <- streamSSE(ctx, client, base, "/api/v1/watch/overview", ovQ, func(data []byte) error {
			var ov struct {
				Totals TotalsAnswer `json:"totals"`
			}
			if err := json.Unmarshal(data, &ov); err != nil {
				return fmt.Errorf("decoding totals update: %v", err)
			}
			send(watchUpdate{totals: &ov.Totals})
			return nil
		}, state)
	}()

	scr := &watchScreen{out: out, base: base}
	if out.tty {
		if _, err := io.WriteString(out.w, ansiAltScreenOn+ansiHideCursor); err != nil {
			return err
		}
		defer io.WriteString(out.w, ansiShowCursor+ansiAltScreenOff)
	}
	if err := scr.draw(); err != nil {
		return err
	}
	// The first rows wait briefly for the totals, so the header does not
	// flash zeros.
	var totalsGrace <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-totalsGrace:
			totalsGrace = nil
			scr.haveTotals = true
			if err := scr.draw(); err != nil {
				return err
			}
		case err := <-errc:
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("top --watch: %w", err)
			}
			return nil
		case <-out.resize:
			if err := scr.draw(); err != nil {
				return err
			}
		case u := <-updates:
			changed := scr.apply(u)
			// Coalesce a burst of updates into one frame.
		drain:
			for {
				select {
				case u := <-updates:
					changed = scr.apply(u) || changed
				default:
					break drain
				}
			}
			if changed && !scr.haveTotals {
				if totalsGrace == nil {
					totalsGrace = time.After(500 * time.Millisecond)
				}
				changed = false
			}
			if changed {
				if err := scr.draw(); err != nil {
					return err
				}
			}
		}
	}
}

// watchScreen holds what the watch shows and draws frames.
type watchScreen struct {
	out        watchOutput
	base       string
	top        *TopAnswer
	totals     TotalsAnswer
	haveTotals bool
	problem    string
	updated    time.Time
}

func (s *watchScreen) apply(u watchUpdate) bool {
	switch {
	case u.top != nil:
		s.top, s.updated = u.top, time.Now()
		return true
	case u.totals != nil:
		s.totals, s.haveTotals, s.updated = *u.totals, true, time.Now()
		return s.top != nil
	case u.state != nil:
		if *u.state == s.problem {
			return false
		}
		s.problem = *u.state
		return s.out.tty // a pipe gets data frames only
	}
	return false
}

// frame renders the screen's lines for cols×rows (0: unlimited).
func (s *watchScreen) frame(cols, rows int) []string {
	var lines []string
	if s.top == nil {
		lines = []string{"connecting to " + s.base + " …"}
	} else {
		var buf bytes.Buffer
		_ = RenderTop(&buf, *s.top, s.totals, cols)
		lines = strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	}
	status := ""
	switch {
	case s.problem != "":
		status = "reconnecting: " + s.problem
	case s.top != nil:
		status = "live · updated " + s.updated.Format("15:04:05") + " · Ctrl-C to quit"
	}
	if rows > 0 {
		room := rows
		if status != "" {
			room-- // the status line stays visible
		}
		if len(lines) > room {
			lines = lines[:max(room, 0)]
		}
	}
	if status != "" {
		lines = append(lines, status)
	}
	if cols > 0 {
		for i, l := range lines {
			lines[i] = truncate(l, cols)
		}
	}
	return lines
}

// draw writes one frame in a single Write: on a terminal over the previous
// frame without clearing the screen first (no flicker), otherwise as plain
// text followed by a blank line.
func (s *watchScreen) draw() error {
	var b strings.Builder
	if !s.out.tty {
		if s.top == nil {
			return nil
		}
		for _, l := range s.frame(0, 0) {
			if strings.HasPrefix(l, "live · ") {
				continue
			}
			b.WriteString(l)
			b.WriteByte('\n')
		}
		b.WriteByte('\n')
		_, err := io.WriteString(s.out.w, b.String())
		return err
	}
	cols, rows, ok := s.out.size()
	if !ok {
		cols, rows = 80, 24
	}
	b.WriteString(ansiHome)
	lines := s.frame(cols, rows)
	for i, l := range lines {
		b.WriteString(l)
		b.WriteString(ansiClearEOL)
		if i < len(lines)-1 {
			b.WriteString("\r\n")
		}
	}
	b.WriteString(ansiClearEOS)
	_, err := io.WriteString(s.out.w, b.String())
	return err
}
