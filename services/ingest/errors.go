package ingest

import "errors"

// Sentinel errors of the ingest stage. Callers match them with errors.Is.
var (
	// ErrInvalidConfig wraps every configuration problem found by Validate.
	ErrInvalidConfig = errors.New("invalid ingest configuration")
	// ErrNoNATS is returned by New when deps.NATS carries no JetStream context.
	ErrNoNATS = errors.New("ingest needs a NATS connection with JetStream")
	// ErrStopped is returned for work handed to a service that is stopping.
	ErrStopped = errors.New("ingest service is stopping")
	// ErrAlreadyStarted is returned by a second Start.
	ErrAlreadyStarted = errors.New("ingest service already started")
	// ErrLinesLost is returned by Stop when batches were not acknowledged
	// before its context ended.
	ErrLinesLost = errors.New("lines lost on shutdown")
	// ErrBodyTooLarge marks an HTTP body over -ingest.http.max-body-bytes.
	ErrBodyTooLarge = errors.New("request body too large")
	// ErrPayloadTooSmall is returned by Start when a batch cannot fit into
	// the server's max_payload.
	ErrPayloadTooSmall = errors.New("nats max_payload is smaller than a batch")

	// errPublishInFlight means a publish was given up on (its context
	// ended) while its acknowledgement was still pending: the client may
	// still send its bytes, so their buffer is not reused.
	errPublishInFlight = errors.New("publish still in flight")
)
