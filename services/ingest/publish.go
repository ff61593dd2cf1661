package ingest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/klauspost/compress/s2"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logtally/logtally/internal/topology"
)

const (
	retryMin = 50 * time.Millisecond
	retryMax = time.Second
)

// subjectFor is the raw subject of a source.
func subjectFor(source string) string { return topology.RawPrefix + source }

// nextMsgID returns the Nats-Msg-Id of a new batch: <InstanceID>-<source>-<n>.
// n starts at the service's start time in microseconds, so a process that
// restarts with the same InstanceID inside the duplicate window does not
// reuse the IDs of its previous life (which JetStream would drop).
func (s *Service) nextMsgID(source string) string {
	return s.deps.InstanceID + "-" + source + "-" + strconv.FormatUint(s.msgSeq.Add(1), 10)
}

// publishData publishes an encoded RawBatch of entries lines until
// JetStream acknowledges it or ctx ends. id is the batch's Nats-Msg-Id; ""
// takes the next one of the instance counter. Every attempt carries the
// same Nats-Msg-Id, so a batch whose ack was lost is stored once. dup
// reports that JetStream acknowledged the batch as a duplicate: it held a
// message with this ID already (stored by an earlier attempt whose ack was
// lost, or, for an HTTP Idempotency-Key, by an earlier request).
func (s *Service) publishData(ctx context.Context, id, source, label, subject string, data []byte, entries int) (dup bool, err error) {
	data, compressed, release := s.compress(data)
	defer func() {
		// A publish given up on while its ack was pending may still be sent
		// again by the client (it retries "no responders" by itself): its
		// buffer must not be reused for another batch.
		if !errors.Is(err, errPublishInFlight) {
			release()
		}
	}()
	if id == "" {
		id = s.nextMsgID(source)
	}
	s.m.batchesInFlight.Inc()
	defer s.m.batchesInFlight.Dec()
	wait := retryMin
	first := time.Now()
	past := false
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			s.m.publishRetries.Inc()
			if win := s.deps.Topology.DuplicateWindow; !past && win > 0 && time.Since(first) > win {
				// Deduplication of this batch's ID is no longer certain: an
				// earlier attempt may have been stored without its ack
				// reaching us. Visible, so that it is never silent.
				past = true
				s.m.pastDedup.Inc()
				s.log.Warn("batch retried past the duplicate window; if an earlier attempt was stored, its lines count twice",
					"batch", id, "duplicate_window", win, "retrying_for", time.Since(first).Round(time.Second))
			}
		}
		t0 := time.Now()
		dup, err := s.publishOnce(ctx, subject, id, data, compressed)
		if err == nil {
			if dup {
				s.m.duplicates.Inc()
			}
			s.m.publishLatency.Observe(time.Since(t0).Seconds())
			s.m.batches.WithLabelValues(label).Inc()
			s.m.batchLines.Observe(float64(entries))
			if s.failing.CompareAndSwap(true, false) {
				s.log.Info("publishing to jetstream recovered", "batch", id, "attempts", attempt+1)
			}
			return dup, nil
		}
		if errors.Is(err, errPublishInFlight) {
			return false, err
		}
		if ctx.Err() != nil {
			return false, fmt.Errorf("publish batch %s: %w", id, context.Cause(ctx))
		}
		s.m.publishErrors.Inc()
		if s.failing.CompareAndSwap(false, true) {
			s.log.Warn("publishing to jetstream failed, retrying every batch until acknowledged", "batch", id, "error", err)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return false, fmt.Errorf("publish batch %s: %w", id, context.Cause(ctx))
		}
		wait = min(wait*2, retryMax)
	}
}

// publishOnce is one attempt: publish asynchronously and wait for the ack,
// an error, the ack timeout of the publishing context, or ctx.
// It reports whether JetStream had stored the batch already.
func (s *Service) publishOnce(ctx context.Context, subject, id string, data []byte, compressed bool) (bool, error) {
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	if compressed {
		msg.Header.Set(topology.EncodingHeader, topology.EncodingS2)
	}
	paf, err := s.js.PublishMsgAsync(msg, jetstream.WithMsgID(id))
	if err != nil {
		return false, fmt.Errorf("publish batch %s: %w", id, err)
	}
	select {
	case ack := <-paf.Ok():
		return ack.Duplicate, nil
	case err := <-paf.Err():
		return false, fmt.Errorf("publish batch %s: %w", id, err)
	case <-ctx.Done():
		return false, fmt.Errorf("publish batch %s: %w: %w", id, errPublishInFlight, context.Cause(ctx))
	}
}

// compress returns the S2 block encoding of a RawBatch when
// -ingest.compress asks for it and it is smaller, with a function that
// gives its buffer back.
func (s *Service) compress(data []byte) ([]byte, bool, func()) {
	if s.cfg.Compress != CompressS2 || len(data) < 512 {
		return data, false, func() {}
	}
	need := s2.MaxEncodedLen(len(data))
	buf := s.s2buf.get()
	if cap(buf) < need {
		buf = make([]byte, 0, need)
	}
	out := s2.Encode(buf[:need], data)
	if len(out) >= len(data) {
		s.s2buf.put(buf)
		return data, false, func() {}
	}
	s.m.compressedBytes.Add(float64(len(out)))
	return out, true, func() { s.s2buf.put(buf) }
}

// lose records lines given up at shutdown.
func (s *Service) lose(n int) {
	if n <= 0 {
		return
	}
	s.lost.Add(int64(n))
	s.m.lostOnShutdown.Add(float64(n))
}
