package aggregator

import "errors"

var (
	// ErrFenced means a state write lost its compare-and-swap: another owner
	// wrote the key since we read it. The partition restarts from its checkpoint.
	ErrFenced = errors.New("state changed by another owner")
	// ErrBadBatch means a record batch could not be decoded.
	ErrBadBatch = errors.New("bad record batch")
	// ErrBadCheckpoint means a checkpoint could not be decoded.
	ErrBadCheckpoint = errors.New("bad checkpoint")

	// errInjectedCrash is returned by test hooks to end a partition session
	// as a crash would: its memory is dropped, it restarts from the
	// checkpoint.
	errInjectedCrash = errors.New("injected crash")
)
