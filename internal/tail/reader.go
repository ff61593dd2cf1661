package tail

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"time"
)

// fingerprintBytes is how much of the start of a file its fingerprint
// covers: a file whose inode is reused, or which is truncated and written
// again past the old offset between two looks, has other first bytes.
const fingerprintBytes = 1024

// reader is one open file.
type reader struct {
	t  *Tailer
	f  *os.File
	id fileID
	e  *Entry
	// live: a FILE argument names this file; otherwise it was renamed away
	// or deleted and is read to its end, then closed.
	live bool
	size int64 // at the last refresh
	// idleSince is the last time the size changed (or the file stopped
	// being live): -rotate-wait counts from it.
	idleSince time.Time
	// dataSince is when unsent data was first seen: -batch-wait counts
	// from it.
	dataSince time.Time
	// A partial last line (no newline yet) starting at partialAt, with the
	// file at partialSize, unchanged since partialSince.
	partialAt, partialSize int64
	partialSince           time.Time
}

// fingerprint hashes the first min(size, fingerprintBytes) bytes of f.
func fingerprint(f *os.File, size int64) (string, int, error) {
	n := int(min(size, fingerprintBytes))
	if n <= 0 {
		return "", 0, nil
	}
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, 0); err != nil && err != io.EOF {
		return "", 0, err
	}
	sum := sha256.Sum256(buf)
	return hex.EncodeToString(sum[:8]), n, nil
}

// matches reports whether f (of the given size) still starts with the
// bytes e's fingerprint was taken of.
func (e *Entry) matches(f *os.File, size int64) (bool, error) {
	if e.FPLen == 0 {
		return true, nil
	}
	if size < int64(e.FPLen) {
		return false, nil
	}
	fp, _, err := fingerprint(f, int64(e.FPLen))
	return fp == e.FP, err
}

// refresh looks at the open file's size and notices a truncation
// (copytruncate: the size drops below the offset) or a content replaced
// in place (the first bytes changed); either starts the file over.
func (r *reader) refresh(now time.Time) error {
	fi, err := r.f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	changed := size != r.size
	r.size = size
	if changed {
		r.idleSince = now
	}
	if r.e.Pending != nil {
		return nil // resent first, from what was checked at open
	}
	switch {
	case size < r.e.Offset:
		return r.restart(now, fmt.Sprintf("truncated (size %d < offset %d)", size, r.e.Offset))
	case changed:
		ok, err := r.e.matches(r.f, size)
		if err != nil {
			return err
		}
		if !ok {
			return r.restart(now, "its first bytes changed (truncated and written again)")
		}
		if r.e.FPLen < fingerprintBytes && size > int64(r.e.FPLen) {
			if r.e.FP, r.e.FPLen, err = fingerprint(r.f, size); err != nil {
				return err
			}
		}
	}
	return nil
}

// restart reads the file again from offset 0, as a new reading (serial).
func (r *reader) restart(now time.Time, why string) error {
	r.t.logf("%s: %s; reading it again from the start", r.e.Path, why)
	r.t.stats.Truncations.Add(1)
	r.e.Serial = r.t.state.newSerial()
	r.e.Offset = 0
	r.dataSince, r.partialSince, r.partialAt, r.partialSize = time.Time{}, time.Time{}, 0, 0
	var err error
	r.e.FP, r.e.FPLen, err = fingerprint(r.f, r.size)
	return err
}

// next returns the next chunk to send, or nil and when to look again (zero:
// at the next event or poll).
func (r *reader) next(now time.Time) (*Chunk, time.Time, error) {
	cfg := &r.t.cfg
	if p := r.e.Pending; p != nil {
		// A chunk sent before a crash or stop and never acknowledged: the
		// same bytes again, with the same key.
		c, err := r.read(r.e.Offset, p.End, 0, true)
		if err != nil {
			return nil, time.Time{}, err
		}
		if c == nil || c.End != p.End {
			return nil, time.Time{}, fmt.Errorf("%s: pending chunk %d-%d reads as %v", r.e.Path, r.e.Offset, p.End, c)
		}
		c.Key, c.Since, c.Resumed = p.Key, p.Since, true
		return c, time.Time{}, nil
	}
	avail := r.size - r.e.Offset
	if avail <= 0 {
		if !r.live {
			return nil, r.idleSince.Add(cfg.RotateWait), nil // when closeDrained may close it
		}
		return nil, time.Time{}, nil
	}
	final := !r.live && now.Sub(r.idleSince) >= cfg.RotateWait
	partialUnchanged := r.partialAt == r.e.Offset && r.partialSize == r.size && !r.partialSince.IsZero()
	takePartial := final || cfg.PartialTimeout > 0 && partialUnchanged && now.Sub(r.partialSince) >= cfg.PartialTimeout
	if partialUnchanged && !takePartial {
		return nil, r.partialWake(), nil
	}
	if r.live && avail < int64(cfg.ChunkBytes) {
		if r.dataSince.IsZero() {
			r.dataSince = now
		}
		if d := r.dataSince.Add(cfg.BatchWait); now.Before(d) {
			return nil, d, nil
		}
	}
	c, err := r.read(r.e.Offset, r.size, cfg.ChunkBytes, takePartial)
	if err != nil {
		return nil, time.Time{}, err
	}
	r.dataSince = time.Time{}
	if c == nil { // only the start of a line so far
		r.partialAt, r.partialSize, r.partialSince = r.e.Offset, r.size, now
		return nil, r.partialWake(), nil
	}
	c.Since = now
	return c, time.Time{}, nil
}

// partialWake is when a held partial line is looked at again.
func (r *reader) partialWake() time.Time {
	var w time.Time
	if cfg := &r.t.cfg; cfg.PartialTimeout > 0 {
		w = r.partialSince.Add(cfg.PartialTimeout)
	}
	if !r.live {
		if d := r.idleSince.Add(r.t.cfg.RotateWait); w.IsZero() || d.Before(w) {
			w = d
		}
	}
	return w
}

// read cuts the lines of [start, end) into a chunk of about limit bytes
// (0: no limit), every line ending in '\n': CRLF becomes LF, blank lines
// are left out (and counted), a line longer than MaxLineBytes is cut to
// MaxLineBytes (and reported in Cut). A last line without a newline is
// left for later unless takePartial. The result depends on the bytes of
// the range only, so a pending chunk read again after a restart is the
// same body, which the server's batches (and so its deduplication by
// Idempotency-Key) depend on. nil means no complete line.
func (r *reader) read(start, end int64, limit int, takePartial bool) (*Chunk, error) {
	maxLine := r.t.cfg.MaxLineBytes
	br := bufio.NewReaderSize(io.NewSectionReader(r.f, start, end-start), 64<<10)
	capHint := end - start
	if limit > 0 {
		capHint = min(capHint, int64(limit)+int64(maxLine)+2)
	}
	body := make([]byte, 0, capHint)
	c := &Chunk{File: r.e.Path, Start: start}
	pos := start
	for limit <= 0 || len(body) < limit {
		lstart := len(body)
		var n int64
		complete, dropped := false, false
		for {
			frag, err := br.ReadSlice('\n')
			n += int64(len(frag))
			room := maxLine + 2 - (len(body) - lstart)
			if len(frag) > room {
				dropped = true
				frag = frag[:max(room, 0)]
			}
			body = append(body, frag...)
			if err == nil {
				complete = true
				break
			}
			if err == bufio.ErrBufferFull {
				continue
			}
			if err == io.EOF {
				break
			}
			return nil, fmt.Errorf("%s: read at %d: %w", r.e.Path, pos, err)
		}
		if n == 0 || !complete && !takePartial {
			body = body[:lstart]
			break
		}
		line := body[lstart:]
		if !dropped {
			line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
		}
		cut := dropped || len(line) > maxLine
		line = line[:min(len(line), maxLine)]
		switch {
		case len(line) == 0:
			c.Blank++
			body = body[:lstart]
		default:
			body = append(body[:lstart+len(line)], '\n')
			c.Lines++
			if cut {
				c.Cut = append(c.Cut, CutLine{Offset: pos, Length: n})
			}
		}
		pos += n
		if !complete {
			break
		}
	}
	if pos == start {
		return nil, nil
	}
	c.End, c.Body = pos, body
	return c, nil
}

// lineStartBefore is where the last line of the first size bytes of f
// starts (just after its last newline), looking back at most maxBack
// bytes; size when no newline is found that far back in a longer file.
func lineStartBefore(f *os.File, size int64, maxBack int) (int64, error) {
	n := min(size, int64(maxBack))
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, size-n); err != nil && err != io.EOF {
		return 0, err
	}
	if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
		return size - n + int64(i) + 1, nil
	}
	if n == size {
		return 0, nil // the whole file is one unfinished line
	}
	return size, nil
}
