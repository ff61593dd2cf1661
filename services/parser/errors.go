package parser

import "errors"

// ErrNotRawBatch marks a raw-stream message that is not a RawBatch.
var ErrNotRawBatch = errors.New("message is not a raw batch")
