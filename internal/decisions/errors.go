package decisions

import "errors"

var (
	// ErrActive means the key already has an active decision of the rule:
	// one decision per (rule, key, episode).
	ErrActive = errors.New("an active decision exists")
	// ErrNotFound means no active decision has the id.
	ErrNotFound = errors.New("no active decision with this id")
	// ErrContended means concurrent writers kept winning a compare-and-swap.
	ErrContended = errors.New("too many concurrent updates")
	// ErrAllowed means the key is on the allow list.
	ErrAllowed = errors.New("the key is on the allow list")
)
