package ingest

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// tcpListener is one TCP listener, newline-delimited lines or syslog;
// both share this code and its limits.
type tcpListener struct {
	name   string // the listener label: tcp, syslog-tcp
	b      *batcher
	syslog bool
	ln     net.Listener // set by Start, under Service.mu
	// slots holds one token per open connection. The accept loop takes a
	// token before it calls Accept, so at -ingest.max-connections it stops
	// accepting: new senders wait in the kernel's accept queue (their
	// connect succeeds and their first writes are buffered) until a
	// connection ends. No sender is accepted only to be closed.
	slots    chan struct{}
	open     prometheus.Gauge
	atLimit  limitClock
	limitLog rateLimit
	// peers counts the open connections per peer address (under
	// Service.mu) for -ingest.tcp.max-conns-per-peer.
	peers   map[netip.Addr]int
	perPeer prometheus.Counter
	peerLog rateLimit
	// idleClosed counts connections closed by -ingest.tcp.idle-timeout.
	idleClosed prometheus.Counter
	framingLog rateLimit
}

func (s *Service) newTCPListener(name string, b *batcher, syslog bool) *tcpListener {
	l := &tcpListener{
		name:       name,
		b:          b,
		syslog:     syslog,
		slots:      make(chan struct{}, s.cfg.MaxConnections),
		open:       s.m.openConns.WithLabelValues(name),
		peers:      map[netip.Addr]int{},
		perPeer:    s.m.connsRejected.WithLabelValues(name, "per_peer"),
		idleClosed: s.m.idleClosed.WithLabelValues(name),
	}
	f := promauto.With(s.deps.Registerer)
	f.NewCounterFunc(prometheus.CounterOpts{
		Name:        "logtally_ingest_connections_limit_seconds_total",
		Help:        "Time the TCP listener spent at -ingest.max-connections, not accepting: new senders waited in the kernel's accept queue.",
		ConstLabels: prometheus.Labels{"listener": name},
	}, l.atLimit.seconds)
	if acceptQueueSupported {
		f.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "logtally_ingest_accept_queue",
			Help:        "Connections the kernel has established that wait for the TCP listener to accept them (at -ingest.max-connections, the senders held back).",
			ConstLabels: prometheus.Labels{"listener": name},
		}, func() float64 {
			s.mu.Lock()
			ln := l.ln
			s.mu.Unlock()
			n, _ := acceptQueue(ln)
			return float64(n)
		})
	}
	return l
}

// acceptLoop accepts connections of one TCP listener until it is closed.
func (s *Service) acceptLoop(l *tcpListener) {
	defer s.acceptWG.Done()
	var backoff time.Duration
	for {
		if !s.takeSlot(l) {
			return
		}
		conn, err := l.ln.Accept()
		if err != nil {
			<-l.slots
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary failures such as EMFILE: wait a little and go on.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed", "listener", l.name, "error", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		peer := peerAddr(conn)
		s.mu.Lock()
		if limit := s.cfg.MaxConnsPerPeer; limit > 0 && l.peers[peer] >= limit {
			s.mu.Unlock()
			<-l.slots
			s.refuse(l, conn, peer)
			continue
		}
		l.peers[peer]++
		s.conns[conn] = l
		s.connWG.Add(1)
		s.mu.Unlock()
		l.open.Inc()
		go func() {
			defer func() {
				_ = conn.Close()
				s.mu.Lock()
				delete(s.conns, conn)
				if l.peers[peer]--; l.peers[peer] <= 0 {
					delete(l.peers, peer)
				}
				s.mu.Unlock()
				l.open.Dec()
				<-l.slots
				s.connWG.Done()
			}()
			s.serveConn(conn, l)
		}()
	}
}

// refuse closes a connection of a peer that holds
// -ingest.tcp.max-conns-per-peer connections already, before reading
// anything from it. This is the one accept-and-close: one address holding
// that many connections is hogging the listener, and making it wait in the
// accept queue would hold back every other sender behind it. The close is
// a reset (linger 0), so the sender sees the refusal at once instead of
// writing into a connection nobody reads.
func (s *Service) refuse(l *tcpListener, conn net.Conn, peer netip.Addr) {
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
	l.perPeer.Inc()
	if l.peerLog.allow(time.Now(), 10*time.Second) {
		s.log.Warn("tcp connection refused: the peer has the most connections allowed per peer (logged at most every 10s)",
			"listener", l.name, "peer", peer, "max_conns_per_peer", s.cfg.MaxConnsPerPeer)
	}
}

// peerAddr is the remote IP address of conn, IPv4-mapped addresses unmapped.
func peerAddr(conn net.Conn) netip.Addr {
	if a, ok := conn.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// takeSlot waits for a free connection slot of l; false when the service
// stops first.
func (s *Service) takeSlot(l *tcpListener) bool {
	select {
	case l.slots <- struct{}{}:
		return true
	default:
	}
	t0 := time.Now()
	l.atLimit.enter(t0)
	if l.limitLog.allow(t0, time.Minute) {
		s.log.Warn("tcp listener at its connection limit: not accepting until a connection ends; new senders wait in the accept queue",
			"listener", l.name, "max_connections", cap(l.slots))
	}
	defer func() { l.atLimit.leave(time.Now()) }()
	select {
	case l.slots <- struct{}{}:
		return true
	case <-s.done:
		return false
	}
}

// limitClock adds up the time spent in a state (a listener at its
// connection limit); seconds includes a stretch still going on.
type limitClock struct {
	mu    sync.Mutex
	total time.Duration
	since time.Time // non-zero while in the state
}

func (c *limitClock) enter(now time.Time) {
	c.mu.Lock()
	c.since = now
	c.mu.Unlock()
}

func (c *limitClock) leave(now time.Time) {
	c.mu.Lock()
	if !c.since.IsZero() {
		c.total += now.Sub(c.since)
		c.since = time.Time{}
	}
	c.mu.Unlock()
}

func (c *limitClock) seconds() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.total
	if !c.since.IsZero() {
		d += time.Since(c.since)
	}
	return d.Seconds()
}

// rateLimit lets one event through per interval (log lines under attack).
type rateLimit struct {
	mu   sync.Mutex
	last time.Time
}

func (r *rateLimit) allow(now time.Time, every time.Duration) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.last.IsZero() && now.Sub(r.last) < every {
		return false
	}
	r.last = now
	return true
}

// serveConn reads one TCP connection. Lines collect in a chunk that goes
// to the batcher whenever the reader has consumed everything received so
// far (or the chunk is large), before the next read can block.
func (s *Service) serveConn(conn net.Conn, l *tcpListener) {
	peer := conn.RemoteAddr().String()
	r := &idleReader{conn: conn, timeout: s.cfg.TCPIdleTimeout, stopping: &s.connsStopping}
	br := bufio.NewReaderSize(r, readerSize(s.cfg.MaxLineBytes))
	c := &chunk{}
	flush := func() {
		if c.entries() > 0 {
			l.b.add(c, peer, true)
			c.reset()
		}
	}
	h := &chunkHandler{chunk: c, limit: 32 << 10, flush: flush}
	idle := flush
	var err error
	if l.syslog {
		err = scanSyslog(br, s.cfg.MaxLineBytes, h, idle, func(reason string) {
			s.m.framingErrors.WithLabelValues(reason).Inc()
			if l.framingLog.allow(time.Now(), 10*time.Second) {
				s.log.Info("syslog tcp framing error (logged at most every 10s)", "listener", l.name, "peer", peer, "reason", reason)
			}
		})
	} else {
		err = scanLines(br, s.cfg.MaxLineBytes, h, idle)
	}
	flush()
	if r.expired {
		l.idleClosed.Inc()
		s.log.Debug("closing idle connection", "listener", l.name, "peer", peer, "idle_timeout", s.cfg.TCPIdleTimeout)
		return
	}
	var ne net.Error
	if err != nil && !errors.Is(err, net.ErrClosed) && !(errors.As(err, &ne) && ne.Timeout()) {
		s.log.Debug("connection ended with error", "peer", peer, "error", err)
	}
}

// idleReader reads a connection under -ingest.tcp.idle-timeout: every
// read first moves the read deadline to now plus the timeout, so the
// timeout is the time the peer sent nothing while ingest waited for it
// (time spent waiting for a batch slot does not count). An expired
// deadline reads as io.EOF from then on: the framers end the connection
// exactly as if the peer had closed it, so complete lines are kept and so
// is an unterminated last line or a frame cut short (lines.go). Stop's
// deadline stays a timeout error, as before (stopping is set before Stop
// moves the deadlines, and a read that moved its deadline after that sees
// it).
type idleReader struct {
	conn     net.Conn
	timeout  time.Duration // 0: none
	stopping *atomic.Bool
	expired  bool
}

func (r *idleReader) Read(p []byte) (int, error) {
	if r.expired {
		return 0, io.EOF
	}
	if r.timeout > 0 {
		_ = r.conn.SetReadDeadline(time.Now().Add(r.timeout))
		if r.stopping.Load() {
			_ = r.conn.SetReadDeadline(time.Now())
		}
	}
	n, err := r.conn.Read(p)
	var ne net.Error
	if err != nil && r.timeout > 0 && errors.As(err, &ne) && ne.Timeout() && !r.stopping.Load() {
		r.expired = true
		return n, io.EOF
	}
	return n, err
}

// chunkHandler passes lines into a chunk and flushes it at a size limit.
type chunkHandler struct {
	*chunk
	limit int
	flush func()
}

func (h *chunkHandler) line(p []byte) {
	h.chunk.line(p)
	if len(h.buf) >= h.limit {
		h.flush()
	}
}

// empty forwards an empty line; a run of them is flushed by count, as
// they add nothing to buf.
func (h *chunkHandler) empty() {
	h.chunk.empty()
	if len(h.ends) >= h.limit/8 {
		h.flush()
	}
}

func (h *chunkHandler) truncated(prefix []byte, declared, received uint64) {
	h.chunk.truncated(prefix, declared, received)
	if len(h.over) >= 64 {
		h.flush()
	}
}

func (h *chunkHandler) oversized(prefix []byte, length uint64) {
	h.chunk.oversized(prefix, length)
	if len(h.over) >= 64 {
		h.flush()
	}
}
