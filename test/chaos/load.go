package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logtally/logtally/internal/loggen"
)

// Reference is the oracle: per-IP, per-minute counts computed directly from
// the generated lines, never from the pipeline.
type Reference struct {
	PerIPMinute map[netip.Addr]map[int64]uint64 // minute start (unix) → count
	Total       uint64
}

// NewReference returns an empty reference.
func NewReference() *Reference {
	return &Reference{PerIPMinute: map[netip.Addr]map[int64]uint64{}}
}

// Add counts one line.
func (r *Reference) Add(a netip.Addr, t time.Time) { r.AddN(a, t.Truncate(time.Minute).Unix(), 1) }

// AddN adds n to IP a's window starting at minute (unix seconds).
func (r *Reference) AddN(a netip.Addr, minute int64, n uint64) {
	m := r.PerIPMinute[a]
	if m == nil {
		m = map[int64]uint64{}
		r.PerIPMinute[a] = m
	}
	m[minute] += n
	r.Total += n
}

// Merge adds every count of o.
func (r *Reference) Merge(o *Reference) {
	for a, m := range o.PerIPMinute {
		for w, c := range m {
			r.AddN(a, w, c)
		}
	}
}

// Count is IP a's count over [from, to).
func (r *Reference) Count(a netip.Addr, from, to time.Time) uint64 {
	var n uint64
	for start, c := range r.PerIPMinute[a] {
		if start >= from.Unix() && start < to.Unix() {
			n += c
		}
	}
	return n
}

// IPCount is one item of a top list.
type IPCount struct {
	IP    string `json:"ip"`
	Count uint64 `json:"count"`
}

// Top is the reference top-n over [from, to): count desc, then IP.
func (r *Reference) Top(from, to time.Time, n int) []IPCount {
	type kv struct {
		a netip.Addr
		c uint64
	}
	var all []kv
	for a := range r.PerIPMinute {
		if c := r.Count(a, from, to); c > 0 {
			all = append(all, kv{a, c})
		}
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].c != all[j].c {
			return all[i].c > all[j].c
		}
		return all[i].a.Less(all[j].a)
	})
	out := []IPCount{}
	for i := 0; i < len(all) && i < n; i++ {
		out = append(out, IPCount{all[i].a.String(), all[i].c})
	}
	return out
}

// Distinct is the number of IPs with a count in [from, to).
func (r *Reference) Distinct(from, to time.Time) uint64 {
	var n uint64
	for a := range r.PerIPMinute {
		if r.Count(a, from, to) > 0 {
			n++
		}
	}
	return n
}

// Workload is a deterministic stream of N combined-format lines whose
// event times spread over [From, To). Lines are generated lazily (Iter), so
// a soak test can stream millions of them; the reference is computed up
// front from an identical generator.
type Workload struct {
	Seed     uint64
	N        int
	Pool     int
	From, To time.Time
	Ref      *Reference
	// Format makes line i of n; nil is (*loggen.Generator).Combined.
	Format func(g *loggen.Generator, i, n int) loggen.Line
	// PerMinute counts the lines of each minute (unix start) and LastOf is
	// the index of each minute's last line: a minute is completely sent once
	// more than LastOf lines are.
	PerMinute map[int64]uint64
	LastOf    map[int64]int
}

// NewWorkload prepares n lines from pool IPs with event times in the 20
// minutes starting at from (aligned to the minute).
func NewWorkload(seed uint64, n, pool int, from time.Time) *Workload {
	return NewWorkloadFormat(seed, n, pool, from, nil)
}

// NewWorkloadFormat is NewWorkload with lines made by format (e.g.
// (*loggen.Generator).Firewall5424 for syslog).
func NewWorkloadFormat(seed uint64, n, pool int, from time.Time, format func(g *loggen.Generator, i, n int) loggen.Line) *Workload {
	from = from.UTC().Truncate(time.Minute)
	w := &Workload{Seed: seed, N: n, Pool: pool, From: from, To: from.Add(20 * time.Minute), Ref: NewReference(), Format: format,
		PerMinute: map[int64]uint64{}, LastOf: map[int64]int{}}
	next := w.Iter()
	for i := 0; ; i++ {
		l, ok := next()
		if !ok {
			break
		}
		w.Ref.Add(l.Addr, l.Time)
		m := l.Time.Truncate(time.Minute).Unix()
		w.PerMinute[m]++
		w.LastOf[m] = i
	}
	return w
}

// Iter returns a fresh iterator over the workload's lines.
func (w *Workload) Iter() func() (loggen.Line, bool) {
	g := loggen.New(w.Seed, w.Pool, w.From, w.To.Sub(w.From))
	i := 0
	return func() (loggen.Line, bool) {
		if i >= w.N {
			return loggen.Line{}, false
		}
		var l loggen.Line
		if w.Format != nil {
			l = w.Format(g, i, w.N)
		} else {
			l = g.Combined(i, w.N)
		}
		i++
		return l, true
	}
}

// Sender streams a workload at a steady rate. Sent counts lines the
// transport has taken (TCP: written into the socket; HTTP: answered 200).
type Sender struct {
	Name string
	Rate int // lines per second
	w    *Workload

	sent         atomic.Int64
	lastProgress atomic.Int64 // unix nanos of the last increase of sent
	done         chan struct{}
	errMu        sync.Mutex
	err          error

	// TCP pause handshake.
	pauseReq chan chan struct{}
	resume   chan struct{}

	// HTTP statistics.
	Retries   atomic.Int64
	Status503 atomic.Int64
}

// Sent is the number of lines delivered so far.
func (s *Sender) Sent() int64 { return s.sent.Load() }

// LastProgress is when Sent last increased.
func (s *Sender) LastProgress() time.Time { return time.Unix(0, s.lastProgress.Load()) }

// Done is closed when every line is delivered (or the sender failed).
func (s *Sender) Done() <-chan struct{} { return s.done }

// Err is the sender's failure, if any.
func (s *Sender) Err() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.err
}

func (s *Sender) fail(err error) {
	s.errMu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.errMu.Unlock()
}

func (s *Sender) progress(n int) {
	s.sent.Add(int64(n))
	s.lastProgress.Store(time.Now().UnixNano())
}

// Wait waits for the sender to finish and returns its error.
func (s *Sender) Wait(timeout time.Duration) error {
	select {
	case <-s.done:
		return s.Err()
	case <-time.After(timeout):
		return fmt.Errorf("%s: still sending after %s (%d lines sent)", s.Name, timeout, s.Sent())
	}
}

// pacer hands out chunks of lines at rate lines/s; after a stall it does not
// burst more than 1s of lines to catch up.
type pacer struct {
	rate  int
	start time.Time
	done  int
}

func (p *pacer) next(ctx context.Context, chunk int) error {
	if p.start.IsZero() {
		p.start = time.Now()
	}
	due := p.start.Add(time.Duration(float64(p.done) / float64(p.rate) * float64(time.Second)))
	if behind := time.Since(due); behind > time.Second {
		p.start = p.start.Add(behind - time.Second)
		due = time.Now().Add(-time.Second)
	}
	if d := time.Until(due); d > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
	}
	p.done += chunk
	return nil
}

// SendTCP streams w over newline-delimited TCP to addr at rate lines/s in
// chunks of rate/50 lines, with a small socket send buffer so that ingest's
// backpressure reaches the writer quickly. At the end (and on Pause) it
// half-closes the connection and waits for ingest to close it: then ingest
// has read every line. Writes block while ingest does not read.
func SendTCP(ctx context.Context, name, addr string, w *Workload, rate int) *Sender {
	s := &Sender{Name: name, Rate: rate, w: w, done: make(chan struct{}), pauseReq: make(chan chan struct{}), resume: make(chan struct{})}
	s.lastProgress.Store(time.Now().UnixNano())
	go func() {
		defer close(s.done)
		if err := s.runTCP(ctx, addr, w); err != nil {
			s.fail(err)
		}
	}()
	return s
}

func dialRetry(ctx context.Context, addr string) (*net.TCPConn, error) {
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err == nil {
			tc := c.(*net.TCPConn)
			_ = tc.SetWriteBuffer(32 << 10)
			return tc, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("dial %s: %w", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// closeAndDrain half-closes conn and waits until the peer closes it, which
// ingest does after it has read (and handed on) every line.
func closeAndDrain(conn *net.TCPConn) error {
	defer conn.Close()
	if err := conn.CloseWrite(); err != nil {
		return err
	}
	_ = conn.SetReadDeadline(time.Now().Add(120 * time.Second))
	_, err := io.Copy(io.Discard, conn)
	return err
}

func (s *Sender) runTCP(ctx context.Context, addr string, w *Workload) error {
	conn, err := dialRetry(ctx, addr)
	if err != nil {
		return err
	}
	next := w.Iter()
	chunk := max(1, s.Rate/50)
	p := &pacer{rate: s.Rate}
	var buf bytes.Buffer
	for {
		select {
		case ack := <-s.pauseReq:
			err := closeAndDrain(conn)
			close(ack)
			if err != nil {
				return fmt.Errorf("%s: drain on pause: %w", s.Name, err)
			}
			select {
			case <-s.resume:
			case <-ctx.Done():
				return ctx.Err()
			}
			if conn, err = dialRetry(ctx, addr); err != nil {
				return err
			}
			p = &pacer{rate: s.Rate}
		default:
		}
		if err := p.next(ctx, chunk); err != nil {
			conn.Close()
			return err
		}
		buf.Reset()
		n := 0
		for n < chunk {
			l, ok := next()
			if !ok {
				break
			}
			buf.Write(l.Text)
			buf.WriteByte('\n')
			n++
		}
		if n > 0 {
			if _, err := conn.Write(buf.Bytes()); err != nil {
				conn.Close()
				return fmt.Errorf("%s: write after %d lines: %w", s.Name, s.Sent(), err)
			}
			s.progress(n)
		}
		if n < chunk {
			if err := closeAndDrain(conn); err != nil {
				return fmt.Errorf("%s: final drain: %w", s.Name, err)
			}
			return nil
		}
	}
}

// Pause makes a TCP sender finish its connection cleanly (ingest has read
// every line written) and wait for Resume, which reconnects to the same
// address. It returns once the connection is drained. Pause on a finished
// sender returns at once.
func (s *Sender) Pause() error {
	ack := make(chan struct{})
	select {
	case s.pauseReq <- ack:
	case <-s.done:
		return s.Err()
	}
	select {
	case <-ack:
	case <-s.done:
	}
	return s.Err()
}

// Resume lets a paused TCP sender reconnect and continue.
func (s *Sender) Resume() {
	select {
	case s.resume <- struct{}{}:
	case <-s.done:
	}
}

// SendHTTP streams w to base+"/api/v1/ingest" at rate lines/s in requests
// of perRequest lines. Each request carries an Idempotency-Key (keyPrefix
// and its index) and is retried with the same key and body until it is
// answered 200, so a request that failed half way is stored exactly once.
func SendHTTP(ctx context.Context, name, base, keyPrefix string, w *Workload, rate, perRequest int) *Sender {
	s := &Sender{Name: name, Rate: rate, w: w, done: make(chan struct{})}
	s.lastProgress.Store(time.Now().UnixNano())
	go func() {
		defer close(s.done)
		if err := s.runHTTP(ctx, base, keyPrefix, w, perRequest); err != nil {
			s.fail(err)
		}
	}()
	return s
}

func (s *Sender) runHTTP(ctx context.Context, base, keyPrefix string, w *Workload, perRequest int) error {
	next := w.Iter()
	p := &pacer{rate: s.Rate}
	client := &http.Client{Timeout: 30 * time.Second}
	for req := 0; ; req++ {
		if err := p.next(ctx, perRequest); err != nil {
			return err
		}
		var body bytes.Buffer
		n := 0
		for n < perRequest {
			l, ok := next()
			if !ok {
				break
			}
			body.Write(l.Text)
			body.WriteByte('\n')
			n++
		}
		if n == 0 {
			return nil
		}
		key := fmt.Sprintf("%s-%d", keyPrefix, req)
		if err := PostIngest(ctx, client, base, key, body.Bytes(), n, s); err != nil {
			return fmt.Errorf("%s: request %d: %w", s.Name, req, err)
		}
		s.progress(n)
		if n < perRequest {
			return nil
		}
	}
}

// PostIngest posts body with the Idempotency-Key key until it is answered
// 200 with accepted == lines (retrying errors and 503 for up to 2 minutes,
// inside the duplicate window). s (may be nil) counts retries and 503s.
func PostIngest(ctx context.Context, client *http.Client, base, key string, body []byte, lines int, s *Sender) error {
	deadline := time.Now().Add(110 * time.Second)
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/ingest?source=chaos", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Idempotency-Key", key)
		resp, err := client.Do(req)
		var msg string
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case resp.StatusCode == http.StatusOK:
				var got struct {
					Accepted int `json:"accepted"`
				}
				if err := jsonUnmarshal(b, &got); err != nil || got.Accepted != lines {
					return fmt.Errorf("200 with %s, want accepted %d", b, lines)
				}
				return nil
			case resp.StatusCode == http.StatusServiceUnavailable:
				if s != nil {
					s.Status503.Add(1)
				}
				msg = fmt.Sprintf("503 %s", bytes.TrimSpace(b))
			default:
				return fmt.Errorf("%d %s", resp.StatusCode, b)
			}
		} else {
			msg = err.Error()
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gave up after %d attempts: %s", attempt+1, msg)
		}
		if s != nil {
			s.Retries.Add(1)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// SendUDP sends each line as one syslog datagram to addr, pacing at rate
// datagrams/s, until the lines run out or ctx ends; it returns how many were
// sent. UDP cannot push back: ingest drops what it cannot batch and counts
// it in logtally_ingest_udp_dropped_total.
func SendUDP(ctx context.Context, addr string, lines [][]byte, rate int) (int, error) {
	conn, err := net.Dial("udp", addr)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	p := &pacer{rate: rate}
	const chunk = 10
	sent := 0
	for sent < len(lines) {
		if err := p.next(ctx, chunk); err != nil {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return sent, nil
			}
			return sent, err
		}
		for i := 0; i < chunk && sent < len(lines); i++ {
			if _, err := conn.Write(lines[sent]); err != nil {
				return sent, err
			}
			sent++
		}
	}
	return sent, nil
}
