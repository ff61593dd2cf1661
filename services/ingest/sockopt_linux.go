//go:build linux

package ingest

import (
	"encoding/binary"
	"net"

	"golang.org/x/sys/unix"
)

// acceptQueueSupported: Linux reports the accept queue of a listener.
const acceptQueueSupported = true

// acceptQueue is the number of established connections waiting in ln's
// accept queue (TCP_INFO of a listening socket: tcpi_unacked is
// sk_ack_backlog).
func acceptQueue(ln net.Listener) (int, bool) {
	tl, ok := ln.(*net.TCPListener)
	if !ok || tl == nil {
		return 0, false
	}
	rc, err := tl.SyscallConn()
	if err != nil {
		return 0, false
	}
	var info *unix.TCPInfo
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil || gerr != nil {
		return 0, false
	}
	return int(info.Unacked), true
}

// socketRcvbuf is the receive buffer size the kernel reports (SO_RCVBUF).
func socketRcvbuf(c *net.UDPConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var gerr error
	if err := rc.Control(func(fd uintptr) { n, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF) }); err != nil {
		return 0, err
	}
	return n, gerr
}

// rcvbufGranted is the size granted for a SO_RCVBUF request, from what the
// kernel reports: Linux caps a request at net.core.rmem_max and then
// doubles it (room for its bookkeeping), and reports the doubled size.
func rcvbufGranted(reported int) int { return reported / 2 }

// udpOOBSize holds the one control message SO_RXQ_OVFL adds to a datagram.
var udpOOBSize = unix.CmsgSpace(4)

// enableUDPDrops turns on SO_RXQ_OVFL: every datagram received comes with
// the socket's drop counter (once it is above 0).
func enableUDPDrops(c *net.UDPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1) }); err != nil {
		return err
	}
	return serr
}

// udpDrops finds the SO_RXQ_OVFL counter in a datagram's control messages.
func udpDrops(oob []byte) (uint32, bool) {
	for len(oob) > 0 {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return 0, false
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SO_RXQ_OVFL && len(data) >= 4 {
			return binary.NativeEndian.Uint32(data), true
		}
		oob = rest
	}
	return 0, false
}
