// Package ingest is the first stage of logtally: listeners receive log
// lines (newline-delimited TCP, syslog over UDP and TCP, HTTP POST) and
// publish them in batches as logtallyv1.RawBatch messages to
// logs.raw.<source> on the LOGTALLY_RAW stream.
//
// Batching: one batcher per listener source collects lines until
// -ingest.batch.max-bytes (encoded size) or -ingest.batch.linger after the
// batch's first line. RawBatch.peer is the sender when every line of the
// batch came from the same peer and empty when the batch mixes peers;
// received_unix_ms is the receive time of the batch's first line.
//
// Delivery: every batch gets the Nats-Msg-Id <InstanceID>-<source>-<n> once
// and is published with PublishMsgAsync and retried with the same ID until
// JetStream acknowledges it, so a retry after a lost ack is stored once
// (within the stream's duplicate window). While the service runs a batch is
// never given up. n starts at the service's start time in microseconds, so a
// restarted process with the same InstanceID does not collide with its
// predecessor's IDs. An HTTP request with an Idempotency-Key header names
// its batches http-<key>-<i> instead, so that a client's retry of the
// request is stored once within the duplicate window (see handleIngest).
//
// Empty lines (and empty syslog datagrams or frames) are forwarded as empty
// entries of RawBatch.lines for the parser to dead-letter, and counted in
// logtally_ingest_empty_lines_total; the final newline of a stream or body
// adds no empty line.
//
// Backpressure: each source has -ingest.publish.max-in-flight batch slots.
// A batch takes a slot when sealed and frees it when acknowledged. When all
// slots are taken, a TCP reader that needs to seal a batch waits for one
// (holding the batcher's lock, so the source's other readers wait too) and
// stops reading its socket; the kernel buffers fill and the sender's writes
// block. Nothing is dropped. The same holds for connections: at
// -ingest.max-connections a TCP listener stops accepting until one of its
// connections ends, so new senders wait in the kernel's accept queue; no
// connection is accepted only to be closed, except one from a peer address
// that already has -ingest.tcp.max-conns-per-peer open (listeners.go).
// UDP cannot push back: a datagram that needs a slot when none is free is
// dropped and counted in logtally_ingest_udp_dropped_total, and so are the
// datagrams the kernel drops at a full receive buffer (udp.go).
//
// Idle connections: a TCP connection whose peer sent nothing for
// -ingest.tcp.idle-timeout is closed as if the peer had closed it: its
// lines are kept, an unterminated last line too.
//
// Stop closes the listeners, lets every open connection finish the lines it
// has read (an unterminated last line of a connection closed by Stop is
// dropped; at EOF from the peer or the idle timeout it is kept), waits for in-flight HTTP
// requests, seals every partial batch and waits for all acks. When the
// Stop context ends first, the remaining batches are given up: the number of
// lines is logged and added to logtally_ingest_lines_lost_on_shutdown_total,
// and Stop returns ErrLinesLost.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/logtally/logtally/internal/service"
)

// Source names (the last token of the raw subject).
const (
	SourceTCP       = "tcp"
	SourceSyslogUDP = "syslog-udp"
	SourceSyslogTCP = "syslog-tcp"
	SourceHTTP      = "http"

	// FormatSyslog is the format of every syslog batch.
	FormatSyslog = "syslog"
)

// Service is the ingest stage.
type Service struct {
	cfg  Config
	deps service.Deps
	log  hclog.Logger
	m    *metrics
	// Free lists of raw batch buffers and their compressed forms, about
	// as many as can be in flight.
	arenas, s2buf *buffers
	nc            *nats.Conn
	// js is a publishing context of its own on the process's connection:
	// it has an ack timeout (so an unanswered publish is retried and its
	// bookkeeping freed) and its own count of pending publishes.
	js jetstream.JetStream

	msgSeq  atomic.Uint64
	failing atomic.Bool
	lost    atomic.Int64

	// giveUp ends when Stop's context ends: publishers stop retrying.
	giveUp       context.Context
	cancelGiveUp context.CancelCauseFunc

	// httpReq holds a token per HTTP ingest request being served.
	httpReq chan struct{}

	mu       sync.Mutex
	started  bool
	stopping bool
	conns    map[net.Conn]*tcpListener // open connection → its listener
	// connsStopping is set by Stop before it ends the connections' reads.
	connsStopping atomic.Bool
	// done is closed by Stop: accept loops waiting for a free connection
	// slot give up.
	done chan struct{}

	tcpLn, syslogLn net.Listener
	tcpL, syslogL   *tcpListener
	udpConn         *net.UDPConn

	tcpB, syslogTCPB, syslogUDPB *batcher

	acceptWG sync.WaitGroup // accept loops and the UDP reader
	connWG   sync.WaitGroup // connection handlers
	httpWG   sync.WaitGroup // HTTP ingest requests
	pending  sync.WaitGroup // batches sealed and not yet acked or given up
	httpSem  chan struct{}  // in-flight slots of HTTP batches

	messageFields []string // -ingest.http.message-field
}

// New checks the configuration and prepares the service.
func New(cfg Config, deps service.Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.NATS == nil || deps.NATS.JS == nil {
		return nil, ErrNoNATS
	}
	if deps.Log == nil {
		deps.Log = hclog.NewNullLogger()
	}
	if deps.Registerer == nil {
		deps.Registerer = prometheus.NewRegistry()
	}
	if deps.InstanceID == "" {
		deps.InstanceID = "ingest"
	}
	nc := deps.NATS.NC
	if nc == nil {
		nc = deps.NATS.JS.Conn()
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(4096),
		jetstream.WithPublishAsyncTimeout(cfg.PublishAckTimeout))
	if err != nil {
		return nil, fmt.Errorf("ingest publishing context: %w", err)
	}
	s := &Service{
		cfg:     cfg,
		deps:    deps,
		log:     deps.Log.Named("ingest"),
		m:       newMetrics(deps.Registerer),
		nc:      nc,
		js:      js,
		conns:   map[net.Conn]*tcpListener{},
		done:    make(chan struct{}),
		httpSem: make(chan struct{}, cfg.PublishMaxInFlight),
		httpReq: make(chan struct{}, cfg.HTTPMaxConcurrent),
		arenas:  newBuffers(cfg.BatchMaxBytes+batchOverhead, cfg.PublishMaxInFlight),
		s2buf:   newBuffers(s2.MaxEncodedLen(cfg.BatchMaxBytes+batchOverhead), cfg.PublishMaxInFlight),
	}
	s.messageFields, _ = parseMessageFields(cfg.HTTPMessageField) // checked by Validate
	s.giveUp, s.cancelGiveUp = context.WithCancelCause(context.Background())
	s.msgSeq.Store(uint64(time.Now().UnixMicro()))
	s.tcpB = s.newBatcher(SourceTCP, cfg.Format)
	s.syslogTCPB = s.newBatcher(SourceSyslogTCP, FormatSyslog)
	s.syslogUDPB = s.newBatcher(SourceSyslogUDP, FormatSyslog)
	s.tcpL = s.newTCPListener("tcp", s.tcpB, false)
	s.syslogL = s.newTCPListener("syslog-tcp", s.syslogTCPB, true)
	return s, nil
}

// Name identifies the service.
func (s *Service) Name() string { return "ingest" }

// Start binds the listeners, registers POST /api/v1/ingest and the
// readiness check and returns; serving continues in goroutines.
func (s *Service) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return ErrAlreadyStarted
	}
	if mp := s.nc.MaxPayload(); mp > 0 && int64(s.cfg.BatchMaxBytes)+4096 > mp {
		return fmt.Errorf("%w: batch max %d bytes, max_payload %d", ErrPayloadTooSmall, s.cfg.BatchMaxBytes, mp)
	}
	lc := net.ListenConfig{}
	if s.cfg.TCPAddr != "" {
		ln, err := lc.Listen(ctx, "tcp", s.cfg.TCPAddr)
		if err != nil {
			return fmt.Errorf("listen tcp %s: %w", s.cfg.TCPAddr, err)
		}
		s.tcpLn = ln
	}
	if s.cfg.SyslogAddr != "" {
		tl, ul, err := listenSyslog(ctx, s.cfg.SyslogAddr)
		if err != nil {
			if s.tcpLn != nil {
				_ = s.tcpLn.Close()
			}
			return err
		}
		s.syslogLn, s.udpConn = tl, ul
		s.setupUDP(ul)
	}
	s.tcpL.ln, s.syslogL.ln = s.tcpLn, s.syslogLn
	if s.tcpLn != nil {
		s.acceptWG.Add(1)
		go s.acceptLoop(s.tcpL)
	}
	if s.syslogLn != nil {
		s.acceptWG.Add(2)
		go s.acceptLoop(s.syslogL)
		go s.readUDP(s.udpConn)
	}
	if s.deps.Mux != nil {
		s.deps.Mux.HandleFunc("POST /api/v1/ingest", s.handleIngest)
		s.deps.Mux.HandleFunc("POST "+OTLPLogsPath, s.handleOTLPLogs)
	}
	if s.deps.Health != nil {
		s.deps.Health.Add(s.Name(), s.ready)
	}
	s.started = true
	s.log.Info("ingest started", "tcp", addrString(s.tcpAddrLocked()), "syslog_udp", addrString(s.udpAddrLocked()),
		"syslog_tcp", addrString(s.syslogAddrLocked()), "batch_max_bytes", s.cfg.BatchMaxBytes, "linger", s.cfg.BatchLinger)
	return nil
}

// listenSyslog binds TCP and UDP on the same port. With port 0 the TCP
// port is chosen first and UDP tries to take the same number.
func listenSyslog(ctx context.Context, addr string) (net.Listener, *net.UDPConn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("syslog address %q: %w", addr, err)
	}
	lc := net.ListenConfig{}
	var lastErr error
	for range 20 {
		tl, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("listen syslog tcp %s: %w", addr, err)
		}
		p := strconv.Itoa(tl.Addr().(*net.TCPAddr).Port)
		ul, err := lc.ListenPacket(ctx, "udp", net.JoinHostPort(host, p))
		if err == nil {
			return tl, ul.(*net.UDPConn), nil
		}
		_ = tl.Close()
		lastErr = err
		if port != "0" {
			break
		}
	}
	return nil, nil, fmt.Errorf("listen syslog udp %s: %w", addr, lastErr)
}

func addrString(a net.Addr) string {
	if a == nil {
		return "disabled"
	}
	return a.String()
}

// TCPAddr is the bound address of the TCP line listener (nil if disabled).
func (s *Service) TCPAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tcpAddrLocked()
}

// tcpAddrLocked is TCPAddr with s.mu held.
func (s *Service) tcpAddrLocked() net.Addr {
	if s.tcpLn == nil {
		return nil
	}
	return s.tcpLn.Addr()
}

// SyslogUDPAddr is the bound address of the syslog UDP listener.
func (s *Service) SyslogUDPAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.udpAddrLocked()
}

func (s *Service) udpAddrLocked() net.Addr {
	if s.udpConn == nil {
		return nil
	}
	return s.udpConn.LocalAddr()
}

// SyslogTCPAddr is the bound address of the syslog TCP listener.
func (s *Service) SyslogTCPAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.syslogAddrLocked()
}

func (s *Service) syslogAddrLocked() net.Addr {
	if s.syslogLn == nil {
		return nil
	}
	return s.syslogLn.Addr()
}

var (
	errNotStarted   = errors.New("not started")
	errDisconnected = errors.New("nats not connected")
)

// ready is the readiness check: listeners bound and NATS connected.
func (s *Service) ready() error {
	s.mu.Lock()
	started, stopping := s.started, s.stopping
	s.mu.Unlock()
	switch {
	case stopping:
		return ErrStopped
	case !started:
		return errNotStarted
	case !s.nc.IsConnected():
		return errDisconnected
	}
	return nil
}

// Stop shuts down gracefully; see the package documentation.
func (s *Service) Stop(ctx context.Context) error {
	s.mu.Lock()
	if !s.started || s.stopping {
		s.mu.Unlock()
		return nil
	}
	s.stopping = true
	s.mu.Unlock()
	t0 := time.Now()
	s.log.Info("ingest stopping")

	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-ctx.Done():
			s.cancelGiveUp(fmt.Errorf("stop deadline: %w", context.Cause(ctx)))
		case <-stopped:
		}
	}()

	// 1. No new connections or datagrams.
	close(s.done)
	for _, c := range []io.Closer{s.tcpLn, s.syslogLn} {
		if c != nil {
			_ = c.Close()
		}
	}
	if s.udpConn != nil {
		_ = s.udpConn.Close()
	}
	s.acceptWG.Wait()
	// 2. Open connections end after the lines they have read.
	s.connsStopping.Store(true)
	s.mu.Lock()
	for c := range s.conns {
		_ = c.SetReadDeadline(time.Now())
	}
	s.mu.Unlock()
	s.connWG.Wait()
	// 3. HTTP requests in flight answer (they give up at the deadline too).
	s.httpWG.Wait()
	// 4. Seal partial batches and wait for every ack.
	for _, b := range []*batcher{s.tcpB, s.syslogTCPB, s.syslogUDPB} {
		b.flush()
	}
	s.pending.Wait()
	s.cancelGiveUp(ErrStopped)
	if s.deps.Health != nil {
		s.deps.Health.Remove(s.Name())
	}
	if n := s.lost.Load(); n > 0 {
		s.log.Error("ingest stopped before jetstream acknowledged every batch", "lines_lost", n, "took", time.Since(t0))
		return fmt.Errorf("%w: %d lines", ErrLinesLost, n)
	}
	s.log.Info("ingest stopped", "took", time.Since(t0))
	return nil
}
