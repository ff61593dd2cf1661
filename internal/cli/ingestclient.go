package cli

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// The delivery of chunks of lines to POST /api/v1/ingest, shared by replay
// and tail: gzip, one attempt per request timeout, retries with backoff (or
// the server's Retry-After) on 429, 502, 503, 504 and connection errors,
// and an Idempotency-Key that makes those retries store the lines once.

const ingestPath = "/api/v1/ingest"

// Backoff bounds for retries without a Retry-After header, and the most a
// Retry-After header is honoured for.
var (
	retryBaseDelay = 200 * time.Millisecond
	retryMaxDelay  = 10 * time.Second
	retryAfterMax  = 5 * time.Minute
)

// ingestAnswer is the body of a 200 answer to POST /api/v1/ingest.
type ingestAnswer struct {
	Accepted         *int64 `json:"accepted"`
	Oversized        int64  `json:"oversized"`
	Batches          int64  `json:"batches"`
	DuplicateBatches int64  `json:"duplicate_batches"`
}

// retryableError is an attempt that failed in a way that may be retried:
// the server was busy or the connection failed.
type retryableError struct {
	err        error
	retryAfter time.Duration // from the Retry-After header, if any
	hasAfter   bool
}

func (e *retryableError) Error() string { return e.err.Error() }
func (e *retryableError) Unwrap() error { return e.err }

// ingestClient posts to one ingest URL (with its ?source= and ?format=).
type ingestClient struct {
	cmd            string // "replay", "tail": prefixes errors
	url            string
	client         *http.Client
	requestTimeout time.Duration
	// sizeHint names the flag and value that bound a request body, for the
	// message of a 413 answer (e.g. "--chunk-bytes than 1MiB").
	sizeHint string
}

// newIngestClient checks addr and builds the client for POST
// <addr>/api/v1/ingest?source=&format=. close releases its connections.
func newIngestClient(cmd, addr, source, format string, conns int, timeout time.Duration, sizeHint string) (c *ingestClient, close func(), err error) {
	base, err := baseURL(addr)
	if err != nil {
		return nil, nil, err
	}
	q := url.Values{}
	q.Set("source", source)
	if format != "" {
		q.Set("format", format)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = conns
	c = &ingestClient{
		cmd:            cmd,
		url:            base + ingestPath + "?" + q.Encode(),
		client:         &http.Client{Transport: transport},
		requestTimeout: timeout,
		sizeHint:       sizeHint,
	}
	return c, transport.CloseIdleConnections, nil
}

// delivery is the outcome of an acknowledged request.
type delivery struct {
	ans         *ingestAnswer
	wireBytes   int       // gzip body size
	attempts    int       // 1 unless retried
	lastAttempt time.Time // start of the attempt that was acknowledged
}

// deliver sends body (whole lines, each ending in '\n'; where names them
// in messages) with the Idempotency-Key key, retrying until the server
// acknowledges it, a hard error occurs, or ctx is done. onRetry, if not
// nil, is called before each wait.
func (c *ingestClient) deliver(ctx context.Context, where, key string, body []byte, onRetry func(err error, wait time.Duration)) (*delivery, error) {
	var zb bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&zb, gzip.BestSpeed)
	zw.Write(body)
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("%s: %s: compressing: %w", c.cmd, where, err)
	}
	zbody := zb.Bytes()

	for attempt := 1; ; attempt++ {
		start := time.Now()
		ans, err := c.post(ctx, where, key, zbody)
		if err == nil {
			return &delivery{ans: ans, wireBytes: len(zbody), attempts: attempt, lastAttempt: start}, nil
		}
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		var re *retryableError
		if !errors.As(err, &re) {
			return nil, err
		}
		wait := backoff(attempt)
		if re.hasAfter {
			wait = max(re.retryAfter, 50*time.Millisecond)
		}
		if onRetry != nil {
			onRetry(err, wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, context.Cause(ctx)
		case <-t.C:
		}
	}
}

// backoff is the wait before retry number attempt when the server gave no
// Retry-After: exponential with jitter, capped at retryMaxDelay.
func backoff(attempt int) time.Duration {
	d := float64(retryBaseDelay) * math.Pow(2, float64(min(attempt-1, 30)))
	d = min(d, float64(retryMaxDelay))
	d *= 0.8 + 0.4*mrand.Float64()
	return time.Duration(d)
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date.
func parseRetryAfter(h string, now time.Time) (time.Duration, bool) {
	if h == "" {
		return 0, false
	}
	var d time.Duration
	if secs, err := strconv.ParseFloat(h, 64); err == nil && secs >= 0 {
		d = time.Duration(secs * float64(time.Second))
	} else if t, err := http.ParseTime(h); err == nil {
		d = max(t.Sub(now), 0)
	} else {
		return 0, false
	}
	return min(d, retryAfterMax), true
}

// post makes one attempt at delivering a gzip body.
func (c *ingestClient) post(ctx context.Context, where, key string, body []byte) (*ingestAnswer, error) {
	actx, cancel := context.WithTimeout(ctx, c.requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	req.Header.Set("Content-Encoding", "gzip")
	req.Header.Set("Accept", "application/json")
	// Lets the server recognise a body sent again after a lost answer
	// (within its duplicate window); servers that ignore it are unaffected.
	req.Header.Set("Idempotency-Key", key)
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, &retryableError{err: err} // a *url.Error: names method and URL
	}
	defer resp.Body.Close()
	respBody, readErr := io.ReadAll(io.LimitReader(resp.Body, 1<<20))

	switch {
	case resp.StatusCode >= 200 && resp.StatusCode <= 299:
		if readErr != nil {
			return nil, &retryableError{err: fmt.Errorf("POST %s: reading answer: %w", ingestPath, readErr)}
		}
		var ans ingestAnswer
		if err := json.Unmarshal(respBody, &ans); err != nil || ans.Accepted == nil {
			return nil, fmt.Errorf("%s: %s: server answered %s with an unexpected body %q",
				c.cmd, where, resp.Status, truncate(string(respBody), 200))
		}
		return &ans, nil
	case resp.StatusCode == http.StatusServiceUnavailable,
		resp.StatusCode == http.StatusTooManyRequests,
		resp.StatusCode == http.StatusBadGateway,
		resp.StatusCode == http.StatusGatewayTimeout:
		after, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		return nil, &retryableError{
			err:        apiError(http.MethodPost, ingestPath, resp, respBody),
			retryAfter: after,
			hasAfter:   ok,
		}
	default:
		err := fmt.Errorf("%s: %s rejected: %w", c.cmd, where, apiError(http.MethodPost, ingestPath, resp, respBody))
		if resp.StatusCode == http.StatusRequestEntityTooLarge && c.sizeHint != "" {
			err = fmt.Errorf("%w (try a smaller %s)", err, c.sizeHint)
		}
		return nil, err
	}
}
