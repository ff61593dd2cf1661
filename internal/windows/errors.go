package windows

import (
	"errors"
	"fmt"
)

var (
	// ErrInvalidArgument is matched (errors.Is) by every error that a bad
	// query parameter causes: HTTP 400, gRPC InvalidArgument.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrUnavailable is matched by errors caused by NATS trouble, a query
	// that ran out of time or a reader that is not (or no longer) serving:
	// HTTP 503, gRPC Unavailable.
	ErrUnavailable = errors.New("unavailable")
	// errWatchClosed ends one watch of the index, which then starts a new one.
	errWatchClosed = errors.New("watch channel closed")
)

// inputError is a bad parameter: its message is meant for the client as it
// is, and it matches ErrInvalidArgument (and its cause, if any).
type inputError struct {
	msg string
	err error
}

func (e *inputError) Error() string        { return e.msg }
func (e *inputError) Unwrap() error        { return e.err }
func (e *inputError) Is(target error) bool { return target == ErrInvalidArgument }

// Invalidf returns an error matching ErrInvalidArgument with the formatted
// message; a %w verb keeps its operand as the cause.
func Invalidf(format string, a ...any) error {
	err := fmt.Errorf(format, a...)
	return &inputError{msg: err.Error(), err: errors.Unwrap(err)}
}

type unavailableError struct {
	msg string
	err error
}

func (e *unavailableError) Error() string {
	if e.err == nil {
		return e.msg
	}
	return e.msg + ": " + e.err.Error()
}
func (e *unavailableError) Unwrap() error        { return e.err }
func (e *unavailableError) Is(target error) bool { return target == ErrUnavailable }

// Unavailable returns an error matching ErrUnavailable (and err) that says
// msg.
func Unavailable(msg string, err error) error { return &unavailableError{msg: msg, err: err} }
