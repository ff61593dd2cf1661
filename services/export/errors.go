package export

import "errors"

var (
	// errStale means a window changed while it was read; it is read again.
	errStale = errors.New("window changed while it was read")
)
