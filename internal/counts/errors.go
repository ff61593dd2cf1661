package counts

import "errors"

var (
	// ErrCorrupt marks a value that does not decode: a bug or a foreign
	// writer, never a normal condition.
	ErrCorrupt = errors.New("corrupt window value")
	// ErrUnknownClass is returned by ParseClass.
	ErrUnknownClass = errors.New("unknown class")
	// ErrChanged means a chunk no longer belongs to the manifest it was read
	// for (a newer write replaced it, or it expired): read the manifest
	// again.
	ErrChanged = errors.New("window changed while it was read")
)
