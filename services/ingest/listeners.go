package ingest

import (
	"bufio"
	"errors"
	"net"
	"time"
)

// acceptLoop accepts connections of one TCP listener until it is closed.
func (s *Service) acceptLoop(ln net.Listener, listener string, b *batcher, syslog bool) {
	defer s.acceptWG.Done()
	open := s.m.openConns.WithLabelValues(listener)
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary failures such as EMFILE: wait a little and go on.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed", "listener", listener, "error", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		s.mu.Lock()
		if s.perLn[listener] >= s.cfg.MaxConnections {
			s.mu.Unlock()
			s.m.connsRejected.Inc()
			_ = conn.Close()
			continue
		}
		s.conns[conn] = listener
		s.perLn[listener]++
		s.connWG.Add(1)
		s.mu.Unlock()
		open.Inc()
		go func() {
			defer func() {
				_ = conn.Close()
				s.mu.Lock()
				delete(s.conns, conn)
				s.perLn[listener]--
				s.mu.Unlock()
				open.Dec()
				s.connWG.Done()
			}()
			s.serveConn(conn, b, syslog)
		}()
	}
}

// serveConn reads one TCP connection. Lines collect in a chunk that goes
// to the batcher whenever the reader has consumed everything received so
// far (or the chunk is large), before the next read can block.
func (s *Service) serveConn(conn net.Conn, b *batcher, syslog bool) {
	peer := conn.RemoteAddr().String()
	br := bufio.NewReaderSize(conn, readerSize(s.cfg.MaxLineBytes))
	c := &chunk{}
	flush := func() {
		if c.entries() > 0 {
			b.add(c, peer, true)
			c.reset()
		}
	}
	h := &chunkHandler{chunk: c, limit: 32 << 10, flush: flush}
	idle := flush
	var err error
	if syslog {
		err = scanSyslog(br, s.cfg.MaxLineBytes, h, idle, func() { s.m.framingErrors.Inc() })
	} else {
		err = scanLines(br, s.cfg.MaxLineBytes, h, idle)
	}
	flush()
	var ne net.Error
	if err != nil && !errors.Is(err, net.ErrClosed) && !(errors.As(err, &ne) && ne.Timeout()) {
		s.log.Debug("connection ended with error", "peer", peer, "error", err)
	}
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

func (h *chunkHandler) oversized(prefix []byte, length uint64) {
	h.chunk.oversized(prefix, length)
	if len(h.over) >= 64 {
		h.flush()
	}
}

// readUDP reads syslog datagrams: one datagram is one message (an empty
// one is forwarded as an empty line). When no batch slot is free the
// datagram is dropped and counted.
func (s *Service) readUDP(pc net.PacketConn) {
	defer s.acceptWG.Done()
	buf := make([]byte, 64<<10)
	c := &chunk{}
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return
			}
			s.log.Warn("syslog udp read failed", "error", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		c.reset()
		emit(c, trimNewlines(buf[:n]), s.cfg.MaxLineBytes)
		if !s.syslogUDPB.add(c, addr.String(), false) {
			s.m.udpDropped.Inc()
		}
	}
}
