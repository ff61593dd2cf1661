package dims

import "errors"

// ErrUnknownDim is returned for a field name that is not counted.
var ErrUnknownDim = errors.New("unknown field")
