package ingest

import (
	"bufio"
	"compress/flate"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/logtally/logtally/internal/obs"
)

// IngestResponse is the body of a successful POST /api/v1/ingest.
type IngestResponse struct {
	// Accepted is the number of lines of the request stored, empty lines
	// included and oversized lines excluded (accepted + oversized is the
	// number of lines in the body). Lines of duplicate batches count too:
	// they are stored, by an earlier request with the same key.
	Accepted int `json:"accepted"`
	// Oversized is the number of lines stored as prefix and length only.
	Oversized int `json:"oversized"`
	// Batches is the number of raw batches the request was cut into.
	Batches int `json:"batches"`
	// DuplicateBatches is the number of those batches JetStream already
	// held (see handleIngest): with an Idempotency-Key, normally the
	// batches stored by an earlier attempt of the same request.
	DuplicateBatches int `json:"duplicate_batches"`
	// Objects is, for a JSON body (application/x-ndjson or
	// application/json), the number of JSON objects read from it.
	Objects int `json:"objects,omitempty"`
	// WithoutMessage is the number of those objects that had none of the
	// message fields: each was forwarded whole as its line (ndjson.go).
	WithoutMessage int `json:"without_message,omitempty"`
}

// IdempotencyKeyHeader names the optional request header of
// POST /api/v1/ingest that makes a retried request store its lines once.
const IdempotencyKeyHeader = "Idempotency-Key"

var idempotencyKeyRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// handleIngest serves POST /api/v1/ingest. The body is read completely
// (bounded by -ingest.http.max-body-bytes after decompression) before
// anything is published, so a client error (400, 413) stores nothing.
// The request's lines go into batches of their own, which are published
// and acknowledged before the answer; a 503 means some batches may be
// stored.
//
// Without an Idempotency-Key header, retrying after a 503 (or a lost
// answer) can store those lines twice. With one (1-128 characters of
// [A-Za-z0-9._:-], else 400), batch i of the request gets the Nats-Msg-Id
// http-<key>-<i> instead of one of the instance counter. The batches are
// cut from the body deterministically (same body and same batch and line
// limits, same batches), so a retry with the same key and body sends the
// same IDs and JetStream drops the batches it stored already. The
// protection lasts for the LOGTALLY_RAW stream's duplicate window only
// (topology DuplicateWindow, 2 minutes by default): a retry after that
// stores the lines again. A key must not be reused for a different body
// within the window, or that body's batches are dropped as duplicates
// (the key is not scoped by ?source=). The answer's duplicate_batches
// says how many batches JetStream reported as duplicates; a retry of a
// request stored completely reports all of them.
func (s *Service) handleIngest(w http.ResponseWriter, r *http.Request) {
	code := http.StatusOK
	defer func() { s.m.httpRequests.WithLabelValues(strconv.Itoa(code)).Inc() }()
	fail := func(c int, format string, a ...any) {
		code = c
		if c == http.StatusServiceUnavailable || c == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "1")
		}
		obs.WriteError(w, c, fmt.Sprintf(format, a...))
	}

	s.mu.Lock()
	if !s.started || s.stopping {
		s.mu.Unlock()
		fail(http.StatusServiceUnavailable, "ingest is not running")
		return
	}
	s.httpWG.Add(1)
	s.mu.Unlock()
	defer s.httpWG.Done()
	select {
	case s.httpReq <- struct{}{}:
		defer func() { <-s.httpReq }()
	default:
		fail(http.StatusTooManyRequests, "more than %d ingest requests at once; retry", s.cfg.HTTPMaxConcurrent)
		return
	}

	received := time.Now()
	q := r.URL.Query()
	format := q.Get("format")
	if format != "" && !tokenRE.MatchString(format) {
		fail(http.StatusBadRequest, "format %q must match [a-z0-9_-]{1,64}", format)
		return
	}
	source := sanitizeSource(q.Get("source"))
	var key string
	if keys := r.Header.Values(IdempotencyKeyHeader); len(keys) > 0 {
		if len(keys) > 1 || !idempotencyKeyRE.MatchString(keys[0]) {
			fail(http.StatusBadRequest, "%s must be one value of 1-128 characters of [A-Za-z0-9._:-]", IdempotencyKeyHeader)
			return
		}
		key = keys[0]
	}

	kind := ingestBodyKind(r.Header.Get("Content-Type"))
	var j *jsonLines
	if kind != bodyLines {
		fields := s.messageFields
		if mf := q.Get("message_field"); mf != "" {
			var err error
			if fields, err = parseMessageFields(mf); err != nil {
				fail(http.StatusBadRequest, "message_field: %v", err)
				return
			}
		}
		j = &jsonLines{fields: fields, maxLine: s.cfg.MaxLineBytes}
	}

	body := http.MaxBytesReader(w, r.Body, s.cfg.HTTPMaxBodyBytes)
	hb := &httpBatches{maxBytes: s.cfg.BatchMaxBytes, pool: s.arenas, peer: r.RemoteAddr, source: source, format: format, first: received}
	defer hb.release()
	if j != nil {
		j.h = hb
	}
	if c, msg := readBodyAs(body, r.Header.Get("Content-Encoding"), s.cfg.HTTPMaxBodyBytes, s.cfg.MaxLineBytes, hb, kind, j); c != 0 {
		fail(c, "%s", msg)
		return
	}

	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.HTTPTimeout)
	defer cancel()
	stopAfter := context.AfterFunc(s.giveUp, cancel)
	defer stopAfter()
	dups, err := s.publishRequest(ctx, "http-", key, source, hb.batches)
	if err != nil {
		if r.Context().Err() != nil {
			code = 499 // client went away; nobody reads the answer
			return
		}
		s.log.Warn("http ingest not acknowledged in time", "source", source, "lines", hb.lines, "idempotency_key", key, "error", err)
		fail(http.StatusServiceUnavailable, "jetstream did not acknowledge the batches within %s: %v", s.cfg.HTTPTimeout, err)
		return
	}
	s.m.lines.WithLabelValues(SourceHTTP).Add(float64(hb.lines))
	s.m.bytes.WithLabelValues(SourceHTTP).Add(float64(hb.bytes))
	if hb.over > 0 {
		s.m.oversized.WithLabelValues(SourceHTTP).Add(float64(hb.over))
	}
	if hb.blank > 0 {
		s.m.empty.WithLabelValues(SourceHTTP).Add(float64(hb.blank))
	}
	resp := IngestResponse{Accepted: hb.lines, Oversized: hb.over, Batches: len(hb.batches), DuplicateBatches: dups}
	if j != nil {
		resp.Objects, resp.WithoutMessage = j.objects, j.noMsg
		s.m.jsonObjects.Add(float64(j.objects))
		s.m.jsonWithoutMessage.Add(float64(j.noMsg))
	}
	obs.WriteJSON(w, http.StatusOK, resp)
}

// readBody decodes an ingest body (Content-Encoding enc: none, identity,
// gzip or x-gzip; a gzip body may hold several members) and cuts its lines
// into hb's batches, reading at most maxBody bytes after decompression. It
// returns status 0 when the whole body was read, else the status (400, 413,
// 415, or 500 if a batch cannot be encoded) and the message of the error;
// hb is then incomplete and must not be published.
func readBody(body io.Reader, enc string, maxBody int64, maxLine int, hb *httpBatches) (int, string) {
	return readBodyAs(body, enc, maxBody, maxLine, hb, bodyLines, nil)
}

// readBodyAs is readBody for a body of the given kind; j (for the JSON
// kinds) turns objects into lines and must have hb as its handler.
func readBodyAs(body io.Reader, enc string, maxBody int64, maxLine int, hb *httpBatches, kind bodyKind, j *jsonLines) (int, string) {
	rd, done, c, msg := decodedBody(body, enc, maxBody)
	if c != 0 {
		return c, msg
	}
	defer done()
	switch kind {
	case bodyJSON:
		if c, msg := readJSONBody(rd, j); c != 0 {
			return c, msg
		}
	default:
		var h lineHandler = hb
		if kind == bodyNDJSON {
			h = ndjsonHandler{j: j}
		}
		br := bufio.NewReaderSize(rd, readerSize(maxLine))
		if err := scanLines(br, maxLine, h, nil); err != nil {
			c, msg := bodyError(err)
			if c == 0 {
				c, msg = http.StatusBadRequest, "read body: "+err.Error()
			}
			return c, msg
		}
	}
	if err := hb.seal(); err != nil {
		return http.StatusInternalServerError, err.Error()
	}
	return 0, ""
}

// decodedBody undoes the Content-Encoding enc of body and caps what can be
// read from it at maxBody bytes (ErrBodyTooLarge beyond). done releases
// the decoder. On error it returns the status (400, 413, 415) and message.
func decodedBody(body io.Reader, enc string, maxBody int64) (rd io.Reader, done func(), code int, msg string) {
	rd, done = body, func() {}
	switch enc = strings.ToLower(strings.TrimSpace(enc)); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			if c, msg := bodyError(err); c != 0 {
				return nil, nil, c, msg
			}
			return nil, nil, http.StatusBadRequest, "bad gzip body: " + err.Error()
		}
		rd, done = zr, func() { _ = zr.Close() }
	default:
		return nil, nil, http.StatusUnsupportedMediaType, fmt.Sprintf("content encoding %q is not supported (use gzip or none)", enc)
	}
	return &capReader{r: rd, left: maxBody}, done, 0, ""
}

// publishRequest publishes a request's batches, at most
// PublishMaxInFlight at a time across all requests, and waits for every ack.
// With a key, batch i gets the Nats-Msg-Id <prefix><key>-<i>. It returns
// the number of batches JetStream acknowledged as duplicates.
func (s *Service) publishRequest(ctx context.Context, prefix, key, source string, batches []encodedBatch) (int, error) {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		dups  int
	)
	subject := subjectFor(source)
	for i, b := range batches {
		select {
		case s.httpSem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return 0, fmt.Errorf("wait for a publish slot: %w", context.Cause(ctx))
		}
		id := ""
		if key != "" {
			id = prefix + key + "-" + strconv.Itoa(i)
		}
		wg.Add(1)
		go func(b encodedBatch) {
			defer func() { <-s.httpSem; wg.Done() }()
			dup, err := s.publishData(ctx, id, source, SourceHTTP, subject, b.data, b.entries)
			if errors.Is(err, errPublishInFlight) {
				b.b.abandoned = true
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil && first == nil:
				first = err
			case err == nil && dup:
				dups++
			}
		}(b)
	}
	wg.Wait()
	return dups, first
}

// bodyError maps a body read error to a status: 413 over the limit, 400
// for broken compression; 0 when the error is none of these.
func bodyError(err error) (int, string) {
	var mbe *http.MaxBytesError
	var ce flate.CorruptInputError
	switch {
	case errors.Is(err, ErrBodyTooLarge) || errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, "request body too large"
	case errors.Is(err, gzip.ErrHeader), errors.Is(err, gzip.ErrChecksum), errors.As(err, &ce):
		return http.StatusBadRequest, "bad gzip body: " + err.Error()
	case errors.Is(err, io.ErrUnexpectedEOF):
		return http.StatusBadRequest, "truncated request body: " + err.Error()
	}
	return 0, ""
}

// capReader fails with ErrBodyTooLarge once more than left bytes are read.
type capReader struct {
	r    io.Reader
	left int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left < 0 {
		return 0, ErrBodyTooLarge
	}
	if int64(len(p)) > c.left+1 {
		p = p[:c.left+1]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if c.left < 0 {
		return 0, ErrBodyTooLarge
	}
	return n, err
}

// sanitizeSource turns ?source= into a subject token of [a-z0-9_-].
func sanitizeSource(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	if len(s) > 64 {
		s = s[:64]
	}
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return SourceHTTP
	}
	return string(b)
}

// httpBatches cuts one request's lines into batches of its own. The cut
// depends only on the lines and maxBytes: the same body gives the same
// batches (Idempotency-Key relies on it).
//
// A full batch is encoded at once and the open batch reused, so a request
// holds about its encoded size (the body plus 2-3 bytes per line) and no
// per-line bookkeeping: keeping every batch as a slice per line cost 24
// bytes per line, and a gzip body of 64 MiB of newlines took 3 GiB of heap.
type httpBatches struct {
	maxBytes       int
	pool           *buffers
	peer           string
	source, format string
	first          time.Time
	cur            *batch // the open batch
	batches        []encodedBatch
	err            error
	lines          int
	over           int
	blank          int
	bytes          int64
}

// encodedBatch is a sealed batch of a request.
type encodedBatch struct {
	data    []byte // a marshaled logtallyv1.RawBatch
	entries int    // its lines plus oversized lines
	b       *batch // owns data's buffer
}

// release gives the batches' buffers back once the request is answered.
func (h *httpBatches) release() {
	for _, b := range h.batches {
		b.b.release()
	}
	if h.cur != nil {
		h.cur.release()
	}
}

func (h *httpBatches) room(cost int) *batch {
	if h.cur != nil && h.cur.size+cost <= h.maxBytes {
		return h.cur
	}
	_ = h.seal()
	if h.cur == nil {
		h.cur = newBatch(h.pool, h.first)
		h.cur.peer = h.peer
	}
	return h.cur
}

// seal encodes the open batch, if it holds anything, and empties it for
// reuse. It returns the first encoding error of the request.
func (h *httpBatches) seal() error {
	b := h.cur
	if b != nil && b.count() > 0 {
		h.batches = append(h.batches, encodedBatch{data: b.encode(h.source, h.format), entries: b.count(), b: b})
		h.cur = nil
	}
	return h.err
}

func (h *httpBatches) line(p []byte) {
	h.room(lineCost(len(p))).addLine(p)
	h.lines++
	h.bytes += int64(len(p))
}

// lineMeta adds a line with what its sender said about it (OTLP). An empty
// line is counted in blank, an oversized one travels as prefix and length
// without its metadata: the parser dead-letters both.
func (h *httpBatches) lineMeta(p []byte, m lineMeta, maxLine int) {
	switch {
	case len(p) == 0:
		h.empty()
	case len(p) > maxLine:
		h.oversized(p[:min(len(p), oversizedPrefix)], uint64(len(p)))
	default:
		h.room(lineCost(len(p))+maxLineMetaCost).addLineMeta(p, m)
		h.lines++
		h.bytes += int64(len(p))
	}
}

func (h *httpBatches) oversized(prefix []byte, length uint64) {
	h.room(oversizedCost(len(prefix))).addOversized(prefix, length)
	h.over++
	h.bytes += int64(length)
}

// empty forwards an empty line as an empty entry: the parser dead-letters it.
func (h *httpBatches) empty() {
	h.room(lineCost(0)).addLine(nil)
	h.lines++
	h.blank++
}
