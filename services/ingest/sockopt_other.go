//go:build !linux

package ingest

import (
	"errors"
	"net"
	"runtime"
)

// acceptQueueSupported: only Linux reports the accept queue of a listener.
const acceptQueueSupported = false

func acceptQueue(net.Listener) (int, bool) { return 0, false }

var errUnsupported = errors.New("not supported on " + runtime.GOOS)

// socketRcvbuf: the size is not read back outside Linux.
func socketRcvbuf(*net.UDPConn) (int, error) { return 0, errUnsupported }

func rcvbufGranted(reported int) int { return reported }

// udpOOBSize: no control messages are asked for outside Linux.
var udpOOBSize = 0

// enableUDPDrops: kernel drops are counted on Linux only (SO_RXQ_OVFL).
func enableUDPDrops(*net.UDPConn) error { return errUnsupported }

func udpDrops([]byte) (uint32, bool) { return 0, false }
