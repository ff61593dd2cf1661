//go:build linux

package ingest

import (
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
