//go:build !linux

package ingest

import "net"

// acceptQueueSupported: only Linux reports the accept queue of a listener.
const acceptQueueSupported = false

func acceptQueue(net.Listener) (int, bool) { return 0, false }
