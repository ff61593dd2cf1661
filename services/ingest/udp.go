package ingest

import (
	"errors"
	"net"
	"net/netip"
	"time"
)

// Syslog over UDP cannot push back, so every datagram that does not become
// a line is counted in logtally_ingest_udp_dropped_total with its reason:
//
//   - no_batch_slot: ingest read it, but every batch slot of the source was
//     in flight (JetStream slow or away);
//   - kernel_rcvbuf: the kernel dropped it before ingest could read it,
//     normally because the socket's receive buffer was full (a burst
//     faster than the reader, or a reader waiting for the scheduler).
//
// The socket's receive buffer is -ingest.syslog.udp-rcvbuf. Linux caps
// what a process may ask for at net.core.rmem_max (and then doubles it for
// its bookkeeping); the size the kernel reports back is exported as
// logtally_ingest_syslog_udp_rcvbuf_bytes and a capped request is logged.
// Kernel drops are read on Linux from SO_RXQ_OVFL: with it, every datagram
// arrives with the socket's drop counter at the time it was queued (a
// cumulative uint32), and the reader adds the increase. The drops of a
// burst are therefore counted when the next datagram arrives.

// setupUDP sizes the receive buffer of the syslog UDP socket and asks for
// its drop counter.
func (s *Service) setupUDP(uc *net.UDPConn) {
	want := s.cfg.UDPRcvbuf
	if want > 0 {
		if err := uc.SetReadBuffer(want); err != nil {
			s.log.Warn("cannot set the syslog udp receive buffer", "requested_bytes", want, "error", err)
		}
	}
	got, err := socketRcvbuf(uc)
	switch {
	case err != nil:
		s.log.Debug("cannot read the syslog udp receive buffer size", "error", err)
	case want > 0 && rcvbufGranted(got) < want:
		s.log.Warn("the kernel capped the syslog udp receive buffer: bursts beyond it are dropped (counted in logtally_ingest_udp_dropped_total); raise net.core.rmem_max",
			"requested_bytes", want, "granted_bytes", rcvbufGranted(got), "kernel_reported_bytes", got)
	default:
		s.log.Debug("syslog udp receive buffer", "requested_bytes", want, "granted_bytes", rcvbufGranted(got), "kernel_reported_bytes", got)
	}
	if err == nil {
		s.m.udpRcvbuf.Set(float64(got))
	}
	if err := enableUDPDrops(uc); err != nil {
		s.log.Warn("kernel drops of syslog udp datagrams cannot be counted on this system", "error", err)
	}
}

// readUDP reads syslog datagrams: one datagram is one message (an empty
// one is forwarded as an empty line). When no batch slot is free the
// datagram is dropped and counted; so are the datagrams the kernel dropped.
func (s *Service) readUDP(uc *net.UDPConn) {
	defer s.acceptWG.Done()
	buf := make([]byte, 64<<10)
	oob := make([]byte, udpOOBSize)
	noSlot := s.m.udpDropped.WithLabelValues("no_batch_slot")
	kernel := s.m.udpDropped.WithLabelValues("kernel_rcvbuf")
	var (
		drops    uint32 // the socket's drop counter last seen
		lastAddr netip.AddrPort
		peer     string
	)
	c := &chunk{}
	for {
		n, oobn, _, addr, err := uc.ReadMsgUDPAddrPort(buf, oob)
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
		if oobn > 0 {
			if v, ok := udpDrops(oob[:oobn]); ok && v != drops {
				kernel.Add(float64(v - drops)) // uint32: wraps like the kernel's counter
				drops = v
			}
		}
		if addr != lastAddr {
			lastAddr = addr
			peer = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port()).String()
		}
		c.reset()
		emit(c, trimNewlines(buf[:n]), s.cfg.MaxLineBytes)
		if !s.syslogUDPB.add(c, peer, false) {
			noSlot.Inc()
		}
	}
}
